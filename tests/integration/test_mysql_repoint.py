"""Re-pointing a GTID replica to another source without a re-seed, between real MariaDB servers.

A is the source; B replicates A with log_slave_updates (what a Galera node or a relay does), so its
binlog holds A's transactions under A's server id; R (the backup server) replicates A. R is moved to
B by GTID: writes on A then reach R through B, and the tables are equal (CHECKSUM TABLE). The refusal:
B2 replicated A but stopped early, so it lacks transactions R has applied: the re-point is refused,
naming the domain and seqno, and R still replicates A.
"""

import time

import pytest
from ansible.module_utils.mysql_checksum import compare_tables
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_replica import ensure_replica
from ansible.module_utils.mysql_repoint import repoint

from tests.integration.test_mysql_replication import (
    REPL_PASSWORD,
    _playbook,
    count,
    local,
    login,
    make_source,
    replica_params,
    with_replica,
)
from tests.lib.mariadb import ROOT_PASSWORD


def _follow(replica, source):
    """Replicate ``source`` from the beginning of its binlog, by GTID."""
    return with_replica(replica, ensure_replica,
                        replica_params(source, source_use_gtid=True, source_gtid_pos="", wait=False))


def _wait_rows(server, table, expected, timeout=20):
    deadline = time.monotonic() + timeout
    while count(server, table) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count(server, table)


def _repoint(replica, source, check_mode=False):
    replica_conn = connect(dict(unix_socket=replica.socket, user="root"))
    source_conn = connect(dict(unix_socket=source.socket, user="root"))
    try:
        return repoint(replica_conn, source_conn,
                       replica_params(source, max_lag_seconds=1, wait_timeout=30), check_mode=check_mode)
    finally:
        replica_conn.close()
        source_conn.close()


def _source_port(server):
    return server.sql("SHOW SLAVE STATUS")[0][3]  # Master_Port


@pytest.fixture
def chain(mariadb_factory):
    a = mariadb_factory("a", server_id=1)
    b = mariadb_factory("b", server_id=2, extra_args=["--log-slave-updates"])
    b2 = mariadb_factory("b2", server_id=4, extra_args=["--log-slave-updates"])
    r = mariadb_factory("r", server_id=3)
    make_source(a, rows=50)  # the database and the repl user reach B, B2 and R by replication
    for follower in (b, b2, r):
        _follow(follower, a)
    for follower in (b, b2, r):
        assert _wait_rows(follower, "app.items", 50) == 50
    return a, b, b2, r


def test_repoint_to_a_node_holding_the_same_history(chain):
    a, b, b2, r = chain
    a.sql("INSERT INTO app.items (name) VALUES ('before-repoint')")
    assert _wait_rows(r, "app.items", 51) == 51 and _wait_rows(b, "app.items", 51) == 51

    preview = _repoint(r, b, check_mode=True)
    assert preview["changed"] and preview["check"]["ok"]
    assert any("MASTER_USE_GTID=slave_pos" in s and str(b.port) in s for s in preview["statements"])
    assert _source_port(r) == a.port  # check mode changed nothing

    moved = _repoint(r, b)
    assert moved["changed"] and moved["previous_source"] == f"127.0.0.1:{a.port}"
    assert moved["check"]["ok"] and moved["check"]["missing"] == []
    assert moved["status"]["source_port"] == b.port and moved["status"]["using_gtid"] == "Slave_Pos"
    assert _source_port(r) == b.port

    for i in range(20):  # written on A, reach R only through B
        a.sql("INSERT INTO app.items (name, payload) VALUES (%s, 'after')", (f"after-{i}",))
    assert _wait_rows(r, "app.items", 71) == 71
    assert r.sql("SELECT @@gtid_slave_pos")[0][0] == a.sql("SELECT @@gtid_binlog_pos")[0][0]

    replica_conn = connect(dict(unix_socket=r.socket, user="root"))
    source_conn = connect(dict(unix_socket=b.socket, user="root"))
    try:
        compared = compare_tables(replica_conn, source_conn,
                                  dict(databases=["app"], wait_timeout=20, retries=2))
    finally:
        replica_conn.close()
        source_conn.close()
    assert compared["compared"] == 2 and compared["mismatched"] == [] and compared["missing_on_replica"] == []

    again = _repoint(r, b)
    assert not again["changed"] and again["already_pointing"] and again["statements"] == []


def test_repoint_refused_when_the_new_node_lacks_transactions(chain, tmp_path):
    a, b, b2, r = chain
    b2.sql("STOP SLAVE")
    lacking = b2.sql("SELECT @@gtid_binlog_pos")[0][0]
    for i in range(3):
        a.sql("INSERT INTO app.items (name) VALUES (%s)", (f"not-on-b2-{i}",))
    assert _wait_rows(r, "app.items", 53) == 53
    applied = r.sql("SELECT @@gtid_slave_pos")[0][0]
    assert applied != lacking

    # the module itself, through ansible-playbook: the task fails, nothing changed, no secret shown
    task = {"name": "repoint", "mysql_replication_repoint": dict(
        local(r), **login(b2, "source"), replication_user="repl", replication_password=REPL_PASSWORD,
        max_lag_seconds=1, wait_timeout=20)}
    proc, results = _playbook(tmp_path, [task])
    assert proc.returncode != 0
    failed = results[0]
    assert failed["failed"] and not failed.get("changed")
    message = failed["msg"]
    assert f"re-point to 127.0.0.1:{b2.port} refused, nothing was changed" in message
    assert f"the replica has applied up to {applied}, the new source only up to {lacking}" in message
    assert "3 transaction(s) of server 1 missing" in message and "Re-seed" in message
    assert not failed["check"]["ok"] and failed["previous_source"] == f"127.0.0.1:{a.port}"
    for secret in (REPL_PASSWORD, ROOT_PASSWORD):
        assert secret not in proc.stdout and secret not in proc.stderr

    # R still replicates A, running, and keeps receiving
    assert _source_port(r) == a.port
    a.sql("INSERT INTO app.items (name) VALUES ('still-from-a')")
    assert _wait_rows(r, "app.items", 54) == 54
    status = r.sql("SHOW SLAVE STATUS")[0]
    assert status[10:12] == ("Yes", "Yes")  # Slave_IO_Running, Slave_SQL_Running
