"""The FTWRL-around-a-snapshot core against a real MariaDB (tests/lib/mariadb.py).

No LVM on the host (no device-mapper): the snapshot step here is a callback that does real work
against the server from a second session, which is exactly what the lock has to guarantee: writers
blocked, coordinates frozen. The lvcreate side runs in the molecule scenario `lvm` on a real VG.
"""

import threading
import time

import pymysql
import pytest
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_lock import MysqlLockError, lock_and_snapshot

from tests.lib.ports import free_port


@pytest.fixture
def db(mariadb_factory):
    server = mariadb_factory("lockdb")
    server.sql("CREATE DATABASE app")
    server.sql("CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    server.sql("INSERT INTO app.t (v) VALUES (1), (2), (3)")
    return server


def params(server):
    return {"unix_socket": server.socket, "user": "root", "config_file": None}


def try_insert(server, timeout=1):
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION lock_wait_timeout = {timeout}")
            cur.execute("INSERT INTO app.t (v) VALUES (42)")
        return None
    except pymysql.err.OperationalError as exc:
        return exc.args[0]
    finally:
        conn.close()


def test_writers_blocked_and_coordinates_frozen_while_snapshot_runs(db):
    seen = {}

    def snapshot():
        seen["insert_error"] = try_insert(db)
        seen["status"] = db.sql("SHOW MASTER STATUS")[0]
        seen["gtid"] = db.sql("SELECT @@gtid_binlog_pos")[0][0]
        return ["fake-but-real-callback"]

    result = lock_and_snapshot(lambda: connect(params(db)), snapshot, lock_wait_timeout=5)
    assert seen["insert_error"] == 1205  # Lock wait timeout exceeded: the write was blocked
    coords = result["coordinates"]
    assert coords["binlog_file"] == seen["status"][0] and coords["binlog_position"] == seen["status"][1]
    assert coords["gtid"] == seen["gtid"] and coords["gtid"]
    assert result["snapshot"] == ["fake-but-real-callback"]
    assert result["lock_seconds"] >= result["snapshot_seconds"] > 0
    assert "MariaDB" in result["server_version"]
    assert try_insert(db) is None  # unlocked afterwards
    assert db.sql("SELECT COUNT(*) FROM app.t")[0][0] == 4


def test_lock_released_when_the_snapshot_fails(db):
    def snapshot():
        raise RuntimeError("lvcreate failed")

    with pytest.raises(RuntimeError, match="lvcreate failed"):
        lock_and_snapshot(lambda: connect(params(db)), snapshot)
    assert try_insert(db) is None


def run_long_query(server, seconds):
    def target():
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT SLEEP({seconds}) FROM app.t LIMIT 1")
        finally:
            conn.close()

    thread = threading.Thread(target=target)
    thread.start()
    # until the server itself reports the query running for more than the 1 s bound the tests use
    # (a fixed sleep raced a slow connect on a loaded machine)
    deadline = time.monotonic() + 30
    watcher = server.connect()
    try:
        while True:
            with watcher.cursor() as cur:
                cur.execute("SELECT COALESCE(MAX(TIME_MS), 0) FROM information_schema.PROCESSLIST "
                            "WHERE INFO LIKE 'SELECT SLEEP(%'")
                if float(cur.fetchone()[0]) >= 1100:
                    return thread
            assert time.monotonic() < deadline, "the long query did not start within 30 s"
            time.sleep(0.05)
    finally:
        watcher.close()


def test_refuses_behind_a_long_running_query_without_locking(db):
    called = []
    thread = run_long_query(db, 6)
    try:
        with pytest.raises(MysqlLockError, match=r"1 statement\(s\) running for 1s or more.*refused.*SLEEP"):
            lock_and_snapshot(
                lambda: connect(params(db)),
                lambda: called.append(1),
                long_query_seconds=1,
                long_query_wait_seconds=1,
            )
        assert not called
        assert try_insert(db) is None  # nothing was left locked
    finally:
        thread.join()


def test_waits_for_a_long_query_within_the_bound(db):
    thread = run_long_query(db, 4)
    try:
        result = lock_and_snapshot(
            lambda: connect(params(db)), lambda: "snap", long_query_seconds=1, long_query_wait_seconds=20
        )
    finally:
        thread.join()
    assert result["quiet_wait_seconds"] > 0 and result["snapshot"] == "snap"


def test_unreachable_server_is_a_clear_error():
    called = []
    dead = {
        "host": "127.0.0.1",
        "port": free_port(),
        "user": "root",
        "connect_timeout": 2,
        "config_file": None,
    }
    with pytest.raises(MysqlLockError, match="MySQL unreachable, nothing locked and no snapshot taken"):
        lock_and_snapshot(lambda: connect(dead), lambda: called.append(1))
    assert not called


def test_lock_not_granted_within_lock_wait_timeout(db):
    """A session holding a table lock makes FTWRL wait; lock_wait_timeout bounds it."""
    holder = db.connect()
    called = []
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES app.t WRITE")
        with pytest.raises(MysqlLockError, match="not granted within lock_wait_timeout=1s"):
            lock_and_snapshot(
                lambda: connect(params(db)), lambda: called.append(1), lock_wait_timeout=1, flush_first=False
            )
        assert not called
    finally:
        holder.close()
    assert try_insert(db) is None
