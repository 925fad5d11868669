"""Consistent seed of a replication source: mysqldump + binlog coordinates, to a file or into a server.

The dump stream passes through this process exactly once: the coordinates are read back from the
dump header comment as it goes by (``-- CHANGE MASTER TO MASTER_LOG_FILE=...`` or ``-- CHANGE
REPLICATION SOURCE TO SOURCE_LOG_FILE=...``, MariaDB's ``-- SET GLOBAL gtid_slave_pos='...'``), and the
bytes go on to a compressor writing a temporary file (renamed when complete) or to the ``mysql``
client of the target server. Children die with this process (PR_SET_PDEATHSIG), so a global read lock
held by the dump client never outlives the module.

With a progress file (``params["progress_file"]``), the bytes of the dump stream are reported as they
pass (roles/backup_progress polls it); the total is an ESTIMATE, the data_length + index_length of
the dumped tables in information_schema (the dump text can end above or below it).
"""

import collections
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ansible.module_utils import mysql_replication_login as replication_login
from ansible.module_utils.mysql_connection import (
    MySQLConnectionError,
    client_defaults_file,
    connect,
    login_params,
    processlist,
    query,
)
from ansible.module_utils.mysql_dialect import Dialect, DialectError, parse_client_version
from ansible.module_utils.progress import ProgressError, ProgressFile, Terminated, terminable

TRANSACTIONAL_ENGINES = frozenset({"innodb", "xtradb", "tokudb", "rocksdb", "ndbcluster", "ndb"})
# Processlist commands that are not client queries holding or waiting for table locks.
IDLE_COMMANDS = frozenset(
    {
        "sleep",
        "daemon",
        "binlog dump",
        "binlog dump gtid",
        "killed",
        "connect",
        "slave_io",
        "slave_sql",
        "slave_worker",
    }
)
SYSTEM_USERS = frozenset({"system user", "event_scheduler", "unauthenticated user"})
LOCK_WAIT_STATES = (
    "waiting for global read lock",
    "waiting for table flush",
    "waiting for table metadata lock",
    "waiting for backup lock",
    "waiting for commit lock",
)
CHUNK = 1 << 20
HEADER_SCAN_LIMIT = 4 << 20
COMPRESSORS = {"gzip": ["gzip", "-c", "-3"], "zstd": ["zstd", "-q", "-c", "-3"]}


class SeedError(Exception):
    """The seed could not be taken; ``details`` go into the module's failure result."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


# -- validation and decisions (pure) ---------------------------------------------------------
_NAME = r"[\w$-]+"  # letters, digits, _, $ and - (Seafile docs use names like seafile-db)
_TABLE_RE = re.compile(rf"^({_NAME})\.({_NAME})$")


def validate_ignore_tables(entries):
    """Return [(db, table)] for entries of the form db.table; raise SeedError naming every bad one."""
    parsed, bad = [], []
    for entry in entries or []:
        m = _TABLE_RE.match(str(entry).strip()) if entry is not None else None
        if not m:
            bad.append(repr(entry))
        else:
            parsed.append((m.group(1), m.group(2)))
    if bad:
        raise SeedError(
            "ignore_tables entries must be exactly 'db.table' (one dot; letters, digits, _ $ -): "
            + ", ".join(bad)
        )
    return parsed


def validate_databases(databases):
    bad = [repr(d) for d in databases or [] if not d or not re.match(rf"^{_NAME}$", str(d))]
    if not databases:
        raise SeedError("databases must name at least one database")
    if bad:
        raise SeedError("invalid database names: " + ", ".join(bad))
    return list(databases)


def long_running_queries(processlist, max_seconds, own_id=None):
    """Client queries running for max_seconds or more (rows of mysql_connection.processlist)."""
    found = []
    for row in processlist:
        command = str(row.get("COMMAND") or "").lower()
        user = str(row.get("USER") or "").lower()
        if command in IDLE_COMMANDS or user in SYSTEM_USERS or row.get("ID") == own_id:
            continue
        if int(row.get("TIME") or 0) >= int(max_seconds):
            found.append(row)
    return found


def describe_queries(rows):
    return "; ".join(
        f"id {r.get('ID')} user {r.get('USER')}@{r.get('HOST')} running {r.get('TIME')}s: "
        f"{str(r.get('INFO') or r.get('COMMAND') or '')[:120]!r}"
        for r in rows
    )


def estimate_dump_bytes(tables, ignore_tables=()):
    """Estimated size of the dump: DATA_LENGTH + INDEX_LENGTH of the tables not ignored.

    tables are rows of information_schema.TABLES; only an estimate (InnoDB statistics are
    approximate, the dump text is neither the pages nor their indexes), used as the progress total."""
    ignored = {(d, t) for d, t in ignore_tables}
    return sum(
        int(r.get("DATA_LENGTH") or 0) + int(r.get("INDEX_LENGTH") or 0)
        for r in tables
        if (r["TABLE_SCHEMA"], r["TABLE_NAME"]) not in ignored
    )


def choose_consistency(requested, non_transactional):
    if requested == "auto":
        return "lock" if non_transactional else "single_transaction"
    return requested


class HeaderScanner:
    """Reads binlog coordinates from the head of a dump stream, chunk by chunk.

    Handles ``-- CHANGE MASTER TO MASTER_LOG_FILE='f', MASTER_LOG_POS=n;`` (MariaDB, MySQL < 8.0.26),
    ``-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='f', SOURCE_LOG_POS=n;`` (mysqldump 8.0.26+),
    the same without the leading comment (--master-data=1), MariaDB's
    ``-- SET GLOBAL gtid_slave_pos='0-1-5';`` (printed at the END of the dump) and MySQL's
    ``SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'uuid:1-5';``.
    """

    COORD_RE = re.compile(
        rb"^(?:--\s*)?CHANGE\s+(?:MASTER|REPLICATION\s+SOURCE)\s+TO\s+(?:MASTER|SOURCE)_LOG_FILE\s*=\s*'([^']+)'\s*,"
        rb"\s*(?:MASTER|SOURCE)_LOG_POS\s*=\s*(\d+)",
        re.M | re.I,
    )
    MARIADB_GTID_RE = re.compile(rb"^(?:--\s*)?SET\s+GLOBAL\s+gtid_slave_pos\s*=\s*'([^']*)'", re.M | re.I)
    MYSQL_GTID_RE = re.compile(
        rb"^SET\s+@@GLOBAL\.GTID_PURGED\s*=\s*(?:/\*!\d+\s*'\+'\s*\*/\s*)?'([^']*)'", re.M | re.I
    )
    DATA_START_RE = re.compile(rb"^(?:CREATE\s+DATABASE|CREATE\s+TABLE|USE\s+`|INSERT\s+INTO)", re.M | re.I)

    TAIL_BYTES = 65536

    def __init__(self):
        self.buffer = b""
        self._tail = collections.deque()  # the last chunks, at least TAIL_BYTES in all
        self._tail_len = 0
        self.done = False
        self.binlog_file = None
        self.binlog_position = None
        self.gtid = ""

    def feed(self, chunk):
        # MariaDB prints the GTID of the view at the END of the dump ("deferred gtid setting"): keep a
        # rolling tail and read it in finish().
        self._tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(self._tail[0]) >= self.TAIL_BYTES:
            self._tail_len -= len(self._tail.popleft())
        if self.done:
            return
        self.buffer += chunk
        # Only complete lines are parsed, so a coordinate split across chunks is read whole.
        cut = self.buffer.rfind(b"\n") + 1
        head = self.buffer[:cut]
        m = self.COORD_RE.search(head)
        if m and self.binlog_file is None:
            self.binlog_file = m.group(1).decode()
            self.binlog_position = int(m.group(2))
        for regex in (self.MARIADB_GTID_RE, self.MYSQL_GTID_RE):
            g = regex.search(head)
            if g and not self.gtid:
                self.gtid = g.group(1).decode()
        # The header ends where data definitions start; the GTID comment follows the coordinates.
        if self.DATA_START_RE.search(head) or len(self.buffer) > HEADER_SCAN_LIMIT:
            self.done = True
            self.buffer = b""

    def finish(self):
        """Call at end of stream: reads a GTID printed after the data."""
        if not self.gtid:
            for regex in (self.MARIADB_GTID_RE, self.MYSQL_GTID_RE):
                g = regex.search(b"".join(self._tail))
                if g:
                    self.gtid = g.group(1).decode()
                    break
        self._tail.clear()
        return self

    @property
    def found(self):
        return self.binlog_file is not None


def parse_dump_header(text):
    """Coordinates of a whole dump header (bytes or str): {binlog_file, binlog_position, gtid}."""
    scanner = HeaderScanner()
    scanner.feed((text.encode() if isinstance(text, str) else text) + b"\n")
    scanner.finish()
    return dict(binlog_file=scanner.binlog_file, binlog_position=scanner.binlog_position, gtid=scanner.gtid)


def build_dump_command(
    dump_binary,
    defaults_file,
    databases,
    ignore_tables,
    consistency,
    coordinates_option,
    gtid_option=False,
    extra_args=(),
):
    """argv of the dump client; the option file MUST be the first argument."""
    argv = [dump_binary, f"--defaults-file={defaults_file}"]
    argv += ["--single-transaction"] if consistency == "single_transaction" else ["--lock-all-tables"]
    argv += [coordinates_option]
    if gtid_option:
        argv.append("--gtid")
    argv += ["--routines", "--triggers", "--hex-blob", "--quick", "--max-allowed-packet=512M"]
    argv += [f"--ignore-table={db}.{table}" for db, table in ignore_tables]
    argv += list(extra_args or [])
    argv += ["--databases"] + list(databases)
    return argv


def build_import_command(client_binary, defaults_file):
    return [client_binary, f"--defaults-file={defaults_file}", "--batch", "--max-allowed-packet=512M"]


# -- process plumbing ------------------------------------------------------------------------
def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the module process dies (Linux), releasing its locks."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _widen_pipe(fd, size=CHUNK):
    """Fewer, larger reads from the dump pipe (Linux F_SETPIPE_SZ); harmless when refused."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


def find_binary(preferred, candidates):
    if preferred:
        path = shutil.which(preferred)
        if not path:
            raise SeedError(f"{preferred} not found on PATH")
        return path
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise SeedError(f"none of {', '.join(candidates)} found on PATH: install the MariaDB/MySQL client")


def client_dialect(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
        flavor, version = parse_client_version(out)
    except (OSError, DialectError) as exc:
        raise SeedError(f"cannot tell the version of {binary}: {exc}") from exc
    return Dialect(flavor, version)


def _tail(fileobj, limit=2000):
    try:
        fileobj.seek(0)
        data = fileobj.read().decode(errors="replace").strip()
    except (OSError, ValueError):
        return ""
    return data[-limit:]


class LockWatchdog(threading.Thread):
    """Kills the dump when its session waits for a lock/flush longer than lock_wait_timeout.

    mysqldump has no option to set the session's lock_wait_timeout, so a separate admin session watches
    the processlist for a session of the dump user, opened after the dump started, stuck in a lock wait.
    """

    def __init__(self, conn_params, user, known_ids, timeout, process, poll=0.5):
        super().__init__(daemon=True)
        self.conn_params = conn_params
        self.user = user
        self.known_ids = set(known_ids)
        self.timeout = timeout
        self.process = process
        self.poll = poll
        self.stop_event = threading.Event()
        self.fired = None
        self.error = None

    def run(self):
        try:
            conn = connect(self.conn_params)
        except MySQLConnectionError as exc:
            self.error = str(exc)
            return
        try:
            while not self.stop_event.wait(self.poll):
                rows = processlist(conn)
                for row in rows:
                    if row["ID"] in self.known_ids or (self.user and row.get("USER") != self.user):
                        continue
                    state = str(row.get("STATE") or "").lower()
                    info = str(row.get("INFO") or "").lstrip().upper()
                    if (
                        info.startswith(("FLUSH", "LOCK "))
                        and state.startswith(LOCK_WAIT_STATES)
                        and int(row.get("TIME") or 0) >= self.timeout
                    ):
                        blockers = long_running_queries(
                            [r for r in rows if r["ID"] != row["ID"]], max(0, int(row.get("TIME") or 0) - 1)
                        )
                        self.fired = (
                            f"the dump waited {row.get('TIME')}s (> lock_wait_timeout {self.timeout}s) "
                            f"in state '{row.get('STATE')}' for: {row.get('INFO')!r}; blocked by: "
                            f"{describe_queries(blockers) or 'unknown'}"
                        )
                        self.process.kill()
                        try:
                            query(conn, f"KILL {int(row['ID'])}")
                        except Exception:  # noqa: BLE001 - the session may already be gone
                            pass
                        return
        except Exception as exc:  # noqa: BLE001 - a watchdog must not crash the dump
            self.error = str(exc)
        finally:
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(5)


class SnapshotMarker:
    """The file saying "the dump's consistent snapshot is taken": an application stopped for the seed
    may start again (the playbook waits for it on the backup host, then starts the service).

    Created by this module only (refused when it exists before the seed), 0600, JSON
    {snapshot_taken, time, seconds}: written once, when the snapshot is taken (single_transaction: the
    coordinates are in the stream, the transaction's view is fixed; lock: the dump client has read
    everything and exited) or, with snapshot_taken false, when the seed ends without one, so a waiter
    never waits for a seed that is gone."""

    def __init__(self, path, started, clock=time.monotonic, now=time.time):
        self.path = path
        self.started = started
        self.clock = clock
        self.now = now
        self.written = None

    @staticmethod
    def validate(path):
        if path and os.path.lexists(path):
            raise SeedError(f"snapshot_file {path} already exists: it must be a new file this seed creates")
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise SeedError(f"directory of snapshot_file does not exist: {os.path.dirname(path)}")

    def write(self, taken):
        if self.written is not None or not self.path:
            return
        seconds = round(self.clock() - self.started, 3)
        self.written = dict(snapshot_taken=bool(taken), time=self.now(), seconds=seconds)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return  # never overwrite; the waiter times out and the play's always block starts the service
        with os.fdopen(fd, "w") as f:
            json.dump(self.written, f)


def verify_replication_login(params):
    """With params["replication_user"]: the replication user logs in to the source (login_host/port,
    the address the replica will use) with replication_password; raise SeedError otherwise, before
    anything is dumped."""
    if not params.get("replication_user"):
        return None
    login = replication_login.login_params(
        params.get("login_host"), params.get("login_port"), params["replication_user"],
        params.get("replication_password"), params.get("replication_ssl_ca"),
        params.get("replication_ssl_cert"), params.get("replication_ssl_key"),
    )
    outcome = replication_login.check_login(login)
    if not outcome["ok"]:
        raise SeedError(replication_login.describe_failure(login, outcome) + "; nothing was dumped",
                        replication_login=outcome)
    return outcome


# -- the seed --------------------------------------------------------------------------------
def inspect_source(conn, databases, ignore_tables, max_query_seconds):
    """Checks done before dumping (also in check mode). Returns facts about the source."""
    version = query(conn, "SELECT VERSION() AS v")[0]["v"]
    dialect = Dialect.from_version_string(version)
    log_bin = query(conn, "SELECT @@GLOBAL.log_bin AS v")[0]["v"]
    if str(log_bin) not in ("1", "ON"):
        raise SeedError(
            "the source has no binary log (log_bin is OFF): enable log_bin and restart it before "
            "seeding a replica"
        )
    placeholders = ",".join(["%s"] * len(databases))
    present = {
        r["SCHEMA_NAME"]
        for r in query(
            conn,
            f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({placeholders})",
            databases,
        )
    }
    missing = [d for d in databases if d not in present]
    if missing:
        raise SeedError("databases not found on the source: " + ", ".join(missing))
    ignored = {(d, t) for d, t in ignore_tables}
    tables = query(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES "
        f"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({placeholders})",
        databases,
    )
    non_transactional = sorted(
        f"{r['TABLE_SCHEMA']}.{r['TABLE_NAME']}"
        for r in tables
        if (r["TABLE_SCHEMA"], r["TABLE_NAME"]) not in ignored
        and str(r.get("ENGINE") or "").lower() not in TRANSACTIONAL_ENGINES
    )
    sessions = processlist(conn)
    long_queries = long_running_queries(sessions, max_query_seconds)
    if long_queries:
        raise SeedError(
            f"refusing to seed: the source runs queries older than max_query_seconds={max_query_seconds}s, "
            "and the dump's FLUSH TABLES WITH READ LOCK would queue behind them while blocking every writer: "
            + describe_queries(long_queries),
            long_queries=[
                dict(id=r["ID"], user=r["USER"], time=r["TIME"], info=r.get("INFO")) for r in long_queries
            ],
        )
    return dict(
        version=version,
        dialect=dialect,
        non_transactional_tables=non_transactional,
        session_ids=[r["ID"] for r in sessions],
        table_count=len(tables),
        estimated_bytes=estimate_dump_bytes(tables, ignore_tables),
    )


def _report(progress, done, total=None):
    """Progress is for the operator: a failing progress write (full /tmp) never fails the seed."""
    if progress is not None:
        try:
            progress.update(done, total_bytes=total)
        except OSError:
            pass


def run_seed(params, check_mode=False, popen=subprocess.Popen, progress_factory=ProgressFile):
    """Take the seed described by the module params; return the module result (without changed).

    With params["progress_file"] (not in check mode) the dump's progress is written there through
    progress_factory (a ProgressFile): total the estimate, done the bytes of the dump stream, then
    done or failed with the error message.

    SIGTERM (roles/backup_progress cancel) stops the seed like any failure: the dump and client
    processes are killed and waited for, the option files and the partial dump file removed, then
    SeedError "seed cancelled" (details cancelled=True)."""
    SnapshotMarker.validate(params.get("snapshot_file"))
    marker = SnapshotMarker(params.get("snapshot_file") if not check_mode else None, time.monotonic())
    try:
        with terminable():  # SIGTERM (a cancelled job) raises Terminated: _run_seed's finally runs
            return _run_seed_reporting(params, check_mode, popen, progress_factory, marker)
    finally:
        marker.write(False)  # no snapshot (failed, cancelled): whoever waits for it stops waiting


def _run_seed_reporting(params, check_mode, popen, progress_factory, marker):
    progress = None
    if params.get("progress_file") and not check_mode:
        step = "seed import" if (params.get("mode") or "file") == "import" else "seed dump"
        try:
            progress = progress_factory(params["progress_file"], step)
        except (ProgressError, OSError) as exc:
            raise SeedError(f"cannot write the progress file: {exc}") from exc
    try:
        try:
            result = _run_seed(params, check_mode, popen, progress, marker)
        except Terminated as exc:
            import_mode = (params.get("mode") or "file") == "import"
            raise SeedError(
                f"seed cancelled ({exc}); the dump and its client processes were stopped"
                + ("; the target server now holds PARTIAL data from this import: do not point a replica "
                   "at it, reseed" if import_mode else "; no dump file was written"),
                cancelled=True, target_partial=import_mode) from exc
    except BaseException as exc:
        if progress is not None:
            try:
                progress.finish(ok=False, message=str(exc) or type(exc).__name__)
            except OSError:
                pass
        raise
    if progress is not None:
        try:
            progress.finish()
        except OSError:
            pass
    return result


def _run_seed(params, check_mode, popen, progress, marker):
    databases = validate_databases(params["databases"])
    ignore_tables = validate_ignore_tables(params.get("ignore_tables"))
    mode = params.get("mode") or "file"
    compress = params.get("compress") or "gzip"
    dest = params.get("dest")
    if mode == "file":
        if not dest:
            raise SeedError("dest is required with mode=file")
        dest = os.path.abspath(os.path.expanduser(dest))
        if not os.path.isdir(os.path.dirname(dest)):
            raise SeedError(f"directory of dest does not exist: {os.path.dirname(dest)}")
    source_params = login_params(params)
    base = dict(
        databases=databases,
        ignored_tables=[f"{d}.{t}" for d, t in ignore_tables],
        dump_path=dest if mode == "file" else "",
    )

    try:
        conn = connect(source_params)
    except MySQLConnectionError as exc:
        raise SeedError(f"source unreachable: {exc}", **base) from exc
    try:
        facts = inspect_source(conn, databases, ignore_tables, int(params.get("max_query_seconds") or 300))
    finally:
        conn.close()
    login_check = verify_replication_login(params)
    consistency = choose_consistency(params.get("consistency") or "auto", facts["non_transactional_tables"])
    base.update(consistency=consistency, non_transactional_tables=facts["non_transactional_tables"],
                estimated_bytes=facts["estimated_bytes"])

    dump_binary = find_binary(params.get("dump_binary"), ["mariadb-dump", "mysqldump"])
    dump_dialect = client_dialect(dump_binary)
    client_binary = None
    if mode == "import":
        client_binary = find_binary(params.get("client_binary"), ["mariadb", "mysql"])
        target_params = login_params(params, "target")
        if not check_mode:
            try:
                connect(target_params).close()
            except MySQLConnectionError as exc:
                raise SeedError(f"target unreachable: {exc}", **base) from exc
    elif compress != "none":
        find_binary(COMPRESSORS[compress][0], [])

    command_preview = build_dump_command(
        dump_binary,
        "<0600 option file>",
        databases,
        ignore_tables,
        consistency,
        dump_dialect.dump_coordinates_option(2),
        dump_dialect.flavor == "mariadb",
        params.get("extra_dump_args"),
    )
    base["command"] = command_preview
    if check_mode:
        return dict(
            base,
            binlog_file="",
            binlog_position=0,
            gtid="",
            bytes=0,
            duration_seconds=0.0,
            throughput_mb_s=0.0,
            check_mode=True,
            source_version=facts["version"],
        )

    work_dir = os.path.dirname(dest) if mode == "file" else None
    option_files, tmp_path, processes = [], None, []
    stderr_dump = tempfile.TemporaryFile()
    stderr_consumer = tempfile.TemporaryFile()
    watchdog = None
    started = time.monotonic()
    marker.started = started
    scanner = HeaderScanner()
    total = 0
    try:
        source_cnf = client_defaults_file(source_params, work_dir)
        option_files.append(source_cnf)
        argv = list(command_preview)
        argv[1] = f"--defaults-file={source_cnf}"
        if mode == "import":
            target_cnf = client_defaults_file(target_params, None)
            option_files.append(target_cnf)
            consumer = popen(
                build_import_command(client_binary, target_cnf),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr_consumer,
                preexec_fn=_die_with_parent,
            )
            processes.append(consumer)
            sink = consumer.stdin
            _widen_pipe(sink.fileno())
        else:
            fd, tmp_path = tempfile.mkstemp(
                prefix=f".{os.path.basename(dest)}.", suffix=".part", dir=os.path.dirname(dest)
            )
            os.fchmod(fd, 0o600)
            out = os.fdopen(fd, "wb")
            if compress == "none":
                consumer = None
                sink = out
            else:
                consumer = popen(
                    COMPRESSORS[compress],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=stderr_consumer,
                    preexec_fn=_die_with_parent,
                )
                processes.append(consumer)
                out.close()
                sink = consumer.stdin
        dump = popen(argv, stdout=subprocess.PIPE, stderr=stderr_dump, preexec_fn=_die_with_parent)
        processes.insert(0, dump)
        watchdog = LockWatchdog(
            source_params,
            source_params.get("user"),
            facts["session_ids"],
            int(params.get("lock_wait_timeout") or 60),
            dump,
        )
        watchdog.start()
        _report(progress, 0, facts["estimated_bytes"])
        sink_error = None
        stdout_fd = dump.stdout.fileno()
        _widen_pipe(stdout_fd)
        while True:
            chunk = os.read(stdout_fd, CHUNK)
            if not chunk:
                break
            total += len(chunk)
            _report(progress, total)
            scanner.feed(chunk)
            if scanner.found and watchdog.is_alive():
                watchdog.stop()
            if scanner.found and consistency == "single_transaction":
                marker.write(True)
            try:
                sink.write(chunk)
            except (BrokenPipeError, OSError) as exc:
                sink_error = exc
                dump.kill()
                break
        try:
            sink.close()
        except (BrokenPipeError, OSError) as exc:
            sink_error = sink_error or exc
        scanner.finish()
        dump_rc = dump.wait()
        if dump_rc == 0 and scanner.found and not sink_error:
            marker.write(True)  # lock: the dump has read everything, the locks are gone
        consumer_rc = consumer.wait() if consumer is not None else 0
        watchdog.stop()
        duration = time.monotonic() - started

        problems = []
        if watchdog.fired:
            problems.append(watchdog.fired)
        if dump_rc != 0:
            problems.append(
                f"{os.path.basename(dump_binary)} exited with {dump_rc}"
                + (f" (killed by signal {-dump_rc})" if dump_rc < 0 else "")
                + (f": {_tail(stderr_dump)}" if _tail(stderr_dump) else "")
            )
        if consumer_rc != 0 or sink_error:
            name = os.path.basename(client_binary) if mode == "import" else compress
            problems.append(
                f"{name} failed (exit {consumer_rc})"
                + (f": {_tail(stderr_consumer)}" if _tail(stderr_consumer) else "")
                + (f" [{sink_error}]" if sink_error else "")
            )
        if not problems and not scanner.found:
            problems.append(
                "the dump header has no binlog coordinates (is log_bin on? did extra_dump_args "
                "override --master-data/--source-data?)"
            )
        if problems:
            message = "seed failed: " + "; ".join(problems)
            if mode == "import":
                message += (
                    "; the target server now holds PARTIAL data from this import: do not point a "
                    "replica at it, reseed"
                )
                raise SeedError(message, target_partial=True, bytes=total, **base)
            raise SeedError(message + "; no dump file was written", bytes=total, **base)

        if mode == "file":
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.rename(tmp_path, dest)
            tmp_path = None
            dir_fd = os.open(os.path.dirname(dest), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return dict(
            base,
            binlog_file=scanner.binlog_file,
            binlog_position=scanner.binlog_position,
            gtid=scanner.gtid,
            bytes=total,
            duration_seconds=round(duration, 3),
            throughput_mb_s=round(total / 1e6 / duration, 2) if duration > 0 else 0.0,
            source_version=facts["version"],
            snapshot_seconds=(marker.written or {}).get("seconds", round(duration, 3)),
            replication_login=login_check or {},
            file_bytes=os.path.getsize(dest) if mode == "file" else 0,
        )
    finally:
        if watchdog is not None:
            watchdog.stop()
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for path in option_files + ([tmp_path] if tmp_path else []):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        stderr_dump.close()
        stderr_consumer.close()
