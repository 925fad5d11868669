"""A continuous archive of a MySQL/MariaDB server's binary logs, on the backup host.

Pure Python, standard library only: the modules import it as ``ansible.module_utils.binlog_archive``
and roles/mysql_binlog_archive installs this same file as the archiver's entry point
(``python3 binlog_archive.py run --config <source>.json``), so the systemd unit and the tests run
one code path.

Layout, one directory per source:
    <archive_root>/<source>/mysql-bin.000041     files exactly as the source wrote them, streamed by
    <archive_root>/<source>/mysql-bin.000042     mariadb-binlog --read-from-remote-server --raw
                                                 --stop-never --result-file=<archive_root>/<source>/
The newest file may be partial (the source is still writing it, or the archiver was killed in the
middle of an event). On start the archiver fetches that file again from its first byte (mariadb-binlog
truncates and rewrites it), then every later one: no gap, no duplicate event.

Credentials: a 0600 option file ([client] host, port, user, password) passed first, as
``--defaults-file`` (exclusive: no ~/.my.cnf is read), to both mariadb (SHOW BINARY LOGS) and
mariadb-binlog. Nothing secret is ever on a command line.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

BINLOG_MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server_id, event_size, end position, flags
HEADER_LEN = HEADER.size  # 19

QUERY_EVENT = 2
STOP_EVENT = 3
ROTATE_EVENT = 4
FORMAT_DESCRIPTION_EVENT = 15
XID_EVENT = 16
MYSQL_GTID_EVENT = 33
MYSQL_ANONYMOUS_GTID_EVENT = 34
XA_PREPARE_EVENT = 38
TABLE_MAP_EVENT = 19
MARIADB_BINLOG_CHECKPOINT = 161
MARIADB_GTID_EVENT = 162
MARIADB_GTID_LIST = 163
GTID_EVENTS = (MARIADB_GTID_EVENT, MYSQL_GTID_EVENT, MYSQL_ANONYMOUS_GTID_EVENT)
# events that are no part of a transaction: a transaction open when one of these comes is over
BOUNDARY_EVENTS = (
    STOP_EVENT,
    ROTATE_EVENT,
    FORMAT_DESCRIPTION_EVENT,
    MARIADB_GTID_LIST,
    MARIADB_BINLOG_CHECKPOINT,
)
MARIADB_FL_STANDALONE = 0x01

BINLOG_NAME_RE = re.compile(r"^(?P<base>[A-Za-z0-9_.-]+)\.(?P<index>\d{6,})$")
SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OPTION_FILE_KEYS = ("host", "port", "user", "password", "socket", "ssl-ca", "ssl-cert", "ssl-key")


class ArchiveError(Exception):
    """The archive or its source is not usable as asked; the message says why and what to do."""


# -- names and files ---------------------------------------------------------------------------


def binlog_index(name):
    """(basename, number) of a binlog file name such as mysql-bin.000042, or None."""
    m = BINLOG_NAME_RE.match(name or "")
    return (m.group("base"), int(m.group("index"))) if m else None


def binlog_name(base, number, width=6):
    return f"{base}.{number:0{width}d}"


def source_dir(archive_root, source):
    if not SOURCE_NAME_RE.match(source or ""):
        raise ArchiveError(f"source name {source!r}: use letters, digits, '.', '_' and '-'")
    return os.path.join(archive_root, source)


def archive_files(directory):
    """[(name, size)] of the binlog files in an archive directory, in binlog order.

    Only names of the binlog pattern count (what mariadb-binlog --raw writes); anything else an
    operator put there is neither listed nor ever removed. Several basenames in one directory are
    refused: one directory holds one source.
    """
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        idx = binlog_index(name)
        path = os.path.join(directory, name)
        if idx and os.path.isfile(path):
            found.append((idx, name, os.path.getsize(path)))
    bases = sorted({idx[0] for idx, _n, _s in found})
    if len(bases) > 1:
        raise ArchiveError(
            f"{directory} holds binlogs of several basenames ({', '.join(bases)}): one directory per source"
        )
    return [(name, size) for _idx, name, size in sorted(found)]


def check_secret_file(path):
    """An option file with credentials must exist, be a regular file and be 0600 (or stricter)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ArchiveError(f"option file {path}: {exc.strerror}") from exc
    if st.st_mode & 0o077:
        raise ArchiveError(f"option file {path} must not be readable by group or others (chmod 0600)")
    return path


def option_file_text(options):
    """The [client] group of an option file from a dict (host, port, user, password...)."""
    lines = ["[client]"]
    for key in OPTION_FILE_KEYS:
        value = options.get(key, options.get(key.replace("-", "_")))
        if value not in (None, ""):
            text = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key}="{text}"')
    return "\n".join(lines) + "\n"


def write_option_file(path, options):
    """Write (or replace) a 0600 option file atomically; True when its content changed."""
    text = option_file_text(options)
    try:
        with open(path) as f:
            if f.read() == text and not os.stat(path).st_mode & 0o077:
                return False
    except OSError:
        pass
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


# -- reading binlog files ------------------------------------------------------------------------


def _query_text(body):
    # thread id (4), exec time (4), db length (1), error code (2), status vars length (2)
    if len(body) < 13:
        return ""
    db_len = body[8]
    sv_len = struct.unpack_from("<H", body, 11)[0]
    start = 13 + sv_len + db_len + 1
    return body[start:].decode("utf-8", "replace")


def _query_db(body):
    if len(body) < 13:
        return ""
    db_len = body[8]
    sv_len = struct.unpack_from("<H", body, 11)[0]
    return body[13 + sv_len : 13 + sv_len + db_len].decode("utf-8", "replace")


def _table_map_name(body):
    # table id (6), flags (2), db length (1), db, NUL, table length (1), table, NUL
    try:
        db_len = body[8]
        db = body[9 : 9 + db_len].decode("utf-8", "replace")
        at = 9 + db_len + 1
        tbl_len = body[at]
        return f"{db}.{body[at + 1 : at + 1 + tbl_len].decode('utf-8', 'replace')}"
    except IndexError:
        return None


def read_events(path, checksum_len=None):
    """Every complete event of one binlog file: dicts with file, start, end, time (epoch), type,
    server_id, and for GTID events the gtid (MariaDB d-s-n, MySQL uuid:n) and flags; for short QUERY
    events their text (BEGIN, COMMIT, DDL). A partial event at the end (a file still being written or
    an archiver killed in mid-event) is left out: ``read_file`` says how many bytes are complete.
    """
    return read_file(path, checksum_len)["events"]


def read_file(path, checksum_len=None):
    """{events, complete_bytes, size, closed}: closed when the file ends with a ROTATE or STOP event."""
    name = os.path.basename(path)
    events = []
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(4) != BINLOG_MAGIC:
            if size < 4:
                return dict(events=[], complete_bytes=0, size=size, closed=False)
            raise ArchiveError(f"{path} is not a binlog file (no binlog magic number)")
        pos = 4
        crc = 4 if checksum_len is None else checksum_len
        while pos + HEADER_LEN <= size:
            f.seek(pos)
            header = f.read(HEADER_LEN)
            ts, etype, server_id, event_size, _end, _flags = HEADER.unpack(header)
            if event_size < HEADER_LEN or pos + event_size > size:
                break
            event = dict(file=name, start=pos, end=pos + event_size, time=ts, type=etype, server_id=server_id)
            if etype == FORMAT_DESCRIPTION_EVENT:
                body = f.read(event_size - HEADER_LEN)
                # binlog version (2), server version (50), create time (4), header length (1),
                # post-header lengths (n), checksum algorithm (1), checksum (4)
                header_len_at = 2 + 50 + 4
                if len(body) > header_len_at and checksum_len is None:
                    # checksum algorithm byte sits 5 bytes from the end when checksums exist
                    alg = body[-5] if len(body) >= 5 else 0
                    crc = 4 if alg == 1 else 0
            elif etype == MARIADB_GTID_EVENT:
                body = f.read(13)
                seq, domain, flags = struct.unpack_from("<QIB", body)
                event.update(gtid=f"{domain}-{server_id}-{seq}", flags=flags)
            elif etype == MYSQL_GTID_EVENT:
                body = f.read(25)
                flags = body[0]
                sid = body[1:17].hex()
                gno = struct.unpack_from("<q", body, 17)[0]
                uuid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
                event.update(gtid=f"{uuid}:{gno}", flags=flags)
            elif etype == QUERY_EVENT:
                body = f.read(min(event_size - HEADER_LEN - crc, 4096))
                event["db"] = _query_db(body)
                event["query"] = _query_text(body) if event_size <= 4096 else _query_text(body) + "..."
            elif etype == TABLE_MAP_EVENT:
                body = f.read(min(event_size - HEADER_LEN, 600))
                event["table"] = _table_map_name(body)
            events.append(event)
            pos += event_size
    closed = bool(events) and events[-1]["type"] in (ROTATE_EVENT, STOP_EVENT)
    return dict(events=events, complete_bytes=pos if events else min(size, 4), size=size, closed=closed)


def _ends_transaction(event, trx):
    if event["type"] == XID_EVENT or event["type"] == XA_PREPARE_EVENT:
        return True
    if event["type"] == QUERY_EVENT:
        text = (event.get("query") or "").strip().upper()
        if text in ("COMMIT", "ROLLBACK") or text.startswith("XA "):
            return True
        if trx["standalone"] and text != "BEGIN":
            return True  # DDL: one statement after its GTID event
    return False


def transactions(events):
    """Group one file's events into transactions (what a GTID names): dicts with file, start (the
    GTID event's offset), end (after the committing event), time (of the GTID event), gtid, events
    (count) and statement (the first statement's text, for DDL). Incomplete groups are left out."""
    result = []
    trx = None
    for event in events:
        if event["type"] in GTID_EVENTS:
            trx = dict(
                file=event["file"],
                start=event["start"],
                end=None,
                time=event["time"],
                gtid=event.get("gtid"),
                standalone=bool(event.get("flags", 0) & MARIADB_FL_STANDALONE)
                if event["type"] == MARIADB_GTID_EVENT
                else False,
                events=1,
                statement=None,
                tables=[],
                databases=[],
            )
            continue
        if trx is None:
            continue
        if event["type"] in BOUNDARY_EVENTS:
            trx = None
            continue
        trx["events"] += 1
        if event.get("table") and event["table"] not in trx["tables"]:
            trx["tables"].append(event["table"])
        if event.get("db") and event["db"] not in trx["databases"]:
            trx["databases"].append(event["db"])
        if event["type"] == QUERY_EVENT and trx["statement"] is None and event.get("query") not in ("BEGIN",):
            trx["statement"] = (event.get("query") or "")[:200]
        if _ends_transaction(event, trx):
            trx["end"] = event["end"]
            del trx["standalone"]
            result.append(trx)
            trx = None
    return result


# -- the source ---------------------------------------------------------------------------------


def client_binary(names=("mariadb", "mysql")):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ArchiveError(f"none of {', '.join(names)} is installed on this host")


def binlog_binary():
    return client_binary(("mariadb-binlog", "mysqlbinlog"))


def source_binary_logs(defaults_file, run=subprocess.run, timeout=30):
    """SHOW BINARY LOGS on the source through the mariadb client: [(name, size)], oldest first."""
    check_secret_file(defaults_file)
    argv = [
        client_binary(),
        f"--defaults-file={defaults_file}",
        "--batch",
        "--skip-column-names",
        "--connect-timeout=10",
        "-e",
        "SHOW BINARY LOGS",
    ]
    proc = run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        err = (
            proc.stderr.decode("utf-8", "replace").strip()
            if isinstance(proc.stderr, bytes)
            else str(proc.stderr)
        )
        raise ArchiveError(
            f"SHOW BINARY LOGS on the source failed (option file {defaults_file}): {err[-500:]}"
        )
    out = proc.stdout.decode() if isinstance(proc.stdout, bytes) else proc.stdout
    return parse_binary_logs(out)


def parse_binary_logs(text):
    logs = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and binlog_index(fields[0]):
            logs.append((fields[0], int(fields[1])))
    return logs


# -- continuity, gaps, resume, lag, retention (pure decisions) -----------------------------------


def _numbers(files):
    return [binlog_index(name)[1] for name, _size in files]


def find_gaps(archived, source_logs=None, needed_from=None, closed=None):
    """Everything that breaks the archive's continuity from ``needed_from`` (the oldest retained full
    backup's binlog file) to its newest file, and between the archive and the source.

    archived: [(name, size)] in order; source_logs: SHOW BINARY LOGS [(name, size)] or None when the
    source could not be asked; closed: {name: bool} whether an archived file ends with ROTATE/STOP.
    Returns a list of dicts {kind, file, detail}; kinds: missing (a file never archived; purged on
    the source when ``on_source`` is false), truncated (an archived older file is shorter than its
    source copy or does not end with a rotate), reinitialised (the source's binlogs restarted).
    """
    gaps = []
    source = dict(source_logs or [])
    base = None
    if archived:
        base = binlog_index(archived[0][0])[0]
    elif source_logs:
        base = binlog_index(source_logs[0][0])[0]
    numbers = _numbers(archived)
    # Re-initialised source: its newest binlog is older than ours, or a file we archived whole is
    # now bigger or smaller there (a different file under the same name).
    if source_logs and archived:
        src_last = binlog_index(source_logs[-1][0])[1]
        if src_last < numbers[-1]:
            gaps.append(
                dict(
                    kind="reinitialised",
                    file=source_logs[-1][0],
                    detail=(
                        f"the source's newest binlog {source_logs[-1][0]} is older than the archive's newest "
                        f"{archived[-1][0]}: the source was re-initialised (or is another server); move "
                        f"the archive aside before archiving it again"
                    ),
                )
            )
            return gaps
        for name, size in archived[:-1]:
            if name in source and source[name] != size:
                gaps.append(
                    dict(
                        kind="reinitialised",
                        file=name,
                        detail=(
                            f"{name} is {size} bytes in the archive and {source[name]} on the source: "
                            f"the source was re-initialised (or is another server); move the archive aside"
                        ),
                    )
                )
                return gaps
    if needed_from and base:
        first_needed = binlog_index(needed_from)
        if first_needed is None:
            raise ArchiveError(
                f"binlog file name {needed_from!r} of the oldest full backup is not a binlog name"
            )
        start = first_needed[1]
    elif numbers:
        start = numbers[0]
    else:
        start = None
    if start is not None and base:
        last = numbers[-1] if numbers else start - 1
        have = set(numbers)
        for n in range(start, last + 1):
            name = binlog_name(base, n, len(archived[0][0].rsplit(".", 1)[1]) if archived else 6)
            if n not in have:
                on_source = name in source
                gaps.append(
                    dict(
                        kind="missing",
                        file=name,
                        on_source=on_source,
                        detail=(
                            f"{name} is missing from the archive"
                            + (
                                " (still on the source)"
                                if on_source
                                else (
                                    " and was purged on the source before it was archived"
                                    if source_logs
                                    else ""
                                )
                            )
                        ),
                    )
                )
        # files the source still has, newer than our newest, are lag, not gaps, unless our newest is
        # gone from the source while the source has moved on: then the files in between are lost
        if archived and source_logs:
            src_numbers = sorted(binlog_index(n)[1] for n in source)
            newer = [n for n in src_numbers if n > numbers[-1]]
            if newer and newer[0] > numbers[-1] + 1:
                for n in range(numbers[-1] + 1, newer[0]):
                    gaps.append(
                        dict(
                            kind="missing",
                            file=binlog_name(base, n),
                            on_source=False,
                            detail=(
                                f"{binlog_name(base, n)} was purged on the source before it was archived"
                            ),
                        )
                    )
        elif not archived and source_logs and start is not None:
            src_first = binlog_index(source_logs[0][0])[1]
            for n in range(start, min(src_first, start + 1000)):
                gaps.append(
                    dict(
                        kind="missing",
                        file=binlog_name(base, n),
                        on_source=False,
                        detail=(f"{binlog_name(base, n)} was purged on the source before it was archived"),
                    )
                )
    # the newest archived file, unfinished, gone from a source that has moved on: its rest is lost
    if archived and source_logs and closed is not None:
        newest = archived[-1][0]
        if newest not in source and not closed.get(newest, True):
            gaps.append(
                dict(
                    kind="truncated",
                    file=newest,
                    detail=(
                        f"{newest} was only partly archived and the source has purged it: its end is lost"
                    ),
                )
            )
    # an older archived file must be whole
    for name, size in archived[:-1]:
        if closed is not None and not closed.get(name, True):
            gaps.append(
                dict(
                    kind="truncated",
                    file=name,
                    detail=(f"{name} in the archive does not end with a rotate event: it is incomplete"),
                )
            )
        elif name in source and source[name] > size:
            gaps.append(
                dict(
                    kind="truncated",
                    file=name,
                    detail=(f"{name} is {size} bytes in the archive but {source[name]} on the source"),
                )
            )
    return gaps


def resume_file(archived, source_logs, needed_from=None):
    """The binlog file the archiver starts from, and why.

    The newest archived file is fetched again whole (it may be partial). An empty archive starts at
    the oldest full backup's file when the source still has it, else at the source's oldest binlog.
    A newest archived file the source no longer has means the files in between are lost: the
    archiver goes on from the source's oldest binlog and the gap is reported (find_gaps).
    """
    if not source_logs:
        raise ArchiveError("the source has no binary logs (is log_bin on?)")
    source_names = [n for n, _s in source_logs]
    if archived:
        gaps = find_gaps(archived, source_logs)
        reinit = [g for g in gaps if g["kind"] == "reinitialised"]
        if reinit:
            raise ArchiveError(reinit[0]["detail"])
        last = archived[-1][0]
        if last in source_names:
            return last, f"the archive ends in {last}: fetching it again from its start"
        newer = [n for n in source_names if binlog_index(n)[1] > binlog_index(last)[1]]
        return newer[0], (
            f"the archive ends in {last}, which the source has purged: fetching from {newer[0]} "
            f"(a gap is reported for the files in between)"
            if binlog_index(newer[0])[1] > binlog_index(last)[1] + 1
            else f"the archive ends in {last} (closed); fetching from {newer[0]}"
        )
    if needed_from and needed_from in source_names:
        return needed_from, f"empty archive: starting at {needed_from}, the oldest full backup's binlog"
    return source_names[0], f"empty archive: starting at the source's oldest binlog {source_names[0]}"


def lag(archived, source_logs, last_event_time=None, now=None):
    """Bytes and seconds the archive is behind the source.

    bytes: what the source has written that the archive has not (files after the archive's newest,
    plus the rest of the newest); seconds: 0 when no byte is missing, else the time since the newest
    archived event (the newest event the archive is sure to hold; what was written after it is the
    window a loss of the source would cost)."""
    now = time.time() if now is None else now
    if not source_logs:
        return dict(bytes=None, seconds=None)
    arch = dict(archived)
    last_num = binlog_index(archived[-1][0])[1] if archived else -1
    behind = 0
    for name, size in source_logs:
        n = binlog_index(name)[1]
        if name in arch:
            behind += max(0, size - arch[name])
        elif n > last_num:
            behind += size
    if behind == 0:
        seconds = 0.0
    elif last_event_time:
        seconds = round(max(0.0, now - last_event_time), 3)
    else:
        seconds = None
    return dict(bytes=behind, seconds=seconds)


def retention_plan(archived, needed_from):
    """Archived files older than ``needed_from`` (the oldest retained full backup's binlog file):
    the files retention may remove. Without a known oldest backup, nothing is removed; the newest
    file (the one being written) is never removed."""
    if not needed_from or not archived:
        return []
    first = binlog_index(needed_from)
    if first is None:
        raise ArchiveError(f"binlog file name {needed_from!r} of the oldest full backup is not a binlog name")
    base = binlog_index(archived[0][0])[0]
    if first[0] != base:
        raise ArchiveError(
            f"the oldest full backup names {needed_from}, the archive holds {base}.* files: another source?"
        )
    return [name for name, _size in archived[:-1] if binlog_index(name)[1] < first[1]]


def apply_retention(directory, needed_from, check_mode=False):
    """Remove the archived files retention_plan allows; returns their names."""
    plan = retention_plan(archive_files(directory), needed_from)
    if not check_mode:
        for name in plan:
            os.unlink(os.path.join(directory, name))
    return plan


# -- facts ---------------------------------------------------------------------------------------


def _iso(ts):
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_trx(trx):
    if not trx:
        return None
    return dict(
        file=trx["file"],
        position=trx["start"],
        end_position=trx["end"],
        time=_iso(trx["time"]),
        timestamp=trx["time"],
        gtid=trx.get("gtid"),
    )


def status(directory, defaults_file=None, needed_from=None, now=None, run=subprocess.run):
    """What the archive holds, its gaps and its lag: the facts of mysql_binlog_archive_status.

    The source is asked (SHOW BINARY LOGS) when an option file is given; an unreachable source is
    reported (source_error), not raised, so the archive's own facts still come back. It is asked
    first: the archive, read after, holds all the source had then when the archiver keeps up, so a
    write during a long read of the archive is not taken for lag (on a quiet source the lag in
    seconds counts from its last transaction, which would be a false alarm).
    """
    source_logs = None
    source_error = None
    if defaults_file:
        try:
            source_logs = source_binary_logs(defaults_file, run=run)
        except (ArchiveError, OSError, subprocess.SubprocessError) as exc:
            source_error = str(exc)
    archived = archive_files(directory)
    closed = {}
    first_trx = last_trx = None
    count = 0
    for name, _size in archived:
        info = read_file(os.path.join(directory, name))
        closed[name] = info["closed"]
        trxs = transactions(info["events"])
        count += len(trxs)
        if trxs and first_trx is None:
            first_trx = trxs[0]
        if trxs:
            last_trx = trxs[-1]
    gaps = find_gaps(archived, source_logs, needed_from, closed)
    behind = lag(archived, source_logs, last_trx["time"] if last_trx else None, now)
    return dict(
        directory=directory,
        files=[dict(name=n, size=s, closed=closed[n]) for n, s in archived],
        file_count=len(archived),
        size_bytes=sum(s for _n, s in archived),
        first=describe_trx(first_trx),
        last=describe_trx(last_trx),
        transactions=count,
        needed_from=needed_from,
        gaps=gaps,
        continuous=not gaps,
        source_binary_logs=[dict(name=n, size=s) for n, s in source_logs]
        if source_logs is not None
        else None,
        source_error=source_error,
        lag_bytes=behind["bytes"],
        lag_seconds=behind["seconds"],
    )


# -- the archiver --------------------------------------------------------------------------------


def archiver_command(directory, defaults_file, server_id, start_file, binary=None):
    """The mariadb-binlog command line of one archiver (no secret on it)."""
    return [
        binary or binlog_binary(),
        f"--defaults-file={defaults_file}",
        "--read-from-remote-server",
        "--raw",
        "--stop-never",
        f"--stop-never-slave-server-id={int(server_id)}",
        f"--result-file={directory.rstrip('/')}/",
        start_file,
    ]


def load_config(path):
    with open(path) as f:
        config = json.load(f)
    for key in ("directory", "defaults_file", "server_id"):
        if not config.get(key):
            raise ArchiveError(f"archiver configuration {path}: {key} is missing")
    return config


def prepare_run(config, run=subprocess.run):
    """Decide where the archiver starts: (argv, reason). Raises ArchiveError with the reason it must
    not start (unreadable option file, source refusing the login, re-initialised source)."""
    directory = config["directory"]
    check_secret_file(config["defaults_file"])
    source_logs = source_binary_logs(config["defaults_file"], run=run)
    os.makedirs(directory, mode=0o750, exist_ok=True)  # only once the source has answered
    start, reason = resume_file(archive_files(directory), source_logs, config.get("needed_from"))
    argv = archiver_command(
        directory, config["defaults_file"], config["server_id"], start, config.get("binary")
    )
    return argv, reason


def main(argv=None):
    parser = argparse.ArgumentParser(description="Archive a MySQL/MariaDB server's binlogs continuously.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="resume the archive and stream binlogs (exec mariadb-binlog)")
    run_p.add_argument(
        "--config", required=True, help="the source's JSON configuration (roles/mysql_binlog_archive)"
    )
    stat_p = sub.add_parser("status", help="print the archive's facts as JSON")
    stat_p.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "status":
            print(
                json.dumps(
                    status(config["directory"], config["defaults_file"], config.get("needed_from")), indent=2
                )
            )
            return 0
        command, reason = prepare_run(config)
    except (ArchiveError, OSError, ValueError) as exc:
        print(f"binlog archiver: {exc}", file=sys.stderr)
        return 1
    print(f"binlog archiver: {reason}: {' '.join(command)}", file=sys.stderr, flush=True)
    os.execv(command[0], command)
    return 1  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main())
