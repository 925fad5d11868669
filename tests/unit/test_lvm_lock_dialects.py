"""Unit tests of the lock core's dialect handling (MySQL 8.x cannot run here: Debian ships MariaDB)."""

import pytest
from ansible.module_utils.mysql_dialect import Dialect
from ansible.module_utils.mysql_lock import (
    MysqlLockError,
    long_running_queries,
    read_coordinates,
    wait_for_quiet,
)


class FakeCursor:
    def __init__(self, conn):
        self.conn = conn
        self.description = None
        self.rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=None):
        self.conn.statements.append(sql)
        self.rows = self.conn.answers.get(sql.split(" WHERE")[0], [])
        self.description = [(k,) for k in self.rows[0]] if self.rows else None

    def fetchall(self):
        return [tuple(r.values()) for r in self.rows]


class FakeConn:
    def __init__(self, answers):
        self.answers = answers
        self.statements = []

    def cursor(self):
        return FakeCursor(self)


@pytest.mark.parametrize(
    "version,statement",
    [
        ("8.4.0", "SHOW BINARY LOG STATUS"),
        ("8.0.36", "SHOW MASTER STATUS"),
        ("5.7.44-log", "SHOW MASTER STATUS"),
    ],
)
def test_mysql_coordinates_and_executed_gtid_set(version, statement):
    conn = FakeConn(
        {
            statement: [
                {
                    "File": "binlog.000007",
                    "Position": 157,
                    "Binlog_Do_DB": "",
                    "Executed_Gtid_Set": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
                }
            ]
        }
    )
    coords = read_coordinates(conn, Dialect.from_version_string(version))
    assert conn.statements == [statement]
    assert coords == {
        "binlog_file": "binlog.000007",
        "binlog_position": 157,
        "gtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
    }


def test_mariadb_coordinates_read_gtid_binlog_pos():
    conn = FakeConn(
        {
            "SHOW BINLOG STATUS": [{"File": "mysql-bin.000001", "Position": 42}],
            "SELECT @@GLOBAL.gtid_binlog_pos AS gtid": [{"gtid": "0-1-2877"}],
        }
    )
    coords = read_coordinates(conn, Dialect.from_version_string("10.11.6-MariaDB-0+deb12u1-log"))
    assert coords == {"binlog_file": "mysql-bin.000001", "binlog_position": 42, "gtid": "0-1-2877"}


def test_binlog_off_gives_no_coordinates_but_no_error():
    conn = FakeConn({"SELECT @@GLOBAL.gtid_binlog_pos AS gtid": [{"gtid": ""}]})
    coords = read_coordinates(conn, Dialect.from_version_string("10.11.6-MariaDB"))
    assert coords == {"binlog_file": None, "binlog_position": None, "gtid": ""}


PROCESSLIST = "SELECT ID AS id, USER AS user, COMMAND AS command, TIME AS time, LEFT(INFO, 200) AS info FROM information_schema.PROCESSLIST"  # noqa: E501


def test_idle_and_system_threads_do_not_block_the_lock():
    rows = [
        {"id": 5, "user": "app", "command": "Sleep", "time": 900, "info": None},
        {"id": 6, "user": "repl", "command": "Binlog Dump GTID", "time": 9000, "info": None},
        {"id": 7, "user": "system user", "command": "Query", "time": 50, "info": None},
        {"id": 8, "user": "report", "command": "Query", "time": 45, "info": "SELECT SUM(x) FROM big"},
    ]
    busy = long_running_queries(FakeConn({PROCESSLIST: rows}), 30)
    assert [q["id"] for q in busy] == [8]


def test_wait_for_quiet_is_bounded():
    rows = [{"id": 8, "user": "report", "command": "Query", "time": 45, "info": "SELECT SUM(x) FROM big"}]
    now = [0.0]

    def clock():
        return now[0]

    def sleep(s):
        now[0] += s

    with pytest.raises(MysqlLockError, match=r"after waiting 5s.*id 8 \(report, 45s\): SELECT SUM"):
        wait_for_quiet(FakeConn({PROCESSLIST: rows}), 30, 5, clock=clock, sleep=sleep)
    assert now[0] == 5.0
