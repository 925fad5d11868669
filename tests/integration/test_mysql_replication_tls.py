"""Replication over TLS with GTID between two real MariaDB servers on loopback.

The certificates are made by the project's own core (mysql_tls, openssl); the source runs with them
and performance_schema on (so the health facts see the Binlog Dump thread's cipher); the replica is
seeded, then started from the seed's GTID position with server certificate verification and a client
certificate (the replication user REQUIRE X509). The source role's task files then run for real on that
pair (ansible-playbook): the certificates' expiry metrics, and TLS turned off (REQUIRE NONE, MASTER_SSL=0,
the metrics file removed). The refusal case: a replica set up for TLS against a source without TLS fails
with the server's error, and a plaintext link fails the TLS health check.
"""

import json

import pytest
from ansible.module_utils.mysql_health import gather_facts
from ansible.module_utils.mysql_replica import ReplicaError, ensure_replica
from ansible.module_utils.mysql_seed import run_seed
from ansible.module_utils.mysql_tls import ensure_certificates

from tests.integration.test_mysql_replication import (
    IGNORED,
    REPL_PASSWORD,
    _playbook,
    count,
    facts_params,
    make_source,
    replica_params,
    seed_params,
    wait_rows,
    with_pair,
    with_replica,
)
from tests.lib import canary

IGNORE_ARGS = [f"--replicate-ignore-table={t}" for t in IGNORED]


def _certificates(tmp_path):
    """The site CA, the source's server certificate (for 127.0.0.1) and the replica's client certificate."""
    d = tmp_path / "tls"
    d.mkdir()
    paths = {name: str(d / name) for name in ("ca.pem", "ca.key", "server.pem", "server.key",
                                              "client.pem", "client.key")}
    server = ensure_certificates(
        dict(ca_cert=paths["ca.pem"], ca_key=paths["ca.key"], cert=paths["server.pem"],
             key=paths["server.key"], subject_alt_names=["127.0.0.1", "localhost"], purpose="server")
    )
    client = ensure_certificates(
        dict(ca_cert=paths["ca.pem"], ca_key=paths["ca.key"], cert=paths["client.pem"],
             key=paths["client.key"], common_name="backup-replica", purpose="client")
    )
    assert server["changed"] and client["changed"] and client["created"] == [paths["client.key"],
                                                                               paths["client.pem"]]
    return paths


def _tls_replica(src, certs, **kw):
    return replica_params(
        src,
        source_ssl=True,
        source_ssl_ca=certs["ca.pem"],
        source_ssl_cert=certs.get("client.pem"),
        source_ssl_key=certs.get("client.key"),
        source_ssl_verify_server_cert=True,
        **kw,
    )


PREFIX = "mysql_replication_tls"
USER_TASK = "Create the replication user | REPLICATION SLAVE only, bound to the backup host"


def _source_role(src, certs, metrics_dir, tls, *task_files):
    """Tasks including the source role's task files with the test pair's paths and logins."""
    role_vars = dict(
        mysql_replication_source_tls=tls,
        mysql_replication_source_tls_client_cert=True,
        mysql_replication_source_tls_ca_cert=certs["ca.pem"],
        mysql_replication_source_tls_cert=certs["server.pem"],
        mysql_replication_source_tls_client_cert_file=certs["client.pem"],
        mysql_replication_source_tls_metrics_dir=str(metrics_dir),
        mysql_replication_source_user="repl",
        mysql_replication_source_password=REPL_PASSWORD,
        mysql_replication_source_admin_password=canary.canary("admin-pw"),
        mysql_replication_source_replica_host="127.0.0.1",
        mysql_replication_source_login_unix_socket=src.socket,
    )
    return [{"name": f"source role {name}",
             "ansible.builtin.include_role": {"name": "mysql_replication_source", "tasks_from": name},
             "vars": role_vars} for name in task_files]


def _changed_by_task(proc):
    """[(task name without the role prefix, changed)] of a _playbook run, in order."""
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    tasks = [t for play in out["plays"] for t in play["tasks"]]
    return [(t["task"]["name"].split(" : ", 1)[-1], t["hosts"]["localhost"].get("changed")) for t in tasks]


def _require(src):
    return src.sql("SELECT ssl_type FROM mysql.user WHERE User = 'repl' AND Host = '127.0.0.1'")[0][0]


def test_tls_gtid_replication_with_verification(mariadb_factory, tmp_path):
    certs = _certificates(tmp_path)
    src = mariadb_factory(
        "source", server_id=1,
        extra_args=[f"--ssl-ca={certs['ca.pem']}", f"--ssl-cert={certs['server.pem']}",
                    f"--ssl-key={certs['server.key']}", "--performance-schema=ON"],
    )
    dst = mariadb_factory("replica", server_id=2, extra_args=IGNORE_ARGS)
    make_source(src)
    src.sql("ALTER USER 'repl'@'127.0.0.1' REQUIRE X509")
    src.sql("INSERT INTO app.items (name) VALUES ('before-seed')")

    seed = run_seed(seed_params(src, dst))
    assert seed["gtid"] == src.sql("SELECT @@gtid_binlog_pos")[0][0] and seed["gtid"]
    src.sql("INSERT INTO app.items (name) VALUES ('after-seed')")  # must arrive through GTID replication

    want = _tls_replica(src, certs, source_use_gtid=True, source_gtid_pos=seed["gtid"])
    started = with_replica(dst, ensure_replica, want)
    assert started["changed"] and started["gtid_position_applied"] and not started["coordinates_applied"]
    assert started["statements"][0] == f"SET GLOBAL gtid_slave_pos = '{seed['gtid']}'"
    assert "MASTER_USE_GTID=slave_pos" in started["statements"][1]
    assert "MASTER_SSL_VERIFY_SERVER_CERT=1" in started["statements"][1]
    status = started["status"]
    assert status["using_gtid"] == "Slave_Pos" and status["ssl_allowed"] == "Yes"
    assert status["ssl_verify_server_cert"] == "Yes"
    assert wait_rows(dst, "app.items", count(src, "app.items")) == count(src, "app.items")

    again = with_replica(dst, ensure_replica, want)
    assert not again["changed"] and again["statements"] == [] and not again["gtid_position_applied"]

    health = with_pair(
        src, dst, gather_facts,
        facts_params(mode="health", tls_required=True, tls_expiry_warning_days=900,
                     tls_certificates=[certs["ca.pem"], certs["client.pem"]]),
    )
    tls = health["tls"]
    assert health["healthy"], health["problems"]
    assert tls["encrypted"] and tls["seen_by"] == "performance_schema" and tls["cipher"].startswith("TLS_")
    checks = {c["name"]: c for c in health["checks"]}
    assert tls["cipher"] in checks["replication_tls"]["message"]
    # 825-day server and client certificates are inside a 900-day warning window; the 10-year CA is not
    assert sorted(tls["expiring"]) == sorted(["source server certificate", certs["client.pem"]])
    assert tls["expired"] == [] and checks["tls_certificate_expiry"]["ok"]
    assert {c["name"]: c["days_left"] for c in tls["certificates"]}[certs["ca.pem"]] > 3000

    # The source role's task files, for real (one ansible-playbook run): first with TLS on, the metrics
    # of its TLS files (one series per certificate, ~825 days for the leaves, read back before the next
    # task); then TLS turned off: the replication user's REQUIRE X509 goes (compared, then ALTER USER),
    # the metrics file is removed; TLS off a second time changes nothing. The replica then connects
    # with MASTER_SSL=0.
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    prom_file = metrics / "mysql_replication_tls_source.prom"
    read_prom = {"name": "read the metrics", "ansible.builtin.slurp": {"src": str(prom_file)},
                 "register": "prom"}
    keep_prom = {"name": "keep them", "ansible.builtin.copy": {"content": "{{ prom.content | b64decode }}",
                                                               "dest": str(tmp_path / "source.prom")}}
    assert _require(src) == "X509"
    tls_off = _source_role(src, certs, metrics, False, "users.yml", "tls_metrics.yml")
    proc, _ = _playbook(tmp_path, _source_role(src, certs, metrics, True, "tls_metrics.yml")
                        + [read_prom, keep_prom] + tls_off + tls_off)
    assert proc.returncode == 0, proc.stdout[-3000:]
    prom = (tmp_path / "source.prom").read_text()
    expiry = {line.split('role="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in prom.splitlines() if line.startswith(f"{PREFIX}_certificate_expiry_seconds{{")}
    assert set(expiry) == {"ca", "server", "client"} and f'path="{certs["server.pem"]}"' in prom
    assert 824 * 86400 < expiry["server"] <= 825 * 86400 and expiry["ca"] > 3649 * 86400
    ran = [(name, changed) for name, changed in _changed_by_task(proc) if not name.startswith("source role")]
    assert [changed for name, changed in ran if name == USER_TASK] == [True, False], ran
    assert [changed for name, changed in ran if name.startswith("TLS metrics")] == [False, True, False], ran
    assert _require(src) == "" and not prom_file.exists()
    plain = replica_params(src, source_use_gtid=True, source_ssl=False, source_ssl_verify_server_cert=False)
    off = with_replica(dst, ensure_replica, plain)
    change = [sql for sql in off["statements"] if sql.startswith("CHANGE MASTER TO")]
    assert off["changed"] and len(change) == 1 and "MASTER_SSL=0" in change[0], off["statements"]
    assert "MASTER_SSL_VERIFY_SERVER_CERT=0" in change[0]
    assert off["status"]["ssl_allowed"] == "No" and off["status"]["io_running"] == "Yes"
    src.sql("INSERT INTO app.items (name) VALUES ('after-tls-off')")
    assert wait_rows(dst, "app.items", count(src, "app.items")) == count(src, "app.items")
    assert not with_replica(dst, ensure_replica, plain)["changed"]


def test_tls_replica_against_plaintext_source_fails_clearly(mariadb_factory, tmp_path):
    certs = _certificates(tmp_path)
    src = mariadb_factory("source", server_id=1, extra_args=["--skip-ssl", "--performance-schema=ON"])
    dst = mariadb_factory("replica", server_id=2, extra_args=IGNORE_ARGS)
    make_source(src)
    seed = run_seed(seed_params(src, dst))
    with pytest.raises(ReplicaError) as failed:
        with_replica(dst, ensure_replica, _tls_replica(src, certs, source_use_gtid=True,
                                                       source_gtid_pos=seed["gtid"], wait_timeout=20))
    message = str(failed.value)
    assert "IO thread error 2026" in message
    assert "SSL is required, but the server does not support it" in message

    # the same pair replicating in plaintext: the TLS health check fails and says so
    with_replica(dst, ensure_replica, dict(state="absent"))
    plain = with_replica(dst, ensure_replica, replica_params(src, seed))
    assert plain["status"]["io_running"] == "Yes"
    health = with_pair(src, dst, gather_facts, facts_params(mode="health", tls_required=True))
    assert not health["healthy"] and not health["tls"]["encrypted"]
    message = " ".join(health["problems"])
    assert "PLAINTEXT" in message and "have_ssl" in message


def test_a_source_certificate_for_another_host_name_fails_clearly(mariadb_factory, tmp_path):
    """The source's certificate names db.example.org; the replica reaches it at 127.0.0.1 with
    verification on. The replication login the playbooks test first (verify_source_login) names the
    mismatch, before CHANGE MASTER; without it the IO thread only says "validation failure"."""
    certs = _certificates(tmp_path)
    other = {name: str(tmp_path / "tls" / f"other-{name}") for name in ("server.pem", "server.key")}
    ensure_certificates(dict(ca_cert=certs["ca.pem"], ca_key=certs["ca.key"], cert=other["server.pem"],
                             key=other["server.key"], subject_alt_names=["db.example.org"], purpose="server"))
    src = mariadb_factory(
        "source", server_id=1,
        extra_args=[f"--ssl-ca={certs['ca.pem']}", f"--ssl-cert={other['server.pem']}",
                    f"--ssl-key={other['server.key']}"],
    )
    dst = mariadb_factory("replica", server_id=2, extra_args=IGNORE_ARGS)
    make_source(src)
    seed = run_seed(seed_params(src, dst))
    want = _tls_replica(src, certs, source_use_gtid=True, source_gtid_pos=seed["gtid"], wait_timeout=20)
    with pytest.raises(ReplicaError) as refused:
        with_replica(dst, ensure_replica, dict(want, verify_source_login=True))
    message = str(refused.value)
    assert "certificate is not valid for '127.0.0.1'" in message and "the replica was not changed" in message
    assert dst.sql("SHOW SLAVE STATUS") == ()
    with pytest.raises(ReplicaError) as failed:
        with_replica(dst, ensure_replica, want)
    assert "IO thread error 2026" in str(failed.value)
    assert "SSL certificate validation failure" in str(failed.value)
