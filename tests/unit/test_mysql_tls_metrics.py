"""TLS certificate expiry metrics: rendering (names, labels, negative when expired), the file written
atomically through the shared writer, a real certificate read with openssl, promtool's verdict."""

import datetime
import os
import stat

import pytest
from ansible.module_utils import mysql_tls_metrics as tm
from ansible.module_utils.mysql_tls import TLSError, ensure_certificates

from tests.unit.test_backup_metrics import promtool_check

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _certs():
    return [
        dict(role="server", path="/etc/mysql/replication-tls/server.pem", not_after="2027-01-01T12:00:00Z"),
        dict(role="ca", path="/etc/mysql/replication-tls/ca.pem", not_after="Nov 30 12:00:00 2026 GMT"),
    ]


def test_render_names_labels_and_values():
    text = tm.render(tm.collect(_certs(), "db1"), NOW)
    lines = text.splitlines()
    assert lines[0] == ("# HELP mysql_replication_tls_certificate_expiry_seconds Seconds from the metrics "
                        "write to the certificate's notAfter (negative: expired).")
    assert lines[1] == "# TYPE mysql_replication_tls_certificate_expiry_seconds gauge"
    # sorted by host, then role in the order ca, server, client; the expired CA is negative (one day)
    assert lines[2] == ('mysql_replication_tls_certificate_expiry_seconds'
                        '{host="db1",role="ca",path="/etc/mysql/replication-tls/ca.pem"} -86400.0')
    assert lines[3] == ('mysql_replication_tls_certificate_expiry_seconds'
                        '{host="db1",role="server",path="/etc/mysql/replication-tls/server.pem"} 2678400.0')
    assert "# TYPE mysql_replication_tls_certificate_not_after_timestamp_seconds gauge" in lines
    assert ('mysql_replication_tls_certificate_not_after_timestamp_seconds'
            '{host="db1",role="server",path="/etc/mysql/replication-tls/server.pem"} 1798804800.0') in lines
    assert text.endswith("\n") and len(lines) == 8
    code, out = promtool_check(text)
    assert code == 0, out


def test_own_host_label_path_less_entry_and_refusals():
    entry = dict(role="server", host="db-src", not_after=datetime.datetime(2027, 1, 1))
    found = tm.collect([entry], "backup1")
    assert found == [dict(host="db-src", role="server", path="",
                          not_after=datetime.datetime(2027, 1, 1, tzinfo=UTC))]
    assert 'host="db-src",role="server",path=""' in tm.render(found, NOW)
    for bad in (dict(role="leaf", path="/x.pem"), dict(role="ca"), dict(role="ca", not_after="someday")):
        with pytest.raises(TLSError):
            tm.collect([bad], "h")
    with pytest.raises(TLSError, match="metrics name"):
        tm.metrics_path("/tmp", "../x")


def test_write_atomic_0644_replaces_and_removes(tmp_path):
    path, text = tm.write(str(tmp_path), "source", tm.collect(_certs(), "db1"), NOW)
    assert path == str(tmp_path / "mysql_replication_tls_source.prom")
    with open(path, encoding="utf-8") as handle:
        assert handle.read() == text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["mysql_replication_tls_source.prom"]  # no temporary file left
    # a later run holds exactly its certificates
    tm.write(str(tmp_path), "source", tm.collect(_certs()[:1], "db1"), NOW)
    with open(path, encoding="utf-8") as handle:
        assert 'role="ca"' not in handle.read()
    # check mode writes nothing
    _, _ = tm.write(str(tmp_path), "replica", tm.collect(_certs(), "db1"), NOW, check_mode=True)
    assert not (tmp_path / "mysql_replication_tls_replica.prom").exists()
    assert tm.remove(str(tmp_path), "source", check_mode=True) == (path, True) and os.path.exists(path)
    assert tm.remove(str(tmp_path), "source") == (path, True) and not os.path.exists(path)
    assert tm.remove(str(tmp_path), "source") == (path, False)
    with pytest.raises(TLSError, match="does not exist"):
        tm.write(str(tmp_path / "missing"), "source", [], NOW)


def test_real_certificate_read_from_its_file(tmp_path):
    ca, key = str(tmp_path / "ca.pem"), str(tmp_path / "ca.key")
    made = ensure_certificates(dict(ca_cert=ca, ca_key=key, ca_days=10))
    found = tm.collect([dict(role="ca", path=ca)], "db1")
    assert found[0]["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ") == made["certificates"]["ca"]["not_after"]
    value = float(tm.render(found).splitlines()[2].rsplit(" ", 1)[1])
    assert 9 * 86400 < value <= 10 * 86400
