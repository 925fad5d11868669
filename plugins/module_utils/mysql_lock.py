"""FLUSH TABLES WITH READ LOCK held in ONE session around a snapshot, inside the calling process.

FTWRL is released when its session ends, so it cannot be held across Ansible tasks (the eXo procedure
kept a `mysql` client open on a named pipe); here the module process holds the session itself:

1. look for long-running statements (FTWRL queues behind them while blocking every writer): wait
   up to a bound for them to finish, else refuse before locking anything;
2. FLUSH NO_WRITE_TO_BINLOG TABLES and sync(2) without the lock (shorten the locked flush and
   the origin's suspend in lvcreate);
3. SET SESSION lock_wait_timeout, FLUSH TABLES WITH READ LOCK;
4. read the binlog coordinates and GTID position at the lock;
5. run the snapshot callback (lvcreate of every LV at once);
6. UNLOCK TABLES in a `finally`, close the session, report the lock-held time.

Pure Python; the connection comes from an injected ``connect()``.
"""

import os
import time

from ansible.module_utils.mysql_dialect import Dialect

# Commands that are not statements a lock would queue behind.
_IDLE_COMMANDS = (
    "Sleep",
    "Daemon",
    "Binlog Dump",
    "Binlog Dump GTID",
    "Slave_IO",
    "Slave_SQL",
    "Slave_worker",
    "Killed",
    "Connect",
)


class MysqlLockError(Exception):
    """The lock could not be taken or held safely; nothing is left locked."""


def _rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall() or []
        cols = [c[0] for c in cur.description] if cur.description else []
    return [r if isinstance(r, dict) else dict(zip(cols, r)) for r in rows]


def long_running_queries(conn, min_seconds):
    """Statements other than ours running for at least min_seconds: [{id, user, time, info}]."""
    rows = _rows(
        conn,
        "SELECT ID AS id, USER AS user, COMMAND AS command, TIME AS time, "
        "LEFT(INFO, 200) AS info FROM information_schema.PROCESSLIST "
        "WHERE ID <> CONNECTION_ID() AND TIME >= %s",
        (int(min_seconds),),
    )
    return [r for r in rows if r.get("command") not in _IDLE_COMMANDS and r.get("user") != "system user"]


def wait_for_quiet(conn, min_seconds, wait_seconds, clock=time.monotonic, sleep=time.sleep, poll=1.0):
    """Wait up to wait_seconds for long statements to end; raise MysqlLockError naming them if not."""
    deadline = clock() + max(0, wait_seconds)
    waited_from = clock()
    while True:
        busy = long_running_queries(conn, min_seconds)
        if not busy:
            return clock() - waited_from
        if clock() >= deadline:
            listing = "; ".join(
                f"id {q['id']} ({q['user']}, {q['time']}s): {(q.get('info') or '')[:80]}" for q in busy[:5]
            )
            raise MysqlLockError(
                f"{len(busy)} statement(s) running for {min_seconds}s or more, still there after waiting "
                f"{wait_seconds}s; FLUSH TABLES WITH READ LOCK would queue behind them while blocking every "
                f"writer, so the backup is refused: {listing}"
            )
        sleep(poll)


def read_coordinates(conn, dialect):
    """Binlog file/position and GTID position, read while the lock is held."""
    rows = _rows(conn, dialect.show_binlog_status)
    coords = {"binlog_file": None, "binlog_position": None, "gtid": None}
    if rows:
        coords["binlog_file"] = rows[0].get("File")
        pos = rows[0].get("Position")
        coords["binlog_position"] = int(pos) if pos is not None else None
        if rows[0].get("Executed_Gtid_Set"):
            coords["gtid"] = rows[0]["Executed_Gtid_Set"]
    if dialect.gtid_position_variable and coords["gtid"] is None:
        rows = _rows(conn, f"SELECT @@GLOBAL.{dialect.gtid_position_variable} AS gtid")
        coords["gtid"] = (rows[0].get("gtid") if rows else None) or ""
    return coords


def lock_and_snapshot(
    connect,
    snapshot,
    long_query_seconds=60,
    long_query_wait_seconds=30,
    lock_wait_timeout=10,
    flush_first=True,
    clock=time.monotonic,
    sleep=time.sleep,
    sync=os.sync,
):
    """Take FTWRL in one session, call snapshot() under it, always unlock. Returns the figures.

    snapshot(): creates the snapshot(s) and returns anything JSON-able (kept as result['snapshot']).
    Raises MysqlLockError for a lock problem; an exception from snapshot() propagates after the unlock.
    """
    try:
        conn = connect()
    except Exception as exc:
        raise MysqlLockError(f"MySQL unreachable, nothing locked and no snapshot taken: {exc}") from exc
    result = {
        "lock_seconds": None,
        "lock_wait_seconds": None,
        "snapshot_seconds": None,
        "quiet_wait_seconds": None,
        "coordinates": None,
        "server_version": None,
    }
    locked_at = s0 = None
    try:
        version = _rows(conn, "SELECT VERSION() AS v")[0]["v"]
        result["server_version"] = version
        dialect = Dialect.from_version_string(version)
        result["quiet_wait_seconds"] = round(
            wait_for_quiet(conn, long_query_seconds, long_query_wait_seconds, clock=clock, sleep=sleep), 3
        )
        _rows(conn, "SET SESSION lock_wait_timeout = %s", (int(lock_wait_timeout),))
        if flush_first:
            _rows(conn, "FLUSH NO_WRITE_TO_BINLOG TABLES")
        # write dirty page cache out now, unlocked: lvcreate suspends the origin and would flush it
        # under the lock otherwise (the lock time would then grow with recent write volume)
        sync()
        t0 = clock()
        try:
            _rows(conn, "FLUSH TABLES WITH READ LOCK")
        except Exception as exc:
            raise MysqlLockError(
                f"FLUSH TABLES WITH READ LOCK not granted within lock_wait_timeout="
                f"{lock_wait_timeout}s: {exc}"
            ) from exc
        locked_at = clock()
        result["lock_wait_seconds"] = round(locked_at - t0, 3)
        result["coordinates"] = read_coordinates(conn, dialect)
        s0 = clock()
        result["snapshot"] = snapshot()
        result["snapshot_seconds"] = round(clock() - s0, 3)
    except MysqlLockError:
        raise
    except Exception as exc:
        if s0 is None:  # a database step failed before the snapshot started
            state = "the lock was released" if locked_at is not None else "nothing was locked"
            raise MysqlLockError(f"taking the lock failed ({state}, no snapshot taken): {exc}") from exc
        raise
    finally:
        if locked_at is not None:
            try:
                _rows(conn, "UNLOCK TABLES")
            finally:
                result["lock_seconds"] = round(clock() - locked_at, 3)
        try:
            conn.close()
        except Exception:
            pass
    return result


def no_lock_snapshot(snapshot, clock=time.monotonic, sync=os.sync):
    """The same figures when no database is involved (application data only)."""
    sync()
    s0 = clock()
    out = snapshot()
    seconds = round(clock() - s0, 3)
    return {
        "lock_seconds": 0.0,
        "lock_wait_seconds": 0.0,
        "snapshot_seconds": seconds,
        "quiet_wait_seconds": 0.0,
        "coordinates": None,
        "server_version": None,
        "snapshot": out,
    }
