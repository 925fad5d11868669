"""Re-pointing a GTID replica to another source without a re-seed, between real MariaDB servers.

A is the source; B replicates A with log_slave_updates (what a Galera node or a relay does), so its
binlog holds A's transactions under A's server id; R (the backup server) replicates A. R is moved to
B by GTID: writes on A then reach R through B, and the tables are equal (CHECKSUM TABLE). The refusal:
B2 replicated A but stopped early, so it lacks transactions R has applied: the re-point is refused,
naming the domain and seqno, and R still replicates A. One test: the four servers start once.
"""

import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.mysql_checksum import compare_tables
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_replica import ensure_replica
from ansible.module_utils.mysql_repoint import repoint

from tests.integration.test_mysql_replication import (
    REPL_PASSWORD,
    TOP,
    make_source,
    replica_params,
    wait_rows,
    with_replica,
)
from tests.lib import canary
from tests.lib.mariadb import ROOT_PASSWORD


def _follow(replica, source):
    """Replicate ``source`` from the beginning of its binlog, by GTID."""
    return with_replica(replica, ensure_replica,
                        replica_params(source, source_use_gtid=True, source_gtid_pos="", wait=False))


def _repoint(replica, source, check_mode=False):
    replica_conn = connect(dict(unix_socket=replica.socket, user="root"))
    source_conn = connect(dict(unix_socket=source.socket, user="root"))
    try:
        return repoint(replica_conn, source_conn,
                       replica_params(source, max_lag_seconds=1, wait_timeout=30), check_mode=check_mode)
    finally:
        replica_conn.close()
        source_conn.close()


def _repoint_playbook(tmp_path, replica, new_source, confirm=True):
    """playbooks/seafile_replication_repoint.yml against localhost as the one mysql_backup host."""
    host = dict(
        ansible_connection="local",
        ansible_python_interpreter=sys.executable,
        mysql_replication_replica_login_unix_socket=replica.socket,
        mysql_replication_source_admin_user="root",
        mysql_replication_source_admin_password=ROOT_PASSWORD,
        mysql_replication_source_user="repl",
        mysql_replication_source_password=REPL_PASSWORD,
        seafile_replication_repoint_source_address="127.0.0.1",
        seafile_replication_repoint_source_port=new_source.port,
        seafile_replication_checksum_wait_timeout=20,
        seafile_replication_catchup_timeout=30,
    )
    if confirm:
        host["seafile_replication_repoint_confirm"] = "localhost"
    inventory = tmp_path / "inventory.json"
    canary.write_private(inventory, json.dumps({"mysql_backup": {"hosts": {"localhost": host}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="False")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
            os.path.join(TOP, "playbooks", "seafile_replication_repoint.yml")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=TOP, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    tasks = {t["task"]["name"]: t["hosts"].get("localhost", {})
             for play in out["plays"] for t in play["tasks"]}
    return proc, tasks


CHECK = "Check | The new source holds every transaction the replica has applied (GTID)"
REPOINT = ("Re-point | STOP SLAVE, CHANGE MASTER TO the new source (MASTER_USE_GTID=slave_pos), START SLAVE, "
           "wait for catch-up")


def _source_port(server):
    return server.sql("SHOW SLAVE STATUS")[0][3]  # Master_Port


@pytest.fixture
def chain(mariadb_factory):
    a = mariadb_factory("a", server_id=1)
    b = mariadb_factory("b", server_id=2, extra_args=["--log-slave-updates"])
    b2 = mariadb_factory("b2", server_id=4, extra_args=["--log-slave-updates"])
    r = mariadb_factory("r", server_id=3)
    make_source(a, rows=50)  # the database and the repl user reach B, B2 and R by replication
    for db in ("ccnet_db", "seafile_db", "seahub_db"):  # what the Seafile playbook compares
        a.sql(f"CREATE DATABASE {db}")
        a.sql(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
        a.sql(f"INSERT INTO {db}.t VALUES (1, 'one'), (2, 'two')")
    a.sql("CREATE TABLE seafile_db.Repo (id INT PRIMARY KEY) ENGINE=InnoDB")  # ignored by the comparison
    for follower in (b, b2, r):
        _follow(follower, a)
    for follower in (b, b2, r):
        assert wait_rows(follower, "app.items", 50) == 50
    # every follower has applied all of A's set-up (its last statements come after the rows): the test
    # counts the transactions B2 lacks from where it stops (a CI run found B2 3 behind, 6 missing)
    position = a.sql("SELECT @@gtid_binlog_pos")[0][0]
    for follower in (b, b2, r):
        assert follower.sql("SELECT MASTER_GTID_WAIT(%s, 60)", (position,))[0][0] == 0, follower.base
    return a, b, b2, r


def test_repoint_refused_then_repointed_to_a_node_holding_the_same_history(chain, tmp_path):
    a, b, b2, r = chain
    # B2 stops replicating A: it lacks the next 3 transactions, which R applies
    b2.sql("STOP SLAVE")
    lacking = b2.sql("SELECT @@gtid_binlog_pos")[0][0]
    for i in range(3):
        a.sql("INSERT INTO app.items (name) VALUES (%s)", (f"not-on-b2-{i}",))
    assert wait_rows(r, "app.items", 53) == 53 and wait_rows(b, "app.items", 53) == 53
    applied = r.sql("SELECT @@gtid_slave_pos")[0][0]
    assert applied != lacking

    # the playbook to B2: refused by its check, the replica untouched, no secret shown
    proc, tasks = _repoint_playbook(tmp_path, r, b2)
    assert proc.returncode != 0
    check = tasks[CHECK]
    assert check["failed"] and not check.get("changed") and not check["check"]["ok"]
    message = check["msg"]
    assert f"re-point to 127.0.0.1:{b2.port} refused, nothing was changed" in message
    assert f"the replica has applied up to {applied}, the new source only up to {lacking}" in message
    assert "3 transaction(s) of server 1 missing" in message and "Re-seed" in message
    assert "The replica was not re-pointed." in tasks["Failed | Say what state the replica is in"]["msg"]
    assert REPOINT not in tasks
    for secret in (REPL_PASSWORD, ROOT_PASSWORD):
        assert secret not in proc.stdout and secret not in proc.stderr
    # R still replicates A, running, and keeps receiving
    assert _source_port(r) == a.port
    a.sql("INSERT INTO app.items (name) VALUES ('still-from-a')")
    assert wait_rows(r, "app.items", 54) == 54
    assert r.sql("SHOW SLAVE STATUS")[0][10:12] == ("Yes", "Yes")  # Slave_IO_Running, Slave_SQL_Running

    # check mode of the core: the decision and the statements, nothing changed
    preview = _repoint(r, b, check_mode=True)
    assert preview["changed"] and preview["check"]["ok"]
    assert any("MASTER_USE_GTID=slave_pos" in s and str(b.port) in s for s in preview["statements"])
    assert _source_port(r) == a.port

    # the playbook to B: check, STOP/CHANGE MASTER/START, wait, checksum of the Seafile tables against B
    proc, tasks = _repoint_playbook(tmp_path, r, b)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert tasks[CHECK]["check"]["ok"] and tasks[CHECK]["check"]["missing"] == []
    moved = tasks[REPOINT]
    assert moved["changed"] and moved["previous_source"] == f"127.0.0.1:{a.port}"
    assert moved["statements"][0] == "STOP REPLICA" and "MASTER_USE_GTID=slave_pos" in moved["statements"][1]
    assert moved["status"]["source_port"] == b.port and moved["status"]["using_gtid"] == "Slave_Pos"
    compared = tasks["Compare data | Checksum every replicated table on the replica and the new source"]
    assert compared["compared"] == 3 and compared["mismatched"] == []  # seafile_db.Repo left out
    assert _source_port(r) == b.port
    for secret in (REPL_PASSWORD, ROOT_PASSWORD):
        assert secret not in proc.stdout and secret not in proc.stderr

    for i in range(20):  # written on A, reach R only through B
        a.sql("INSERT INTO app.items (name, payload) VALUES (%s, 'after')", (f"after-{i}",))
    assert wait_rows(r, "app.items", 74) == 74
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
