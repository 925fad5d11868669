"""The dialect table, version by version (MySQL is covered here only: it cannot run on this machine)."""

import pytest
from ansible.module_utils.mysql_dialect import Dialect, DialectError, parse_client_version, parse_version


@pytest.mark.parametrize(
    "text,flavor,version",
    [
        ("10.11.6-MariaDB-0+deb12u1-log", "mariadb", (10, 11, 6)),
        ("11.4.2-MariaDB", "mariadb", (11, 4, 2)),
        ("5.5.5-10.3.39-MariaDB-0+deb10u1", "mariadb", (10, 3, 39)),
        ("8.0.36", "mysql", (8, 0, 36)),
        ("8.4.0-log", "mysql", (8, 4, 0)),
        ("5.7.44-log", "mysql", (5, 7, 44)),
    ],
)
def test_parse_version(text, flavor, version):
    assert parse_version(text) == (flavor, version)


def test_parse_version_rejects_garbage():
    with pytest.raises(DialectError):
        parse_version("not a version")


@pytest.mark.parametrize(
    "output,flavor,version",
    [
        (
            "mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)",
            "mariadb",
            (10, 11, 6),
        ),
        ("mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)", "mariadb", (11, 4, 2)),
        ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 0, 36)),
        ("mysqldump  Ver 8.0.25 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 0, 25)),
        ("mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)", "mysql", (5, 7, 44)),
    ],
)
def test_parse_client_version(output, flavor, version):
    assert parse_client_version(output) == (flavor, version)


# flavor, version, change, start, show status, binlog status, dump option, retention var, pos wait
TABLE = [
    (
        "mariadb",
        (10, 3, 39),
        "CHANGE MASTER TO",
        "START SLAVE",
        "SHOW SLAVE STATUS",
        "SHOW MASTER STATUS",
        "--master-data=2",
        "expire_logs_days",
        "MASTER_POS_WAIT",
    ),
    (
        "mariadb",
        (10, 5, 1),
        "CHANGE MASTER TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW MASTER STATUS",
        "--master-data=2",
        "expire_logs_days",
        "MASTER_POS_WAIT",
    ),
    (
        "mariadb",
        (10, 5, 2),
        "CHANGE MASTER TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW BINLOG STATUS",
        "--master-data=2",
        "expire_logs_days",
        "MASTER_POS_WAIT",
    ),
    (
        "mariadb",
        (10, 11, 6),
        "CHANGE MASTER TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW BINLOG STATUS",
        "--master-data=2",
        "binlog_expire_logs_seconds",
        "MASTER_POS_WAIT",
    ),
    (
        "mariadb",
        (11, 4, 2),
        "CHANGE MASTER TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW BINLOG STATUS",
        "--master-data=2",
        "binlog_expire_logs_seconds",
        "MASTER_POS_WAIT",
    ),
    (
        "mysql",
        (5, 7, 44),
        "CHANGE MASTER TO",
        "START SLAVE",
        "SHOW SLAVE STATUS",
        "SHOW MASTER STATUS",
        "--master-data=2",
        "expire_logs_days",
        "MASTER_POS_WAIT",
    ),
    (
        "mysql",
        (8, 0, 21),
        "CHANGE MASTER TO",
        "START SLAVE",
        "SHOW SLAVE STATUS",
        "SHOW MASTER STATUS",
        "--master-data=2",
        "binlog_expire_logs_seconds",
        "MASTER_POS_WAIT",
    ),
    (
        "mysql",
        (8, 0, 22),
        "CHANGE MASTER TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW MASTER STATUS",
        "--master-data=2",
        "binlog_expire_logs_seconds",
        "MASTER_POS_WAIT",
    ),
    (
        "mysql",
        (8, 0, 23),
        "CHANGE REPLICATION SOURCE TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW MASTER STATUS",
        "--master-data=2",
        "binlog_expire_logs_seconds",
        "MASTER_POS_WAIT",
    ),
    (
        "mysql",
        (8, 0, 26),
        "CHANGE REPLICATION SOURCE TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW MASTER STATUS",
        "--source-data=2",
        "binlog_expire_logs_seconds",
        "SOURCE_POS_WAIT",
    ),
    (
        "mysql",
        (8, 2, 0),
        "CHANGE REPLICATION SOURCE TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW BINARY LOG STATUS",
        "--source-data=2",
        "binlog_expire_logs_seconds",
        "SOURCE_POS_WAIT",
    ),
    (
        "mysql",
        (8, 4, 0),
        "CHANGE REPLICATION SOURCE TO",
        "START REPLICA",
        "SHOW REPLICA STATUS",
        "SHOW BINARY LOG STATUS",
        "--source-data=2",
        "binlog_expire_logs_seconds",
        "SOURCE_POS_WAIT",
    ),
]


@pytest.mark.parametrize("flavor,version,change,start,show,binlog,dump,retention,pos_wait", TABLE)
def test_dialect_table(flavor, version, change, start, show, binlog, dump, retention, pos_wait):
    d = Dialect(flavor, version)
    assert d.change_source == change
    assert d.start_replica == start
    assert d.stop_replica == start.replace("START", "STOP")
    assert d.reset_replica_all == start.replace("START", "RESET") + " ALL"
    assert d.show_replica_status == show
    assert d.show_binlog_status == binlog
    assert d.dump_coordinates_option() == dump
    assert d.retention_variable == retention
    assert d.pos_wait_function == pos_wait


def test_change_option_names_follow_the_keyword():
    assert Dialect("mysql", (8, 0, 36)).change_option("log_pos") == "SOURCE_LOG_POS"
    assert Dialect("mysql", (8, 0, 22)).change_option("log_pos") == "MASTER_LOG_POS"
    assert Dialect("mariadb", (11, 4, 0)).change_option("host") == "MASTER_HOST"
    assert Dialect("mariadb", (10, 11, 0)).change_option("use_gtid") == "MASTER_USE_GTID"
    with pytest.raises(DialectError):
        Dialect("mysql", (8, 0, 36)).change_option("use_gtid")


def test_log_replica_updates_variable():
    assert Dialect("mysql", (8, 0, 26)).log_replica_updates_variable == "log_replica_updates"
    assert Dialect("mysql", (8, 0, 25)).log_replica_updates_variable == "log_slave_updates"
    assert Dialect("mariadb", (11, 4, 0)).log_replica_updates_variable == "log_slave_updates"


@pytest.mark.parametrize(
    "flavor,version,values,seconds",
    [
        ("mariadb", (10, 3, 0), {"expire_logs_days": "7"}, 7 * 86400),
        ("mariadb", (10, 3, 0), {"expire_logs_days": "0"}, 0),
        (
            "mariadb",
            (10, 11, 0),
            {"binlog_expire_logs_seconds": "86400", "expire_logs_days": "1.000000"},
            86400,
        ),
        ("mariadb", (10, 11, 0), {"binlog_expire_logs_seconds": "0", "expire_logs_days": "0.000000"}, 0),
        ("mysql", (5, 7, 44), {"expire_logs_days": "10"}, 10 * 86400),
        ("mysql", (8, 0, 36), {"binlog_expire_logs_seconds": "2592000", "expire_logs_days": "0"}, 2592000),
        # MySQL 8.0 with only the deprecated variable set
        ("mysql", (8, 0, 36), {"binlog_expire_logs_seconds": "0", "expire_logs_days": "3"}, 3 * 86400),
        # MySQL 8.4: expire_logs_days no longer exists
        ("mysql", (8, 4, 0), {"binlog_expire_logs_seconds": "604800"}, 604800),
    ],
)
def test_retention_seconds(flavor, version, values, seconds):
    assert Dialect(flavor, version).retention_seconds(values) == seconds


def test_from_version_string_flavor_override():
    assert Dialect.from_version_string("10.11.6-MariaDB").flavor == "mariadb"
    assert Dialect.from_version_string("10.11.6-MariaDB", "mysql").flavor == "mysql"
    with pytest.raises(DialectError):
        Dialect("postgres", (15, 0, 0))


def test_gtid_start_option_per_dialect():
    assert Dialect("mariadb", (10, 11, 6)).gtid_start_option(True) == "MASTER_USE_GTID=slave_pos"
    assert Dialect("mariadb", (10, 11, 6)).gtid_start_option(False) == "MASTER_USE_GTID=no"
    assert Dialect("mysql", (8, 4, 0)).gtid_start_option(True) == "SOURCE_AUTO_POSITION=1"
    assert Dialect("mysql", (8, 0, 22)).gtid_start_option(True) == "MASTER_AUTO_POSITION=1"
    assert Dialect("mysql", (5, 7, 44)).gtid_start_option(False) == "MASTER_AUTO_POSITION=0"
    assert Dialect("mariadb", (10, 11, 6)).sets_gtid_slave_pos
    assert not Dialect("mysql", (8, 4, 0)).sets_gtid_slave_pos
    with pytest.raises(DialectError):
        Dialect("mariadb", (5, 5, 60)).gtid_start_option(True)
