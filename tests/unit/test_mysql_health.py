"""Health core: each check's rule, grant parsing, the reseed decision; checksum comparison."""

import datetime

from ansible.module_utils.mysql_checksum import compare_results, quote_identifier
from ansible.module_utils.mysql_health import (
    certificates_to_check,
    evaluate,
    extra_privileges,
    parse_grant,
    parse_ignore_table_variable,
    replication_tls,
    reseed_needed,
    tls_checks,
)
from ansible.module_utils.mysql_replica import normalise_status

RUNNING = normalise_status(
    {
        "Master_Host": "src",
        "Master_Port": 3306,
        "Master_User": "repl",
        "Master_Log_File": "mysql-bin.000004",
        "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "Yes",
        "Seconds_Behind_Master": 2,
        "Last_IO_Errno": 0,
        "Last_IO_Error": "",
        "Last_SQL_Errno": 0,
        "Last_SQL_Error": "",
    }
)
LOGS = [{"name": "mysql-bin.000003", "size": 10}, {"name": "mysql-bin.000004", "size": 20}]


def source(**kw):
    base = dict(
        flavor="mariadb",
        version="10.11.6-MariaDB",
        log_bin=True,
        server_id=1,
        binlog_format="ROW",
        binlog_retention_seconds=0,
        galera=False,
        log_slave_updates=False,
        binary_logs=LOGS,
    )
    base.update(kw)
    return base


def replica(**kw):
    base = dict(flavor="mariadb", server_id=2, replicate_ignore_table=["seafile.Repo"], status=RUNNING)
    base.update(kw)
    return base


def by_name(checks):
    return {c["name"]: c for c in checks}


def test_healthy_pair():
    checks, reseed = evaluate(source(), replica(), dict(mode="health", ignore_tables=["seafile.Repo"]))
    assert all(c["ok"] for c in checks), checks
    assert not reseed
    assert {
        "log_bin",
        "server_id",
        "binlog_retention",
        "replicate_ignore_table",
        "binlog_available",
        "replication_running",
        "replication_lag",
    } <= set(by_name(checks))


def test_same_server_id_is_named():
    c = by_name(evaluate(source(), replica(server_id=1), {})[0])["server_id"]
    assert not c["ok"] and "same server_id 1" in c["message"]
    assert not by_name(evaluate(source(server_id=0), replica(), {})[0])["server_id"]["ok"]


def test_log_bin_off():
    assert not by_name(evaluate(source(log_bin=False), replica(), {})[0])["log_bin"]["ok"]


def test_retention():
    week = 7 * 86400
    assert by_name(evaluate(source(binlog_retention_seconds=0), replica(), {})[0])["binlog_retention"]["ok"]
    short = by_name(
        evaluate(source(binlog_retention_seconds=86400), replica(), dict(min_binlog_retention_days=7))[0]
    )["binlog_retention"]
    assert not short["ok"] and "1 days" in short["message"]
    assert by_name(
        evaluate(source(binlog_retention_seconds=week), replica(), dict(min_binlog_retention_days=7))[0]
    )["binlog_retention"]["ok"]


def test_galera_needs_log_slave_updates():
    assert "galera_log_slave_updates" not in by_name(evaluate(source(), replica(), {})[0])
    assert not by_name(evaluate(source(galera=True), replica(), {})[0])["galera_log_slave_updates"]["ok"]
    assert by_name(evaluate(source(galera=True, log_slave_updates=True), replica(), {})[0])[
        "galera_log_slave_updates"
    ]["ok"]


def test_ignore_table_list_compared():
    c = by_name(evaluate(source(), replica(), dict(ignore_tables=["seafile.Repo", "seafile.Branch"]))[0])
    assert (
        not c["replicate_ignore_table"]["ok"] and "seafile.Branch" in c["replicate_ignore_table"]["message"]
    )
    assert "replicate_ignore_table" not in by_name(evaluate(source(), replica(), {})[0])
    skipped = evaluate(
        source(), replica(), dict(ignore_tables=["x.y"], skip_checks=["replicate_ignore_table"])
    )
    assert "replicate_ignore_table" not in by_name(skipped[0])


def test_parse_ignore_table_variable():
    assert parse_ignore_table_variable("seahub.Event,seafile.Repo") == ["seafile.Repo", "seahub.Event"]
    assert parse_ignore_table_variable("") == [] and parse_ignore_table_variable(None) == []


def test_grant_parsing():
    assert parse_grant(
        "GRANT REPLICATION SLAVE ON *.* TO `repl`@`10.0.0.2` IDENTIFIED BY PASSWORD '*AB'"
    ) == ({"REPLICATION SLAVE"}, "*.*")
    assert parse_grant("GRANT SELECT, INSERT ON `seafile`.* TO 'repl'@'%'") == (
        {"SELECT", "INSERT"},
        "seafile.*",
    )
    assert parse_grant("GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION") == (None, None)
    assert extra_privileges(["GRANT REPLICATION SLAVE ON *.* TO `repl`@`h`"]) == (True, [])
    assert extra_privileges(["GRANT USAGE ON *.* TO `repl`@`h`"]) == (False, [])
    has, extra = extra_privileges(
        ["GRANT REPLICATION SLAVE, SUPER ON *.* TO `repl`@`h`", "GRANT SELECT ON `seafile`.* TO `repl`@`h`"]
    )
    assert has and extra == ["SUPER ON *.*", "SELECT ON seafile.*"]


def test_replication_user_check():
    ok = {"10.0.0.2": ["GRANT REPLICATION SLAVE ON *.* TO `repl`@`10.0.0.2`"]}
    params = dict(replication_user="repl", replication_host="10.0.0.2")
    assert by_name(evaluate(source(), replica(), params, ok)[0])["replication_user"]["ok"]
    wildcard = {"%": ["GRANT REPLICATION SLAVE ON *.* TO `repl`@`%`"]}
    msg = by_name(evaluate(source(), replica(), params, wildcard)[0])["replication_user"]["message"]
    assert "'repl'@'%' exists" in msg and "no account 'repl'@'10.0.0.2'" in msg
    too_much = {"10.0.0.2": ["GRANT REPLICATION SLAVE, RELOAD ON *.* TO `repl`@`10.0.0.2`"]}
    assert (
        "RELOAD" in by_name(evaluate(source(), replica(), params, too_much)[0])["replication_user"]["message"]
    )
    assert not by_name(evaluate(source(), replica(), params, {})[0])["replication_user"]["ok"]


def test_reseed_decision():
    assert reseed_needed(normalise_status(None), LOGS)[0]
    assert not reseed_needed(RUNNING, LOGS)[0]
    purged = reseed_needed(RUNNING, [{"name": "mysql-bin.000005", "size": 1}])
    assert purged[0] and "mysql-bin.000004" in purged[1]
    err = dict(
        RUNNING, io_running="No", last_io_errno=1236, last_io_error="Could not find first log file name"
    )
    assert reseed_needed(err, None)[0]
    assert not reseed_needed(RUNNING, None)[0]  # unknown list: not claimed


def test_health_mode_reports_errors():
    broken = dict(
        RUNNING, io_running="Connecting", last_io_errno=1045, last_io_error="Access denied for user"
    )
    c = by_name(evaluate(source(), replica(status=broken), dict(mode="health"))[0])
    assert not c["replication_running"]["ok"] and "Access denied" in c["replication_running"]["message"]
    lagging = dict(RUNNING, seconds_behind=99)
    assert not by_name(
        evaluate(source(), replica(status=lagging), dict(mode="health", max_lag_seconds=30))[0]
    )["replication_lag"]["ok"]


def test_checksum_comparison():
    tables, mismatched, missing = compare_results({"a.t1": 1, "a.t2": 2, "a.t3": 3}, {"a.t1": 1, "a.t2": 5})
    assert mismatched == ["a.t2"] and missing == ["a.t3"]
    assert [t["match"] for t in tables] == [True, False, False]
    assert quote_identifier("we`ird") == "`we``ird`"


def test_grant_hashes_are_masked():
    from ansible.module_utils.mysql_health import mask_grant

    grant = "GRANT REPLICATION SLAVE ON *.* TO `repl`@`h` IDENTIFIED BY PASSWORD "
    assert mask_grant(grant + "'*6C8989366EAF75BB670AD8EA7A7FC1'") == grant + "'********'"
    assert "abc" not in mask_grant("GRANT USAGE ON *.* TO `u`@`h` IDENTIFIED VIA ed25519 USING 'abc'")
    user = "GRANT USAGE ON *.* TO `u`@`h` IDENTIFIED "
    cases = {  # every method of a MariaDB multi-method account, and the other spellings
        "VIA ed25519 USING 'abc' OR mysql_native_password USING '*AB12'":
            "VIA ed25519 USING '********' OR mysql_native_password USING '********'",
        "VIA unix_socket OR mysql_native_password USING '*AB12' REQUIRE SSL":
            "VIA unix_socket OR mysql_native_password USING '********' REQUIRE SSL",
        "VIA mysql_native_password USING PASSWORD('x''y') WITH GRANT OPTION":
            "VIA mysql_native_password USING PASSWORD('********') WITH GRANT OPTION",
        "WITH 'caching_sha2_password' AS '$A$005$x\\'y'": "WITH 'caching_sha2_password' AS '********'",
        "BY 'pw' REQUIRE SUBJECT '/CN=x'": "BY '********' REQUIRE SUBJECT '/CN=x'",
        "VIA ed25519 USING 'unterminated": "********",
    }
    for clause, masked in cases.items():
        assert mask_grant(user + clause) == user + masked
    assert mask_grant("GRANT SELECT ON `db`.* TO `u`@`h`") == "GRANT SELECT ON `db`.* TO `u`@`h`"


def test_row_hash_sql_quotes_and_is_null_aware():
    from ansible.module_utils.mysql_checksum import row_hash_sql

    sql = row_hash_sql("app", "we`ird", ["id", "na`me"])
    assert "FROM `app`.`we``ird`" in sql
    assert "CONCAT_WS('#', `id`, `na``me`, CONCAT(ISNULL(`id`), ISNULL(`na``me`)))" in sql
    assert "BIT_XOR" in sql and "COUNT(*)" in sql


# -- TLS -------------------------------------------------------------------------------------
def _tls_status(**kw):
    return dict(RUNNING, ssl_allowed="Yes", ssl_verify_server_cert="Yes", **kw)


def test_tls_required_passes_with_the_cipher_seen_on_the_source():
    thread = dict(cipher="TLS_AES_256_GCM_SHA384", version="TLSv1.3")
    src = source(have_ssl=True, replication_thread_tls=thread)
    checks = by_name(tls_checks(src, _tls_status(), dict(tls_required=True)))
    assert checks["replication_tls"]["ok"]
    assert "TLSv1.3 TLS_AES_256_GCM_SHA384" in checks["replication_tls"]["message"]
    assert replication_tls(src, _tls_status())["seen_by"] == "performance_schema"


def test_tls_required_fails_on_plaintext():
    plain = dict(RUNNING, ssl_allowed="No", ssl_verify_server_cert="No")
    checks = by_name(tls_checks(source(have_ssl=True), plain, dict(tls_required=True)))
    assert not checks["replication_tls"]["ok"] and "PLAINTEXT" in checks["replication_tls"]["message"]
    # the source sees the dump thread unencrypted, whatever the replica claims
    src = source(have_ssl=True, replication_thread_tls=dict(cipher="", version=""))
    checks = by_name(tls_checks(src, _tls_status(), dict(tls_required=True)))
    assert not checks["replication_tls"]["ok"] and "sees the replica's connection in PLAINTEXT" in (
        checks["replication_tls"]["message"]
    )
    no_verify = _tls_status()
    no_verify["ssl_verify_server_cert"] = "No"
    checks = by_name(tls_checks(source(have_ssl=True), no_verify, dict(tls_required=True)))
    assert "does not verify" in checks["replication_tls"]["message"]
    checks = by_name(tls_checks(source(have_ssl=False), _tls_status(), dict(tls_required=True)))
    assert "have_ssl" in checks["replication_tls"]["message"]


def test_tls_not_required_adds_no_check_and_unknown_cipher_is_said_so():
    assert tls_checks(source(), RUNNING, {}) == []
    checks = by_name(tls_checks(source(have_ssl=True), _tls_status(), dict(tls_required=True)))
    assert checks["replication_tls"]["ok"] and "cipher not visible" in checks["replication_tls"]["message"]


def test_certificate_expiry_check():
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    certs = [
        dict(name="ca", path="/ca", not_after=now + datetime.timedelta(days=400)),
        dict(name="server", path="", not_after=now + datetime.timedelta(days=10)),
    ]
    params = dict(_certificates=certs, _now=now, tls_expiry_warning_days=30)
    check = by_name(tls_checks(source(), RUNNING, params))["tls_certificate_expiry"]
    assert check["ok"] and "server" in check["message"] and "expire within 30 days" in check["message"]
    expired = certs + [dict(name="client", path="/c", not_after=now - datetime.timedelta(days=1))]
    checks = by_name(tls_checks(source(), RUNNING, dict(params, _certificates=expired)))
    check = checks["tls_certificate_expiry"]
    assert not check["ok"] and "EXPIRED: client" in check["message"]
    check = by_name(tls_checks(source(), RUNNING, dict(params, tls_expiry_warning_days=5)))
    assert check["tls_certificate_expiry"]["message"] == "no certificate expires soon"


def test_source_server_certificate_date_is_read_from_its_status():
    src = source(ssl_server_not_after="Mar  6 17:26:51 2029 GMT")
    (cert,) = certificates_to_check(src, {})
    assert cert["not_after"] == datetime.datetime(2029, 3, 6, 17, 26, 51, tzinfo=datetime.timezone.utc)
    assert certificates_to_check(source(ssl_server_not_after=""), {}) == []
