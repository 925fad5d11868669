"""Point-in-time recovery of MySQL/MariaDB: the newest full backup before the target, then the
archived binlogs replayed from its coordinates up to the target, exclusive.

Pure Python apart from the child processes (mariadb-install-db, mariadbd, mariadb-binlog, mariadb),
all started with argument lists and credentials in 0600 option files (--defaults-file, exclusive).

The order is the safety: ``plan()`` reads the catalog of full backups and the archive, resolves
the target to a transaction boundary and checks that every binlog file between the backup and the
target is archived whole. Only a plan without a problem is executed; a refusal names the range
the archive covers. ``execute()`` restores the backup into a scratch instance it creates (removed
again if anything fails) or into a named, existing server, then pipes each range of transactions
``mariadb-binlog --start-position=S <files> --stop-position=E | mariadb --binary-mode``.

Targets (exclusive: the target transaction itself is not applied):
  datetime  the first transaction whose GTID event is stamped at or after it (as --stop-datetime)
  gtid      the transaction with that GTID (MariaDB domain-server-seq)
  position  file:position; transactions ending at or before the position are applied
  latest    everything the archive holds (complete transactions only)
A skip (one GTID, or the file:position a transaction starts at) leaves that one transaction out and
goes on: "keep everything but the DROP".

Bases: an LVM backup or a full dump restores every database and the whole archive is replayed. A
btw mysqldump set's dump holds one database: it is a base when the operator names that database
(or when the catalog lists btw dumps of one database only); the scratch instance then holds that
database alone and the replay is filtered to it (mysql_pitr_btw).
"""

import datetime
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from ansible.module_utils.binlog_archive import (
    ArchiveError,
    _iso,
    archive_files,
    binlog_index,
    check_secret_file,
    client_binary,
    describe_trx,
    read_file,
    transactions,
    write_option_file,
)
from ansible.module_utils.mysql_full_backups import btw_dumps_without_coordinates, list_backups
from ansible.module_utils.mysql_pitr_btw import (
    PitrBtwError,
    choose_backups,
    filter_problems,
    load_dump,
    refuse_filter_problems,
)

POSITION_RE = re.compile(r"^(?P<file>[A-Za-z0-9_.-]+\.\d{6,}):(?P<pos>\d+)$")
MARIADB_GTID_RE = re.compile(r"^\d+-\d+-\d+$")


class PitrError(ArchiveError):
    """The restore is refused (nothing changed) or failed (the message says what was changed)."""


# -- targets -------------------------------------------------------------------------------------


def parse_datetime(text):
    """Epoch seconds of an ISO 8601 datetime; without a zone it is UTC."""
    value = str(text).strip().replace(" ", "T", 1)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError as exc:
        raise PitrError(
            f"target datetime {text!r}: use ISO 8601, e.g. 2026-12-02 14:02:00 (UTC) or "
            "2026-12-02T16:02:00+02:00"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def parse_position(text, what="target position"):
    m = POSITION_RE.match(str(text).strip())
    if not m:
        raise PitrError(f"{what} {text!r}: use <binlog file>:<position>, e.g. mysql-bin.000042:1234")
    return m.group("file"), int(m.group("pos"))


def parse_target(datetime_=None, gtid=None, position=None, latest=False):
    given = [
        k
        for k, v in (("datetime", datetime_), ("gtid", gtid), ("position", position), ("latest", latest))
        if v
    ]
    if len(given) != 1:
        raise PitrError(
            "give exactly one target: a datetime, a GTID, a file:position, or latest"
            + (f" (given: {', '.join(given)})" if given else "")
        )
    kind = given[0]
    if kind == "datetime":
        return dict(kind=kind, value=str(datetime_), epoch=parse_datetime(datetime_))
    if kind == "gtid":
        if not MARIADB_GTID_RE.match(str(gtid).strip()) and ":" not in str(gtid):
            raise PitrError(f"target GTID {gtid!r}: use domain-server-sequence, e.g. 0-1-42")
        return dict(kind=kind, value=str(gtid).strip())
    if kind == "position":
        f, p = parse_position(position)
        return dict(kind=kind, value=f"{f}:{p}", file=f, position=p)
    return dict(kind="latest", value="latest")


def parse_skip(gtid=None, position=None):
    if gtid and position:
        raise PitrError("give the transaction to skip once: a GTID or a file:position, not both")
    if gtid:
        return dict(kind="gtid", value=str(gtid).strip())
    if position:
        f, p = parse_position(position, "skip position")
        return dict(kind="position", value=f"{f}:{p}", file=f, position=p)
    return None


# -- the archive as a list of transactions ------------------------------------------------------


def _key(file, pos):
    return (binlog_index(file)[1], pos)


class ArchiveIndex:
    """The archived transactions of one source, in order, with the files they came from."""

    def __init__(self, directory):
        self.directory = directory
        self.files = archive_files(directory)
        if not self.files:
            raise PitrError(f"the binlog archive {directory} holds no binlog file")
        self.closed = {}
        self.complete = {}
        self.trx = []
        for name, _size in self.files:
            info = read_file(os.path.join(directory, name))
            self.closed[name] = info["closed"]
            self.complete[name] = info["complete_bytes"]
            self.trx.extend(transactions(info["events"]))
        self.numbers = [binlog_index(n)[1] for n, _s in self.files]

    def covers(self):
        first = self.trx[0] if self.trx else None
        last = self.trx[-1] if self.trx else None
        if not first:
            return f"the archive {self.directory} holds no complete transaction (files {self.files[0][0]}..)"
        return (
            f"the archive covers {first['file']}:{first['start']} ({_iso(first['time'])}, "
            f"GTID {first['gtid']}) "
            f"to {last['file']}:{last['end']} ({_iso(last['time'])}, GTID {last['gtid']})"
        )

    def first_at_or_after(self, file, pos):
        """Index of the first transaction starting at or after file:pos (len when none)."""
        key = _key(file, pos)
        for i, t in enumerate(self.trx):
            if _key(t["file"], t["start"]) >= key:
                return i
        return len(self.trx)

    def holes(self, first_file, last_file):
        """Files between first_file and last_file (inclusive) the archive lacks or holds incomplete."""
        base = binlog_index(self.files[0][0])[0]
        width = len(self.files[0][0].rsplit(".", 1)[1])
        have = set(self.numbers)
        problems = []
        lo, hi = binlog_index(first_file)[1], binlog_index(last_file)[1]
        for n in range(lo, hi + 1):
            name = f"{base}.{n:0{width}d}"
            if n not in have:
                problems.append(f"{name} is missing from the archive")
            elif n < hi and not self.closed.get(name):
                problems.append(f"{name} is incomplete in the archive (no rotate event at its end)")
        return problems

    def events(self, since=None, until=None, database=None, table=None, limit=200):
        """Transactions between two epoch times, optionally touching a database / table."""
        found = []
        for t in self.trx:
            if since is not None and t["time"] < since:
                continue
            if until is not None and t["time"] > until:
                continue
            if database or table:
                names = list(t.get("tables") or [])
                stmt = t.get("statement") or ""
                dbs = set(t.get("databases") or []) | {n.split(".", 1)[0] for n in names}
                if database and database not in dbs and not _names_identifier(stmt, database):
                    continue
                if (
                    table
                    and not any(n.split(".", 1)[1] == table for n in names)
                    and not _names_identifier(stmt, table)
                ):
                    continue
            found.append(
                dict(
                    describe_trx(t),
                    events=t["events"],
                    tables=t.get("tables") or [],
                    statement=t.get("statement"),
                )
            )
            if len(found) >= limit:
                break
        return found


def _names_identifier(statement, name):
    """Whether a statement's text names an identifier (bare or `quoted`, as a whole word, any case)."""
    word = re.escape(name)
    return bool(re.search(rf"(?<![\w$])`?{word}`?(?![\w$])", statement, re.IGNORECASE))


def _resolve_stop(index, target, start_index):
    """Index of the first transaction NOT applied (len(trx) = apply all)."""
    trx = index.trx
    if target["kind"] == "latest":
        return len(trx)
    if target["kind"] == "gtid":
        for i, t in enumerate(trx):
            if t["gtid"] == target["value"]:
                return i
        raise PitrError(f"target GTID {target['value']} is not in the archive; {index.covers()}")
    if target["kind"] == "position":
        f, p = target["file"], target["position"]
        if binlog_index(f) is None or binlog_index(f)[1] not in index.numbers:
            raise PitrError(f"target {target['value']}: {f} is not in the archive; {index.covers()}")
        if p > index.complete.get(f, 0):
            raise PitrError(f"target {target['value']} is after the archive's end of {f}; {index.covers()}")
        key = _key(f, p)
        for i, t in enumerate(trx):
            if _key(t["file"], t["end"]) > key:
                return i
        return len(trx)
    epoch = target["epoch"]
    if not trx or epoch > trx[-1]["time"]:
        raise PitrError(
            f"target {target['value']} is after the archive's end: the archive cannot prove nothing was "
            f"written between its last transaction and the target; {index.covers()}. "
            "Wait for the archive to catch up, or restore to latest"
        )
    for i in range(start_index, len(trx)):
        if trx[i]["time"] >= epoch:
            return i
    return len(trx)


def _resolve_skip(index, skip):
    if skip is None:
        return None
    for i, t in enumerate(index.trx):
        if skip["kind"] == "gtid" and t["gtid"] == skip["value"]:
            return i
        if skip["kind"] == "position" and t["file"] == skip["file"] and t["start"] == skip["position"]:
            return i
    raise PitrError(
        f"the transaction to skip ({skip['value']}) is not in the archive"
        + (
            " (a position must be where a transaction's GTID event starts)"
            if skip["kind"] == "position"
            else ""
        )
        + f"; {index.covers()}"
    )


def plan(archive_dir, backup_specs, target, skip=None, database=None):
    """Everything the restore will do, decided before anything changes; raises PitrError on refusal.

    database: restore that one database; a btw dump of it may then be the base (see choose_backups)."""
    index = ArchiveIndex(archive_dir)
    listed = list_backups(backup_specs)
    try:
        backups, database = choose_backups(
            listed, database, btw_dumps_without_coordinates(backup_specs) if database else ()
        )
    except PitrBtwError as exc:
        raise PitrError(str(exc)) from exc
    if not backups:
        raise PitrError(
            "no full backup with binlog coordinates was found in the backups given"
            + (
                " (the btw mysqldump sets listed hold no dump with coordinates and a known database)"
                if listed
                else ""
            )
        )
    oldest = backups[0]
    if not index.trx:
        raise PitrError(index.covers())
    # the stop point, found over the whole archive; the backup is the newest one before it
    stop = _resolve_stop(index, target, 0)
    stop_key = (
        _key(index.trx[stop]["file"], index.trx[stop]["start"]) if stop < len(index.trx) else (10**12, 0)
    )
    if target["kind"] == "position":
        stop_key = min(stop_key, _key(target["file"], target["position"]))
    candidates = []
    for b in backups:
        if _key(b["binlog_file"], b["binlog_position"]) > stop_key:
            continue
        if target["kind"] == "datetime":
            # the backup's state holds from its last transaction before its coordinates on; without
            # that transaction in the archive, from the backup's own time
            first = index.first_at_or_after(b["binlog_file"], b["binlog_position"])
            before = index.trx[first - 1] if first > 0 else None
            valid_from = before["time"] if before else b["time"]
            if target["epoch"] < valid_from:
                continue
        candidates.append(b)
    if not candidates:
        raise PitrError(
            f"target {target['value']} is before the oldest full backup ({oldest['kind']} {oldest['name']}, "
            f"{_iso(oldest['time'])}, {oldest['binlog_file']}:{oldest['binlog_position']}); {index.covers()}"
        )
    backup = candidates[-1]
    if not backup.get("restorable"):
        raise PitrError(
            f"{backup['kind']} backup {backup['path']} cannot be restored here (no datadir tree: tar method?)"
        )
    if binlog_index(backup["binlog_file"])[1] < index.numbers[0]:
        raise PitrError(
            f"the newest backup before the target ({backup['name']}) starts at {backup['binlog_file']}, "
            f"which is no longer in the archive (it starts at {index.files[0][0]}); {index.covers()}"
        )
    start = index.first_at_or_after(backup["binlog_file"], backup["binlog_position"])
    stop = max(stop, start)
    last_file = (
        index.trx[stop]["file"]
        if stop < len(index.trx)
        else (index.trx[-1]["file"] if index.trx else backup["binlog_file"])
    )
    if target["kind"] == "position":
        last_file = target["file"]
    if target["kind"] == "latest" and index.closed.get(index.files[-1][0]):
        raise PitrError(
            f"the archive ends with {index.files[-1][0]}, which was rotated: the binlog after it is missing "
            f"from the archive, so latest is not known; {index.covers()}"
        )
    holes = index.holes(
        backup["binlog_file"], max(last_file, backup["binlog_file"], key=lambda n: binlog_index(n)[1])
    )
    if holes:
        raise PitrError(
            f"the replay from {backup['name']} ({backup['binlog_file']}:{backup['binlog_position']}) to "
            f"{target['value']} needs binlogs the archive lacks: {'; '.join(holes)}; {index.covers()}"
        )
    skip_index = _resolve_skip(index, skip)
    if skip_index is not None and not start <= skip_index < stop:
        raise PitrError(
            f"the transaction to skip ({skip['value']}, GTID {index.trx[skip_index]['gtid']}) is not between "
            f"the backup's coordinates and the target: it would not be applied anyway"
        )
    applied = [i for i in range(start, stop) if i != skip_index]
    if backup["kind"] != "btw":
        database = None  # a full base: every database restored, the whole archive replayed
    else:
        try:
            refuse_filter_problems(filter_problems(index, applied, database), database, backup["name"])
        except PitrBtwError as exc:
            raise PitrError(f"{exc}; {index.covers()}") from exc
    return dict(
        index=index,
        backup=backup,
        database=database,
        target=target,
        start_index=start,
        stop_index=stop,
        skip_index=skip_index,
        ranges=replay_ranges(index.trx, applied),
        transactions=len(applied),
        first_applied=describe_trx(index.trx[applied[0]]) if applied else None,
        last_applied=describe_trx(index.trx[applied[-1]]) if applied else None,
        stops_before=describe_trx(index.trx[stop]) if stop < len(index.trx) else None,
        skipped=describe_trx(index.trx[skip_index]) if skip_index is not None else None,
    )


def replay_ranges(trx, applied):
    """Runs of consecutive transactions: [(first file, start, last file, end, count)]."""
    ranges = []
    run = []
    for i in applied:
        if run and i != run[-1] + 1:
            ranges.append(run)
            run = []
        run.append(i)
    if run:
        ranges.append(run)
    return [
        (trx[r[0]]["file"], trx[r[0]]["start"], trx[r[-1]]["file"], trx[r[-1]]["end"], len(r)) for r in ranges
    ]


def summary(p):
    """The plan as facts (no index)."""
    b = p["backup"]
    database = p.get("database")
    return dict(
        backup=dict(
            kind=b["kind"],
            name=b["name"],
            path=b["path"],
            binlog_file=b["binlog_file"],
            binlog_position=b["binlog_position"],
            gtid=b["gtid"],
            time=_iso(b["time"]),
            database=b.get("database") if b["kind"] == "btw" else None,
        ),
        database=database,
        restores=(
            f"database {database} only (btw base: other databases are not restored, the replay is "
            f"filtered to {database})"
            if database
            else "every database of the backup"
        ),
        target=dict(kind=p["target"]["kind"], value=p["target"]["value"]),
        transactions=p["transactions"],
        ranges=[
            dict(from_file=a, from_position=s, to_file=c, to_position=e, transactions=n)
            for a, s, c, e, n in p["ranges"]
        ],
        first_applied=p["first_applied"],
        last_applied=p["last_applied"],
        stops_before=p["stops_before"],
        skipped=p["skipped"],
        archive=p["index"].covers(),
    )


# -- servers: a scratch instance or a named one --------------------------------------------------


def _binary(*names):
    for name in names:
        path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
        if path:
            return path
    raise PitrError(f"none of {', '.join(names)} is installed on this host")


def _failure_lines(output, limit=1200):
    """The lines that say why a server program failed (its [ERROR] lines), then the end of its output."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
    errors = [line for line in text.splitlines() if "ERROR" in line or "error" in line.lower()[:40]]
    head = "\n".join(errors[:10])
    tail = text[-max(200, limit - len(head)) :]
    return (head + "\n...\n" if head else "") + tail


# sun_path holds 108 bytes with its NUL; mariadbd refuses a longer socket path at start
SOCKET_PATH_MAX = 107


class ScratchInstance:
    """A private MariaDB server in a new directory: socket only (no network), no binlog."""

    def __init__(self, directory, user="mysql", options=()):
        self.directory = os.path.abspath(directory)
        self.datadir = os.path.join(self.directory, "data")
        self.socket = os.path.join(self.directory, "mysqld.sock")
        self.pidfile = os.path.join(self.directory, "mysqld.pid")
        self.errlog = os.path.join(self.directory, "error.log")
        self.defaults_file = os.path.join(self.directory, "client.cnf")
        self.user = user
        self.options = list(options)
        self.pid = None
        self.existed = None

    def check_new(self):
        if len(self.socket.encode()) > SOCKET_PATH_MAX:
            raise PitrError(
                f"scratch directory {self.directory} is too long a path for the scratch server's Unix "
                f"socket ({self.socket}: {len(self.socket.encode())} bytes, at most {SOCKET_PATH_MAX}): "
                "name a shorter one"
            )
        if os.path.exists(self.directory) and (
            not os.path.isdir(self.directory) or os.listdir(self.directory)
        ):
            raise PitrError(f"scratch directory {self.directory} exists and is not empty: name a new one")
        self.existed = os.path.isdir(self.directory)

    def create(self, datadir_source=None):
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        if self.user != "root":
            shutil.chown(self.directory, self.user, None)
        if datadir_source:
            shutil.copytree(datadir_source, self.datadir, symlinks=True)
            for stale in ("mysql.sock", "mysqld.pid", "auto.cnf"):
                if os.path.exists(os.path.join(self.datadir, stale)):
                    os.unlink(os.path.join(self.datadir, stale))
            if self.user != "root":
                subprocess.run(["chown", "-R", f"{self.user}:", self.datadir], check=True)
        else:
            proc = subprocess.run(
                [
                    _binary("mariadb-install-db", "mysql_install_db"),
                    "--no-defaults",
                    f"--user={self.user}",
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            if proc.returncode != 0:
                raise PitrError(
                    f"mariadb-install-db for the scratch instance failed: {_failure_lines(proc.stdout)}"
                )
        write_option_file(self.defaults_file, dict(user="root", socket=self.socket))

    def start(self, wait=120):
        argv = [
            _binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--user={self.user}",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.pidfile}",
            f"--log-error={self.errlog}",
            "--skip-networking",
            "--skip-log-bin",
            "--skip-slave-start",
            *self.options,
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = proc.pid
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PitrError(f"the scratch instance did not start: {self._tail()}")
            check = subprocess.run(
                [client_binary(), f"--defaults-file={self.defaults_file}", "-e", "SELECT 1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if check.returncode == 0:
                return self
            time.sleep(0.1)
        raise PitrError(f"the scratch instance was not ready in {wait}s: {self._tail()}")

    def _tail(self):
        try:
            with open(self.errlog) as f:
                return "".join(f.readlines()[-10:])
        except OSError:
            return "(no error log)"

    def stop(self, timeout=60):
        if not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                done, _status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done = self.pid if not os.path.exists(f"/proc/{self.pid}") else 0
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def remove(self):
        """Stop the instance and remove what create() made: the directory, or only its content when
        the directory was there (empty) before; never anything else."""
        self.stop()
        if self.existed is None:
            return  # check_new() was not called: what is there is not known to be ours
        if not self.existed:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        for name in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
            path = os.path.join(self.directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _client(defaults_file):
    return [client_binary(), f"--defaults-file={defaults_file}", "--binary-mode"]


def _run_pipe(producer, consumer, what, stdin_path=None):
    env = dict(os.environ, TZ="UTC")
    with tempfile.TemporaryFile() as perr, tempfile.TemporaryFile() as cerr:
        src = open(stdin_path, "rb") if stdin_path and producer is None else None
        try:
            if producer:
                p1 = subprocess.Popen(producer, stdout=subprocess.PIPE, stderr=perr, env=env)
                p2 = subprocess.Popen(
                    consumer, stdin=p1.stdout, stdout=subprocess.DEVNULL, stderr=cerr, env=env
                )
                p1.stdout.close()
                rc2 = p2.wait()
                rc1 = p1.wait()
            else:
                rc1 = 0
                p2 = subprocess.Popen(consumer, stdin=src, stdout=subprocess.DEVNULL, stderr=cerr, env=env)
                rc2 = p2.wait()
        finally:
            if src:
                src.close()
        if rc1 or rc2:
            perr.seek(0)
            cerr.seek(0)
            msg = (perr.read().decode("utf-8", "replace") + cerr.read().decode("utf-8", "replace")).strip()
            raise PitrError(f"{what} failed: {msg[-800:]}")


def restore_backup(backup, defaults_file):
    """Load a dump backup into the server the option file names."""
    if backup["kind"] != "dump":
        raise PitrError(
            f"a {backup['kind']} backup is restored by copying its datadir into a scratch instance"
        )
    if backup["path"].endswith(".gz"):
        _run_pipe(["gzip", "-dc", backup["path"]], _client(defaults_file), f"loading {backup['path']}")
    else:
        _run_pipe(None, _client(defaults_file), f"loading {backup['path']}", stdin_path=backup["path"])


def replay(p, defaults_file, binlog_binary=None):
    """Pipe each range of the plan into the server; returns the number of transactions applied."""
    binary = binlog_binary or _binary("mariadb-binlog", "mysqlbinlog")
    index = p["index"]
    names = [n for n, _s in index.files]
    applied = 0
    for first_file, start, last_file, end, count in p["ranges"]:
        files = names[names.index(first_file) : names.index(last_file) + 1]
        argv = [
            binary,
            "--no-defaults",
            *([f"--database={p['database']}"] if p.get("database") else []),
            f"--start-position={start}",
            f"--stop-position={end}",
            *[os.path.join(index.directory, f) for f in files],
        ]
        try:
            _run_pipe(argv, _client(defaults_file), f"replaying {first_file}:{start} to {last_file}:{end}")
        except PitrError as exc:
            raise PitrError(
                f"{exc} ({applied} of {p['transactions']} transactions were applied before)"
            ) from exc
        applied += count
    return applied


def check_destination(p, in_place):
    """Refuse, before anything changes, a base the destination cannot take."""
    kind = p["backup"]["kind"]
    if in_place and kind == "btw":
        raise PitrError(
            f"a btw dump (database {p['database']}) is restored into a scratch instance only: in place it "
            "would replace one database of a live server and replay only that database's part of the "
            "archive onto it. Restore into a scratch instance (scratch_dir), then copy the database over "
            "(mariadb-dump from the scratch instance into the server). Nothing was changed"
        )
    if in_place and kind != "dump":
        raise PitrError(
            "a named target takes a dump backup only; restore an LVM backup with "
            "playbooks/lvm_snapshot_restore.yml, or into a scratch instance"
        )


def execute(
    p,
    scratch_dir=None,
    target_defaults_file=None,
    scratch_user="mysql",
    scratch_options=(),
    keep_running=True,
):
    """Restore the plan's backup and replay; returns the result facts."""
    started = time.monotonic()
    backup = p["backup"]
    result = summary(p)
    scratch = None
    check_destination(p, in_place=not scratch_dir)
    if scratch_dir:
        scratch = ScratchInstance(scratch_dir, scratch_user, scratch_options)
        scratch.check_new()
        try:
            scratch.create(datadir_source=backup["datadir"] if backup["kind"] == "lvm" else None)
            scratch.start()
            if backup["kind"] == "dump":
                restore_backup(backup, scratch.defaults_file)
            elif backup["kind"] == "btw":
                try:
                    loaded = load_dump(backup, scratch.socket)
                except PitrBtwError as exc:
                    raise PitrError(str(exc)) from exc
                result["loaded"] = dict(database=backup["database"], verified=loaded.get("verified"))
            t0 = time.monotonic()
            applied = replay(p, scratch.defaults_file)
            replay_seconds = time.monotonic() - t0
            if not keep_running:
                scratch.stop()
        except BaseException:
            scratch.remove()
            raise
        result.update(
            scratch=dict(
                directory=scratch.directory,
                socket=scratch.socket,
                pid=scratch.pid,
                defaults_file=scratch.defaults_file,
                running=bool(keep_running),
            )
        )
    else:
        check_secret_file(target_defaults_file)
        ping = subprocess.run(
            [client_binary(), f"--defaults-file={target_defaults_file}", "-e", "SELECT 1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if ping.returncode != 0:
            raise PitrError(
                f"the target server refused the connection, nothing was changed: "
                f"{ping.stderr.decode('utf-8', 'replace').strip()[-400:]}"
            )
        restore_backup(backup, target_defaults_file)
        t0 = time.monotonic()
        applied = replay(p, target_defaults_file)
        replay_seconds = time.monotonic() - t0
    result.update(
        transactions_applied=applied,
        replay_seconds=round(replay_seconds, 3),
        duration_seconds=round(time.monotonic() - started, 3),
    )
    return result
