"""The FTWRL-around-a-snapshot core against a real MariaDB (tests/lib/mariadb.py).

No LVM on the host (no device-mapper): the snapshot step here is a callback that does real work
against the server from a second session, which is exactly what the lock has to guarantee: writers
blocked, coordinates frozen. The lvcreate side runs in the molecule scenario `lvm` on a real VG.
"""

import subprocess
import threading
import time

import pymysql
import pytest
from ansible.module_utils.lvm_snapshot import create_snapshots
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_lock import LockExpired, MysqlLockError, lock_and_snapshot
from ansible.module_utils.stoppable_runner import StoppableRunner

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
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != 1317:  # interrupted by kill_long_queries: the test is done with it
                raise
        finally:
            conn.close()

    thread = threading.Thread(target=target)
    thread.start()
    # until the server itself reports the query running for more than the 1 s bound the tests use
    # (a fixed sleep raced a slow connect on a loaded machine)
    deadline = time.monotonic() + 30
    while True:
        # whole seconds: 2 is more than 1 s
        if any(str(r["INFO"] or "").startswith("SELECT SLEEP(") and int(r["TIME"] or 0) >= 2
               for r in server.sessions()):
            return thread
        assert time.monotonic() < deadline, "the long query did not start within 30 s"
        time.sleep(0.05)


def kill_long_queries(server):
    """KILL QUERY the SLEEPs run_long_query started (the thread then ends at once)."""
    for session in server.sessions():
        if str(session["INFO"] or "").startswith("SELECT SLEEP("):
            server.sql(f"KILL QUERY {int(session['ID'])}")


def test_refuses_behind_a_long_running_query_without_locking(db):
    called = []
    # long enough to outlast the module's check on a starved host (the host track runs at nice 10
    # beside the TCG guest: a 6 s query once ended before the check saw it); killed at the end
    thread = run_long_query(db, 120)
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
        kill_long_queries(db)
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


# -- the watchdog: the read lock held past lock_max_seconds (a hung lvcreate) --------------------------
PLANS = [{"vg": "vgdata", "origin": "mysql", "name": "mysql-backup-snap", "thin": False, "extents": 10}]


class HungLvm:
    """LVM stood in (no device-mapper here): lvcreate is a real child that hangs and ignores SIGINT,
    run through the StoppableRunner the module uses; lvremove is recorded."""

    def __init__(self):
        self.runner = StoppableRunner(grace=1.0)
        self.calls = []
        self.pids = []

    def __call__(self, args):
        self.calls.append(list(args))
        if args[0] == "lvcreate":
            return self.runner(["sh", "-c", "trap '' INT; echo $$ > /dev/stderr; exec sleep 60"])
        return 0, "", ""


def test_watchdog_releases_a_lock_held_past_its_bound_stops_lvcreate_and_removes_the_snapshot(db):
    """lvcreate hangs under the lock: past lock_max_seconds the lock's session is killed (writes
    resume), lvcreate gets SIGINT then SIGTERM, the half-made snapshot is removed, the run fails."""
    lvm = HungLvm()
    written = {}

    def writer():
        conn = db.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 50")
                cur.execute("INSERT INTO app.t (v) VALUES (7)")  # blocked by the lock until released
            written["at"] = time.monotonic()
        finally:
            conn.close()

    thread = threading.Thread(target=writer)

    def snapshot():
        thread.start()
        created, _ = create_snapshots(lvm, PLANS, stopped=lambda: lvm.runner.stopped)
        return created

    started = time.monotonic()
    with pytest.raises(LockExpired) as info:
        lock_and_snapshot(lambda: connect(params(db)), snapshot, lock_wait_timeout=5, flush_first=False,
                          max_lock_seconds=1, on_lock_expired=lvm.runner.stop)
    ended = time.monotonic()
    thread.join(30)
    msg = str(info.value)
    assert msg.startswith("the global read lock was held longer than lock_max_seconds=1 s while the "
                          "snapshots were created (lvcreate hung?): the watchdog ended the lock's session")
    assert "KILL CONNECTION" in msg and "signals sent to the snapshot step: SIGINT, SIGTERM" in msg, msg
    assert msg.endswith("the backup FAILED (no snapshot is kept)")
    # the writer went through at the bound, while lvcreate still hung (it ignored SIGINT for 1 s more)
    assert written["at"] - started < ended - started and written["at"] - started < 20
    assert ended - started < 30  # not the 60 s the hung lvcreate would have taken
    assert lvm.calls[-1] == ["lvremove", "-y", "vgdata/mysql-backup-snap"]  # the half-made snapshot
    assert db.sql("SELECT COUNT(*) FROM app.t WHERE v = 7")[0][0] == 1
    assert try_insert(db) is None
    assert subprocess.run(["pgrep", "-f", "exec sleep 60"], capture_output=True).returncode == 1

    # a snapshot step that ends by itself, but after the lock was released: its snapshots may hold
    # writes made after the coordinates, so they are discarded (same server: one start for both cases)
    discarded = []
    with pytest.raises(LockExpired, match="the snapshot step ended after the lock was gone, its snapshots "
                                          "were removed"):
        lock_and_snapshot(lambda: connect(params(db)), lambda: time.sleep(1.5) or ["snap"], flush_first=False,
                          max_lock_seconds=0.5, discard=lambda snap: discarded.append(snap))
    assert discarded == [["snap"]]
    assert try_insert(db) is None
    # in time: the watchdog never fires, the lock is released as usual
    result = lock_and_snapshot(lambda: connect(params(db)), lambda: "snap", max_lock_seconds=30)
    assert result["snapshot"] == "snap" and try_insert(db) is None
