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


def _sessions(rows):
    """The answers of mysql_connection.processlist's two statements, with our own session (id 99)."""
    own = {"Id": 99, "User": "backup", "Command": "Query", "Time": 0, "Info": "SHOW FULL PROCESSLIST"}
    return {"SELECT CONNECTION_ID() AS id": [{"id": 99}], "SHOW FULL PROCESSLIST": rows + [own]}


def test_idle_and_system_threads_do_not_block_the_lock():
    rows = [
        {"Id": 5, "User": "app", "Command": "Sleep", "Time": 900, "Info": None},
        {"Id": 6, "User": "repl", "Command": "Binlog Dump GTID", "Time": 9000, "Info": None},
        {"Id": 7, "User": "system user", "Command": "Query", "Time": 50, "Info": None},
        {"Id": 8, "User": "report", "Command": "Query", "Time": 45, "Info": "SELECT SUM(x) FROM big"},
        {"Id": 9, "User": "report", "Command": "Query", "Time": 3, "Info": "SELECT 1"},
    ]
    conn = FakeConn(_sessions(rows))
    busy = long_running_queries(conn, 30)
    assert [q["id"] for q in busy] == [8]
    assert busy[0]["info"] == "SELECT SUM(x) FROM big"
    # the thread list as sent, never information_schema.PROCESSLIST (a temporary table per read)
    assert "SHOW FULL PROCESSLIST" in conn.statements
    assert not any("information_schema" in sql for sql in conn.statements)


def test_our_own_long_statement_is_not_a_blocker():
    own = {"Id": 99, "User": "backup", "Command": "Query", "Time": 600, "Info": "SHOW FULL PROCESSLIST"}
    conn = FakeConn({"SELECT CONNECTION_ID() AS id": [{"id": 99}], "SHOW FULL PROCESSLIST": [own]})
    assert long_running_queries(conn, 30) == []


def test_wait_for_quiet_is_bounded():
    rows = [{"Id": 8, "User": "report", "Command": "Query", "Time": 45, "Info": "SELECT SUM(x) FROM big"}]
    now = [0.0]

    def clock():
        return now[0]

    def sleep(s):
        now[0] += s

    with pytest.raises(MysqlLockError, match=r"after waiting 5s.*id 8 \(report, 45s\): SELECT SUM"):
        wait_for_quiet(FakeConn(_sessions(rows)), 30, 5, clock=clock, sleep=sleep)
    assert now[0] == 5.0
