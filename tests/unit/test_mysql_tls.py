"""TLS core: name splitting, extensions, dates, expiry judgement; one real openssl round (CA + server
certificate made, re-run unchanged, refusals without overwriting)."""

import datetime
import os
import stat

import pytest
from ansible.module_utils.mysql_tls import (
    TLSError,
    days_left,
    ensure_certificates,
    expiry_report,
    extensions_text,
    missing_names,
    parse_openssl_date,
    parse_san,
    split_names,
    subject_of,
)

UTC = datetime.timezone.utc


def test_split_names_and_refusals():
    assert split_names(["DB1.example.org", "10.0.0.1", "::1"]) == (["db1.example.org"], ["10.0.0.1", "::1"])
    for bad in ["db one", "a/b", "-x.org", "x" * 300]:
        with pytest.raises(TLSError):
            split_names([bad])


def test_extensions_and_subject():
    text = extensions_text("server", ["db.example.org"], ["10.0.0.1"])
    assert "extendedKeyUsage = serverAuth" in text and "CA:FALSE" in text
    assert "subjectAltName = DNS:db.example.org, IP:10.0.0.1" in text
    assert "clientAuth" in extensions_text("client", [], []) and "subjectAltName" not in extensions_text(
        "client", [], []
    )
    assert subject_of("db") == "/CN=db"
    for bad in ["", "a/CN=b", "x\ny"]:
        with pytest.raises(TLSError):
            subject_of(bad)


def test_dates_and_expiry():
    when = parse_openssl_date("notAfter=Mar  6 17:26:51 2029 GMT")
    assert when == datetime.datetime(2029, 3, 6, 17, 26, 51, tzinfo=UTC)
    with pytest.raises(TLSError):
        parse_openssl_date("tomorrow")
    now = datetime.datetime(2029, 3, 1, tzinfo=UTC)
    assert days_left(when, now) == 5
    entries, expired, expiring = expiry_report(
        [dict(name="a", not_after=when), dict(name="b", not_after=now - datetime.timedelta(hours=1)),
         dict(name="c", not_after=now + datetime.timedelta(days=31))],
        30,
        now,
    )
    assert expired == ["b"] and expiring == ["a"]
    assert entries[0]["not_after"] == "2029-03-06T17:26:51Z" and entries[2]["days_left"] == 31


def test_san_parsing_and_missing_names():
    out = "X509v3 Subject Alternative Name: \n    DNS:Db.example.org, IP Address:10.0.0.1\n"
    dns, ips = parse_san(out)
    assert (dns, ips) == (["db.example.org"], ["10.0.0.1"])
    assert missing_names(dns, ips, ["db.example.org", "other.org"], ["10.0.0.1"]) == ["other.org"]


def test_real_openssl_make_check_and_refuse(tmp_path):
    paths = {k: str(tmp_path / f"{k}.pem") for k in ("ca_cert", "ca_key", "cert", "key")}
    params = dict(paths, subject_alt_names=["localhost", "127.0.0.1"], purpose="server")
    planned = ensure_certificates(params, check_mode=True)
    assert planned["changed"] and not os.listdir(tmp_path)
    made = ensure_certificates(params)
    assert made["changed"] and sorted(made["created"]) == sorted(paths.values())
    for key in ("ca_key", "key"):
        assert stat.S_IMODE(os.stat(paths[key]).st_mode) == 0o600
    assert made["certificates"]["server"]["ips"] == ["127.0.0.1"]
    assert made["certificates"]["server"]["issuer"] == "CN=replication CA"
    assert 800 <= made["certificates"]["server"]["days_left"] <= 825
    again = ensure_certificates(params)
    assert not again["changed"] and again["created"] == []
    before = open(paths["cert"], "rb").read()
    with pytest.raises(TLSError, match="does not cover db.example.org"):
        ensure_certificates(dict(params, subject_alt_names=["db.example.org"]))
    assert open(paths["cert"], "rb").read() == before
    os.unlink(paths["cert"])  # a key without its certificate: refused, the key kept
    with pytest.raises(TLSError, match="refusing to overwrite"):
        ensure_certificates(params)
    assert os.path.exists(paths["key"])
    with pytest.raises(TLSError, match="needs subject_alt_names"):
        ensure_certificates(dict(params, subject_alt_names=[]))
