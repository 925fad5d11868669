"""Seed core: dump-header parsing, input validation, the long-query refusal, command building."""

import os
import stat

import pytest
from ansible.module_utils.mysql_connection import client_defaults_file
from ansible.module_utils.mysql_seed import (
    HeaderScanner,
    SeedError,
    build_dump_command,
    build_import_command,
    choose_consistency,
    estimate_dump_bytes,
    long_running_queries,
    parse_dump_header,
    validate_databases,
    validate_ignore_tables,
)

MARIADB_HEADER = """/*M!999999\\- enable the sandbox mode */
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
/*!40101 SET NAMES utf8mb4 */;
-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;

--
-- Alternately, following is the position of the binary logging from SHOW MASTER STATUS at point of backup.
--

-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000002', MASTER_LOG_POS=368915;

--
-- Current Database: `seafile`
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `seafile`;
"""
MARIADB_TRAILER = """
-- The deferred gtid setting for slave corresponding to the master-data CHANGE-MASTER follows
--
-- Preferably use GTID to start replication from GTID position:

-- SET GLOBAL gtid_slave_pos='0-1-42';
/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
-- Dump completed on 2026-11-22  1:27:55
"""
MYSQL_826_HEADER = """-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)
SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3E11FA47-71CA-11E1-9E33-C80AA9429562:1-77';

--
-- Position to start replication or point-in-time recovery from
--

-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000017', SOURCE_LOG_POS=157;

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `app`;
"""
MYSQL57_LEVEL1 = """-- MySQL dump 10.13  Distrib 5.7.44, for Linux (x86_64)
CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000003', MASTER_LOG_POS=154;
USE `app`;
"""


def test_mariadb_header_with_deferred_gtid():
    body = "INSERT INTO `t` VALUES (1);\n" * 1000
    assert parse_dump_header(MARIADB_HEADER + body + MARIADB_TRAILER) == dict(
        binlog_file="mysql-bin.000002", binlog_position=368915, gtid="0-1-42"
    )


def test_mysql_source_keywords_and_gtid_purged():
    assert parse_dump_header(MYSQL_826_HEADER) == dict(
        binlog_file="binlog.000017", binlog_position=157, gtid="3E11FA47-71CA-11E1-9E33-C80AA9429562:1-77"
    )


def test_uncommented_master_data_1():
    assert parse_dump_header(MYSQL57_LEVEL1) == dict(
        binlog_file="mysql-bin.000003", binlog_position=154, gtid=""
    )


def test_no_coordinates():
    assert parse_dump_header("-- MySQL dump\nCREATE DATABASE `x`;\n")["binlog_file"] is None


def test_use_gtid_line_is_not_taken_for_coordinates():
    scanner = HeaderScanner()
    scanner.feed(b"-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n")
    assert not scanner.found


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
def test_coordinates_split_across_chunks(chunk_size):
    data = (MARIADB_HEADER + "INSERT INTO t VALUES (1);\n" * 50 + MARIADB_TRAILER).encode()
    scanner = HeaderScanner()
    for i in range(0, len(data), chunk_size):
        scanner.feed(data[i : i + chunk_size])
    scanner.finish()
    assert (scanner.binlog_file, scanner.binlog_position, scanner.gtid) == (
        "mysql-bin.000002",
        368915,
        "0-1-42",
    )


def test_scanner_stops_scanning_head_after_data_starts():
    scanner = HeaderScanner()
    scanner.feed(b"CREATE DATABASE `a`;\n")
    # a CHANGE MASTER inside table data must not be taken for the coordinates
    scanner.feed(b"-- CHANGE MASTER TO MASTER_LOG_FILE='evil.000001', MASTER_LOG_POS=4;\n")
    assert scanner.done and not scanner.found


@pytest.mark.parametrize("entries", [["seafile.Repo", "seahub.django_session"], []])
def test_valid_ignore_tables(entries):
    assert validate_ignore_tables(entries) == [tuple(e.split(".")) for e in entries]


@pytest.mark.parametrize(
    "bad", ["Repo", "seafile.", ".Repo", "a.b.c", "sea file.Repo", "`a`.`b`", "a.b;DROP", ""]
)
def test_invalid_ignore_table_is_named(bad):
    with pytest.raises(SeedError) as err:
        validate_ignore_tables(["seafile.Repo", bad])
    assert repr(bad) in str(err.value)
    assert "db.table" in str(err.value)


def test_invalid_databases():
    with pytest.raises(SeedError):
        validate_databases([])
    with pytest.raises(SeedError, match="invalid database"):
        validate_databases(["ok", "no`pe"])


def _row(id_, time_, command="Query", user="app", info="SELECT 1"):
    return dict(ID=id_, USER=user, HOST="10.0.0.5:4242", COMMAND=command, TIME=time_, STATE="", INFO=info)


def test_long_query_refusal_decision():
    rows = [
        _row(1, 5000, command="Sleep"),  # idle connection: harmless
        _row(2, 5000, command="Binlog Dump", user="repl"),  # a replica reading binlogs
        _row(3, 5000, command="Daemon", user="system user"),
        _row(4, 5000, user="event_scheduler", command="Daemon"),
        _row(5, 299),  # young enough
        _row(6, 300, info="SELECT SLEEP(1000)"),  # at the limit: refuse
        _row(7, 9999),  # our own session
    ]
    found = long_running_queries(rows, 300, own_id=7)
    assert [r["ID"] for r in found] == [6]


def test_consistency_choice():
    assert choose_consistency("auto", []) == "single_transaction"
    assert choose_consistency("auto", ["seahub.myisam_table"]) == "lock"
    assert choose_consistency("lock", []) == "lock"
    assert choose_consistency("single_transaction", ["x.y"]) == "single_transaction"


def test_dump_command_defaults_file_first_and_no_secret():
    argv = build_dump_command(
        "/usr/bin/mariadb-dump",
        "/tmp/x.cnf",
        ["seafile", "seahub"],
        [("seafile", "Repo")],
        "single_transaction",
        "--master-data=2",
        True,
        ["--compact"],
    )
    assert argv[:2] == ["/usr/bin/mariadb-dump", "--defaults-file=/tmp/x.cnf"]
    assert "--single-transaction" in argv and "--lock-all-tables" not in argv
    assert "--ignore-table=seafile.Repo" in argv and "--gtid" in argv
    assert argv[-3:] == ["--databases", "seafile", "seahub"]
    assert not any("password" in a for a in argv)
    lock = build_dump_command("mysqldump", "/tmp/x.cnf", ["a"], [], "lock", "--source-data=2")
    assert "--lock-all-tables" in lock and "--source-data=2" in lock and "--gtid" not in lock
    assert build_import_command("mysql", "/tmp/t.cnf")[:2] == ["mysql", "--defaults-file=/tmp/t.cnf"]


def test_client_defaults_file_is_private_and_escaped(tmp_path):
    path = client_defaults_file(
        dict(host="db.example", port=3307, user="admin", password='p"a\\ss#w;rd'), str(tmp_path)
    )
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = open(path).read()
        assert text.startswith("[client]\n")
        assert 'password="p\\"a\\\\ss#w;rd"' in text
        assert "port=3307" in text and "protocol=tcp" in text
    finally:
        os.unlink(path)
    sock = client_defaults_file(dict(unix_socket="/run/mysqld/mysqld.sock", user="root"), str(tmp_path))
    try:
        text = open(sock).read()
        assert 'socket="/run/mysqld/mysqld.sock"' in text and "password" not in text
    finally:
        os.unlink(sock)


def test_config_file_gives_credentials_only(tmp_path):
    from ansible.module_utils.mysql_connection import read_client_credentials

    cnf = tmp_path / "my.cnf"
    cnf.write_text("[client]\nuser=admin\npassword=\"s3 cret\"\nsocket=/elsewhere.sock\n[mysqld]\nport=1\n")
    assert read_client_credentials(str(cnf)) == {"user": "admin", "password": "s3 cret"}
    assert read_client_credentials(str(tmp_path / "missing.cnf")) == {}
    assert read_client_credentials(None) == {}


def test_client_defaults_file_takes_config_file_credentials_like_the_modules_connections(tmp_path):
    """The children read no other option file (--defaults-file): the credentials the module's own
    connections take from config_file go into this one, its host and socket do not."""
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[client]\nuser=admin\npassword=\"s3 cret\"\nsocket=/elsewhere.sock\nport=1\n")
    path = client_defaults_file(dict(host="db.example", port=3307, config_file=str(cnf)), str(tmp_path))
    try:
        text = open(path).read()
        assert 'user="admin"' in text and 'password="s3 cret"' in text
        assert "elsewhere" not in text and "port=3307" in text and "port=1\n" not in text
    finally:
        os.unlink(path)
    other_user = client_defaults_file(dict(host="db", user="repl", config_file=str(cnf)), str(tmp_path))
    try:
        text = open(other_user).read()
        assert 'user="repl"' in text and "password" not in text  # admin's password is not repl's
    finally:
        os.unlink(other_user)


def test_dump_estimate_is_data_plus_index_of_the_tables_not_ignored():
    tables = [
        {"TABLE_SCHEMA": "seafile_db", "TABLE_NAME": "Repo", "DATA_LENGTH": 16384, "INDEX_LENGTH": 32768},
        {"TABLE_SCHEMA": "seafile_db", "TABLE_NAME": "Branch", "DATA_LENGTH": 1000, "INDEX_LENGTH": None},
        {"TABLE_SCHEMA": "seahub_db", "TABLE_NAME": "django_session", "DATA_LENGTH": 10**9,
         "INDEX_LENGTH": 5},
    ]
    assert estimate_dump_bytes(tables) == 16384 + 32768 + 1000 + 10**9 + 5
    assert estimate_dump_bytes(tables, [("seahub_db", "django_session")]) == 16384 + 32768 + 1000
    assert estimate_dump_bytes([]) == 0
