"""Replica core: status normalisation across dialects, the plan (idempotence rules), escaping, wait."""

import pymysql.converters
import pytest
from ansible.module_utils.mysql_dialect import Dialect
from ansible.module_utils.mysql_replica import (
    ReplicaError,
    normalise_status,
    plan,
    render,
    wait_decision,
    wait_for_replica,
)

MARIADB = Dialect("mariadb", (10, 11, 6))
MYSQL84 = Dialect("mysql", (8, 4, 0))
MYSQL57 = Dialect("mysql", (5, 7, 44))


def literal(value):
    return "'" + pymysql.converters.escape_string(value) + "'"


MARIADB_ROW = {
    "Slave_IO_State": "Waiting for master to send event",
    "Master_Host": "10.0.0.1",
    "Master_User": "repl",
    "Master_Port": 3306,
    "Connect_Retry": 60,
    "Master_Log_File": "mysql-bin.000003",
    "Read_Master_Log_Pos": 1200,
    "Relay_Log_File": "relay-bin.000002",
    "Relay_Log_Pos": 555,
    "Relay_Master_Log_File": "mysql-bin.000003",
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Exec_Master_Log_Pos": 1200,
    "Seconds_Behind_Master": 0,
    "Master_SSL_Allowed": "No",
    "Master_SSL_CA_File": "",
    "Master_SSL_Cert": "",
    "Master_SSL_Key": "",
    "Master_SSL_Verify_Server_Cert": "No",
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Using_Gtid": "No",
}
MYSQL8_ROW = {
    "Replica_IO_State": "Waiting for source to send event",
    "Source_Host": "10.0.0.1",
    "Source_User": "repl",
    "Source_Port": 3306,
    "Connect_Retry": 60,
    "Source_Log_File": "binlog.000017",
    "Read_Source_Log_Pos": 157,
    "Relay_Log_File": "relay.000002",
    "Relay_Log_Pos": 326,
    "Relay_Source_Log_File": "binlog.000017",
    "Replica_IO_Running": "Yes",
    "Replica_SQL_Running": "Yes",
    "Exec_Source_Log_Pos": 157,
    "Seconds_Behind_Source": None,
    "Source_SSL_Allowed": "Yes",
    "Source_SSL_CA_File": "/etc/ca.pem",
    "Source_SSL_Cert": "",
    "Source_SSL_Key": "",
    "Source_SSL_Verify_Server_Cert": "No",
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Auto_Position": 0,
}


def test_normalise_mariadb_and_mysql_rows_alike():
    a, b = normalise_status(MARIADB_ROW), normalise_status(MYSQL8_ROW)
    for s in (a, b):
        assert s["configured"] and s["io_running"] == "Yes" and s["sql_running"] == "Yes"
        assert s["source_host"] == "10.0.0.1" and s["source_user"] == "repl" and s["source_port"] == 3306
    assert a["exec_source_log_pos"] == 1200 and a["relay_source_log_file"] == "mysql-bin.000003"
    assert b["read_source_log_pos"] == 157 and b["seconds_behind"] is None and b["ssl_ca"] == "/etc/ca.pem"
    assert a["seconds_behind"] == 0


def test_normalise_no_row():
    s = normalise_status(None)
    assert not s["configured"] and s["io_running"] == "No" and s["last_io_error"] == ""


WANT = dict(
    source_host="10.0.0.1",
    source_port=3306,
    source_user="repl",
    source_password="s3cret",
    source_log_file="mysql-bin.000002",
    source_log_pos=368915,
    state="running",
    update_password="on_create",
)


def sql_of(decided, dialect=MARIADB):
    return [masked for _, masked in render(decided["steps"], dialect, literal)]


def test_new_replica_gets_coordinates_and_start():
    decided = plan(normalise_status(None), WANT, MARIADB)
    assert decided["coordinates_applied"]
    statements = sql_of(decided)
    assert statements == [
        "CHANGE MASTER TO MASTER_HOST='10.0.0.1', MASTER_PORT=3306, MASTER_USER='repl', "
        "MASTER_PASSWORD='********', MASTER_LOG_FILE='mysql-bin.000002', MASTER_LOG_POS=368915, "
        "MASTER_USE_GTID=no",
        "START REPLICA",
    ]
    real = render(decided["steps"], MARIADB, literal)[0][0]
    assert "MASTER_PASSWORD='s3cret'" in real
    assert decided["before"] == {"state": "absent"}
    assert decided["after"]["source_log_pos"] == 368915 and "source_password" not in decided["after"]


def test_mysql84_syntax():
    statements = sql_of(plan(normalise_status(None), WANT, MYSQL84), MYSQL84)
    assert statements[0].startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.1'")
    assert "SOURCE_LOG_POS=368915" in statements[0] and "USE_GTID" not in statements[0]
    assert statements[1] == "START REPLICA"
    assert sql_of(plan(normalise_status(None), WANT, MYSQL57), MYSQL57)[1] == "START SLAVE"


def test_running_replica_same_source_is_never_repointed():
    decided = plan(normalise_status(MARIADB_ROW), WANT, MARIADB)
    assert decided["steps"] == [] and not decided["coordinates_applied"]
    assert "already configured" in decided["coordinates_ignored_reason"]


def test_stopped_replica_is_started_without_change():
    row = dict(MARIADB_ROW, Slave_IO_Running="No", Slave_SQL_Running="No")
    assert sql_of(plan(normalise_status(row), WANT, MARIADB)) == ["START REPLICA"]


def test_state_stopped_stops():
    assert sql_of(plan(normalise_status(MARIADB_ROW), dict(WANT, state="stopped"), MARIADB)) == [
        "STOP REPLICA"
    ]


def test_host_change_repoints_with_coordinates():
    decided = plan(normalise_status(MARIADB_ROW), dict(WANT, source_host="10.0.0.9"), MARIADB)
    statements = sql_of(decided)
    assert statements[0] == "STOP REPLICA" and statements[-1] == "START REPLICA"
    assert "MASTER_HOST='10.0.0.9'" in statements[1] and "MASTER_LOG_POS=368915" in statements[1]
    assert decided["before"]["source_host"] == "10.0.0.1" and decided["after"]["source_host"] == "10.0.0.9"


def test_password_required_to_configure():
    with pytest.raises(ReplicaError, match="source_password is required"):
        plan(normalise_status(None), dict(WANT, source_password=None), MARIADB)


def test_ssl_change_keeps_position():
    statements = sql_of(
        plan(normalise_status(MARIADB_ROW), dict(WANT, source_ssl=True, source_ssl_ca="/ca"), MARIADB)
    )
    assert statements == [
        "STOP REPLICA",
        "CHANGE MASTER TO MASTER_SSL=1, MASTER_SSL_CA='/ca'",
        "START REPLICA",
    ]


def test_update_password_always():
    statements = sql_of(plan(normalise_status(MARIADB_ROW), dict(WANT, update_password="always"), MARIADB))
    assert statements == ["STOP REPLICA", "CHANGE MASTER TO MASTER_PASSWORD='********'", "START REPLICA"]


def test_absent():
    assert sql_of(plan(normalise_status(MARIADB_ROW), dict(state="absent"), MARIADB)) == [
        "STOP REPLICA",
        "RESET REPLICA ALL",
    ]
    assert sql_of(plan(normalise_status(None), dict(state="absent"), MARIADB)) == []
    assert sql_of(plan(normalise_status(MYSQL8_ROW), dict(state="absent"), MYSQL57), MYSQL57) == [
        "STOP SLAVE",
        "RESET SLAVE ALL",
    ]


def test_values_are_escaped_not_pasted():
    evil = dict(WANT, source_host="h'; DROP TABLE x; --", source_password="pw'\\")
    real = render(plan(normalise_status(None), evil, MARIADB)["steps"], MARIADB, literal)[0][0]
    assert "MASTER_HOST='h\\'; DROP TABLE x; --'" in real
    assert "MASTER_PASSWORD='pw\\'\\\\'" in real
    with pytest.raises(ValueError):
        render(
            plan(normalise_status(None), dict(WANT, source_log_pos="1; DROP"), MARIADB)["steps"],
            MARIADB,
            literal,
        )


def test_wait_decision():
    ok = normalise_status(MARIADB_ROW)
    assert wait_decision(ok, 30) == "ok"
    assert wait_decision(dict(ok, seconds_behind=100), 30) == "wait"
    assert wait_decision(dict(ok, seconds_behind=None), 30) == "wait"
    assert wait_decision(dict(ok, io_running="Connecting"), 30) == "wait"
    denied = dict(
        ok,
        io_running="Connecting",
        last_io_errno=1045,
        last_io_error="error connecting to master 'repl@10.0.0.1:3306' - Access denied",
    )
    kind, message = wait_decision(denied, 30)
    assert kind == "error" and "Access denied" in message and "1045" in message
    sql_err = dict(ok, sql_running="No", last_sql_errno=1062, last_sql_error="Duplicate entry '1'")
    assert "Duplicate entry" in wait_decision(sql_err, 30)[1]


class FakeConn:
    """Feeds SHOW SLAVE STATUS rows to wait_for_replica (the loop itself, no server)."""

    def __init__(self, rows):
        self.rows = list(rows)

    def cursor(self):
        conn = self

        class Cursor:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def execute(self, sql, args=None):
                self.row = conn.rows.pop(0) if len(conn.rows) > 1 else conn.rows[0]

            def fetchall(self):
                return [self.row]

        return Cursor()


def test_wait_loop_until_caught_up_and_timeout():
    behind = dict(MARIADB_ROW, Seconds_Behind_Master=500)
    t = [0.0]
    status = wait_for_replica(
        FakeConn([behind, behind, MARIADB_ROW]),
        MARIADB,
        30,
        60,
        clock=lambda: t[0],
        sleep=lambda s: t.__setitem__(0, t[0] + s),
    )
    assert status["seconds_behind"] == 0
    t = [0.0]
    with pytest.raises(ReplicaError, match="not caught up after 5s"):
        wait_for_replica(
            FakeConn([behind]), MARIADB, 30, 5, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s)
        )


# -- GTID ------------------------------------------------------------------------------------
GTID_WANT = dict(WANT, source_use_gtid=True, source_gtid_pos="0-1-42")


def test_gtid_new_replica_sets_slave_pos_before_start_and_no_coordinates():
    decided = plan(normalise_status(None), GTID_WANT, MARIADB)
    statements = sql_of(decided)
    assert statements[0] == "SET GLOBAL gtid_slave_pos = '0-1-42'"
    assert statements[1].endswith("MASTER_USE_GTID=slave_pos") and "MASTER_LOG_FILE" not in statements[1]
    assert "MASTER_USE_GTID=no" not in statements[1]
    assert statements[2] == "START REPLICA"
    assert decided["gtid_position_applied"] and not decided["coordinates_applied"]
    assert decided["after"]["gtid_slave_pos"] == "0-1-42" and decided["after"]["source_use_gtid"] is True


def test_gtid_repoint_stops_before_setting_the_position():
    decided = plan(normalise_status(MARIADB_ROW), dict(GTID_WANT, source_host="10.0.0.9"), MARIADB)
    assert sql_of(decided)[:2] == ["STOP REPLICA", "SET GLOBAL gtid_slave_pos = '0-1-42'"]


def test_gtid_mysql_uses_auto_position_and_sets_no_slave_pos():
    decided = plan(normalise_status(None), GTID_WANT, MYSQL84)
    statements = sql_of(decided, MYSQL84)
    assert statements[0].startswith("CHANGE REPLICATION SOURCE TO") and statements[0].endswith(
        "SOURCE_AUTO_POSITION=1"
    )
    assert "SOURCE_LOG_FILE" not in statements[0] and not any("gtid_slave_pos" in s for s in statements)
    assert not decided["gtid_position_applied"] and "GTID_PURGED" in decided["coordinates_ignored_reason"]
    assert sql_of(plan(normalise_status(None), GTID_WANT, MYSQL57), MYSQL57)[0].endswith(
        "MASTER_AUTO_POSITION=1"
    )


def test_gtid_running_on_slave_pos_changes_nothing():
    row = dict(MARIADB_ROW, Using_Gtid="Slave_Pos")
    decided = plan(normalise_status(row), GTID_WANT, MARIADB)
    assert decided["steps"] == [] and not decided["gtid_position_applied"]
    assert "already configured" in decided["coordinates_ignored_reason"]
    mysql_row = dict(MYSQL8_ROW, Auto_Position=1)
    assert plan(normalise_status(mysql_row), GTID_WANT, MYSQL84)["steps"] == []


def test_gtid_switch_on_configured_replica_keeps_position():
    assert sql_of(plan(normalise_status(MARIADB_ROW), GTID_WANT, MARIADB)) == [
        "STOP REPLICA",
        "CHANGE MASTER TO MASTER_USE_GTID=slave_pos",
        "START REPLICA",
    ]
    back = dict(WANT, source_use_gtid=False)
    assert sql_of(plan(normalise_status(dict(MARIADB_ROW, Using_Gtid="Current_Pos")), back, MARIADB)) == [
        "STOP REPLICA",
        "CHANGE MASTER TO MASTER_USE_GTID=no",
        "START REPLICA",
    ]
    # not given: not compared
    assert plan(normalise_status(dict(MARIADB_ROW, Using_Gtid="Slave_Pos")), WANT, MARIADB)["steps"] == []


def test_gtid_position_validated_before_anything():
    with pytest.raises(ReplicaError, match="not a MariaDB GTID list"):
        plan(normalise_status(None), dict(GTID_WANT, source_gtid_pos="0-1-5'; DROP"), MARIADB)
    with pytest.raises(ReplicaError, match="only used with source_use_gtid"):
        plan(normalise_status(None), dict(WANT, source_gtid_pos="0-1-5"), MARIADB)
    multi = plan(normalise_status(None), dict(GTID_WANT, source_gtid_pos="0-1-5, 1-2-9"), MARIADB)
    assert sql_of(multi)[0] == "SET GLOBAL gtid_slave_pos = '0-1-5,1-2-9'"
    empty = plan(normalise_status(None), dict(GTID_WANT, source_gtid_pos=""), MARIADB)
    assert sql_of(empty)[0] == "SET GLOBAL gtid_slave_pos = ''"
