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

A watchdog bounds step 5 (``max_lock_seconds``): a hung lvcreate would otherwise keep every writer
blocked for as long as it hangs. Past the bound a second session ends the lock's session (KILL
CONNECTION; the server releases FTWRL with it), ``on_lock_expired()`` stops the snapshot step (the
module stops the lvcreate child), and the run fails with LockExpired; a snapshot that completed after
the lock was gone is handed to ``discard()`` (it may hold writes made after the coordinates).

Pure Python; the connection comes from an injected ``connect()``.
"""

import os
import socket
import threading
import time

from ansible.module_utils.mysql_connection import processlist
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


class LockExpired(MysqlLockError):
    """The read lock was held past its bound: the watchdog released it; the backup failed."""


class LockWatchdog:
    """Ends the lock's session from a second session when the lock is held past max_seconds.

    start() when the lock is granted; cancel() when the snapshot step ends: True when the watchdog
    had not fired (the lock is still held and is released as usual). Firing and cancelling exclude
    each other, so a snapshot that finished in time is never discarded."""

    def __init__(self, connect, lock_conn, session_id, max_seconds, on_expire=None, clock=time.monotonic):
        self.connect = connect
        self.lock_conn = lock_conn
        self.session_id = session_id
        self.max_seconds = max_seconds
        self.on_expire = on_expire
        self.clock = clock
        self.fired = False
        self.released_by = None  # how the lock's session was ended
        self.released_at = None
        self.stop_report = None  # what on_expire said (e.g. the signals sent to lvcreate)
        self.problems = []
        self._cancelled = False
        self._mutex = threading.Lock()
        self._timer = threading.Timer(max_seconds, self._fire)
        self._timer.daemon = True

    def start(self):
        self._timer.start()

    def cancel(self):
        with self._mutex:
            self._cancelled = True
            fired = self.fired
        self._timer.cancel()
        if fired:
            self._timer.join()  # the session is ended and the snapshot step stopped before we go on
        return not fired

    def _fire(self):
        with self._mutex:
            if self._cancelled:
                return
            self.fired = True
        self.released_by = self._end_session()
        self.released_at = self.clock()
        if self.on_expire is not None:
            try:
                self.stop_report = self.on_expire()
            except Exception as exc:  # reported, the lock is released whatever happens here
                self.problems.append(f"stopping the snapshot step failed: {exc}")

    def _end_session(self):
        try:
            other = self.connect()
            try:
                _rows(other, "KILL CONNECTION %s", (int(self.session_id),))
            finally:
                other.close()
            return f"KILL CONNECTION {self.session_id} from a second session"
        except Exception as exc:
            self.problems.append(f"KILL CONNECTION failed ({exc}), the lock's socket was shut down instead")
        sock = getattr(self.lock_conn, "_sock", None)  # the server ends the session at end of stream
        try:
            sock.shutdown(socket.SHUT_RDWR)
            return "the lock's connection shut down"
        except Exception as exc:
            self.problems.append(f"shutting the lock's connection down failed: {exc}")
            return None


def _rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall() or []
        cols = [c[0] for c in cur.description] if cur.description else []
    return [r if isinstance(r, dict) else dict(zip(cols, r)) for r in rows]


def long_running_queries(conn, min_seconds):
    """Statements other than ours running for at least min_seconds: [{id, user, time, info}]."""
    return [
        {key.lower(): r.get(key) for key in ("ID", "USER", "COMMAND", "TIME", "INFO")}
        for r in processlist(conn, info_chars=200)
        if int(r.get("TIME") or 0) >= int(min_seconds)
        and r.get("COMMAND") not in _IDLE_COMMANDS and r.get("USER") != "system user"
    ]


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
    max_lock_seconds=None,
    on_lock_expired=None,
    discard=None,
):
    """Take FTWRL in one session, call snapshot() under it, always unlock. Returns the figures.

    snapshot(): creates the snapshot(s) and returns anything JSON-able (kept as result['snapshot']).
    Raises MysqlLockError for a lock problem; an exception from snapshot() propagates after the unlock.
    max_lock_seconds: the watchdog's bound on the lock (None: no watchdog); on_lock_expired(): stops
    the snapshot step (called from the watchdog's thread); discard(snapshot's result): removes
    snapshots that completed after the lock was released. Both then end in LockExpired.
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
    watchdog = None
    try:
        version = _rows(conn, "SELECT VERSION() AS v")[0]["v"]
        result["server_version"] = version
        dialect = Dialect.from_version_string(version)
        result["quiet_wait_seconds"] = round(
            wait_for_quiet(conn, long_query_seconds, long_query_wait_seconds, clock=clock, sleep=sleep), 3
        )
        _rows(conn, "SET SESSION lock_wait_timeout = %s", (int(lock_wait_timeout),))
        session_id = _rows(conn, "SELECT CONNECTION_ID() AS id")[0]["id"]
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
        if max_lock_seconds:
            watchdog = LockWatchdog(connect, conn, session_id, max_lock_seconds, on_lock_expired, clock)
            watchdog.start()
        result["lock_wait_seconds"] = round(locked_at - t0, 3)
        result["coordinates"] = read_coordinates(conn, dialect)
        s0 = clock()
        try:
            snap = snapshot()
        except BaseException as exc:
            if watchdog is not None and not watchdog.cancel():
                raise _expired(watchdog, locked_at, "the snapshot step was stopped", exc) from exc
            raise
        if watchdog is not None and not watchdog.cancel():
            what = "the snapshot step ended after the lock was gone"
            if discard is not None:
                problems = discard(snap) or []
                what += (", its snapshots were removed" if not problems
                         else f", removing its snapshots failed: {'; '.join(problems)}")
            raise _expired(watchdog, locked_at, what)
        result["snapshot"] = snap
        result["snapshot_seconds"] = round(clock() - s0, 3)
    except MysqlLockError:
        raise
    except Exception as exc:
        if s0 is None:  # a database step failed before the snapshot started
            state = "the lock was released" if locked_at is not None else "nothing was locked"
            raise MysqlLockError(f"taking the lock failed ({state}, no snapshot taken): {exc}") from exc
        raise
    finally:
        if watchdog is not None and watchdog.fired:
            result["lock_seconds"] = round((watchdog.released_at or clock()) - locked_at, 3)
        elif locked_at is not None:
            try:
                _rows(conn, "UNLOCK TABLES")
            finally:
                result["lock_seconds"] = round(clock() - locked_at, 3)
        try:
            conn.close()
        except Exception:
            pass
    return result


def _expired(watchdog, locked_at, what, cause=None):
    held = (watchdog.released_at or watchdog.clock()) - locked_at
    released = (f"the watchdog ended the lock's session after {held:.1f} s ({watchdog.released_by}), so "
                "writes resumed" if watchdog.released_by else
                "the watchdog could NOT end the lock's session: check the server (SHOW PROCESSLIST)")
    details = [what]
    if watchdog.stop_report:
        details.append(f"signals sent to the snapshot step: {', '.join(watchdog.stop_report)}")
    if cause is not None:
        details.append(f"it said: {str(cause).strip()[:300]}")
    details += watchdog.problems
    return LockExpired(
        f"the global read lock was held longer than lock_max_seconds={watchdog.max_seconds:g} s while the "
        f"snapshots were created (lvcreate hung?): {released}; {'; '.join(details)}; the backup FAILED "
        "(no snapshot is kept)"
    )


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
