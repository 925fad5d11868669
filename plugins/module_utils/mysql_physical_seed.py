"""Physical seed of a replica for large databases: a mariadb-backup stream of the source, extracted
and prepared on the backup host, then swapped in for the replica's datadir.

Steps (one module call each, so a playbook can stop and start the server between them):

- ``stage``: the source's size is read (admin login) and the backup host's room checked BEFORE
  anything is streamed; a long-running query on the source refuses the seed (mariadb-backup's own
  lock would wait behind it); the stream command (run on the backup host, its stdout the xbstream,
  e.g. ``ssh <source> sudo mariadb-backup --backup --stream=xbstream``) is piped into
  ``mbstream -x`` in a new staging directory inside the datadir (same filesystem: the swap is
  renames), prepared with ``mariadb-backup --prepare``, owned like the datadir. The binlog
  coordinates and GTID come from the backup's own record (``xtrabackup_binlog_info``). Any failure
  removes the staging directory; the replica is not touched.
- ``swap``: the replica's server must be stopped; its entries are set aside inside the datadir and
  the staged copy moved in (the LVM in-place restore's swap, lvm_restore.swap_in_place).
- ``empty_ignored``: on the started replica (skip-slave-start), the tables that must not be
  replicated are emptied (TRUNCATE, sql_log_bin=0) before replication starts: the source's rows in
  them arrived with the copy.
- ``finish``: once the new copy is proven (replication running, tables compared), the set-aside
  entries are removed. ``rollback`` puts them back instead (server stopped).
"""

import os
import shutil
import subprocess
import tempfile
import time

from ansible.module_utils.lvm_restore import (
    RestoreError,
    check_datadir,
    check_room,
    finish_in_place,
    own_names,
    rollback_in_place,
    servers_on,
    swap_in_place,
)
from ansible.module_utils.mysql_connection import processlist, query
from ansible.module_utils.mysql_seed import describe_queries, long_running_queries

BINLOG_INFO_FILES = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")
# the prepared copy is the data plus the redo applied: the source's data and index bytes, with room
# for the log and what InnoDB statistics under-count
SIZE_MARGIN = 1.25


class PhysicalSeedError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def parse_binlog_info(text):
    """``<file>\\t<position>[\\t<gtid>]`` of mariadb-backup's record -> coordinates."""
    fields = (text or "").strip().split("\t")
    if len(fields) < 2 or not fields[0] or not fields[1].isdigit():
        raise PhysicalSeedError(
            f"the backup's binlog record is not '<file> <position> [<gtid>]': {text!r} (is log_bin on at the "
            "source?)"
        )
    return dict(
        binlog_file=fields[0],
        binlog_position=int(fields[1]),
        gtid=fields[2].strip() if len(fields) > 2 else "",
    )


def read_binlog_info(directory):
    for name in BINLOG_INFO_FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as handle:
                return parse_binlog_info(handle.read())
    raise PhysicalSeedError(
        f"the backup in {directory} has no binlog record ({' or '.join(BINLOG_INFO_FILES)}):"
        " the stream ended early, or the source has no binary log"
    )


def source_bytes(conn):
    """Data and index bytes of every table on the source (what the prepared copy holds, roughly)."""
    rows = query(
        conn,
        "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS b FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema')",
    )
    return int(rows[0]["b"] or 0)


def inspect_source(conn, max_query_seconds):
    """(bytes, problems): the source's size, and a long-running query that would hold the backup's
    lock (mariadb-backup's BACKUP STAGE BLOCK_COMMIT waits for running statements)."""
    long = long_running_queries(processlist(conn), max_query_seconds)
    problems = []
    if long:
        problems.append(
            f"queries running longer than {max_query_seconds}s on the source: {describe_queries(long)}"
            " (the backup's lock would wait behind them)"
        )
    return source_bytes(conn), problems


def _tail(handle, limit=1500):
    try:
        handle.seek(0)
        return handle.read().decode(errors="replace").strip()[-limit:]
    except (OSError, ValueError):
        return ""


def stage(
    stream_argv,
    datadir,
    run,
    source_conn,
    max_query_seconds=60,
    reserve_bytes=0,
    mbstream="mbstream",
    backup_binary="mariadb-backup",
    check_mode=False,
    popen=subprocess.Popen,
):
    """Stream, extract and prepare the source's backup into the staging directory (see the module doc)."""
    names = own_names(run)
    check_datadir(datadir)
    staging = os.path.join(datadir, names["staging"])
    if os.path.lexists(staging):
        raise PhysicalSeedError(f"{staging} exists already (another seed of run {run}?); nothing was changed")
    programs = (mbstream, backup_binary, stream_argv[0] if stream_argv else "")
    missing = [b for b in programs if not shutil.which(b)]
    if missing:
        raise PhysicalSeedError(f"not found on the backup host: {', '.join(missing)} (mbstream and "
                                "mariadb-backup come with the mariadb-backup package); nothing was streamed")
    needed, problems = inspect_source(source_conn, max_query_seconds)
    if problems:
        raise PhysicalSeedError("refusing to seed: " + "; ".join(problems) + "; nothing was streamed")
    estimate = int(needed * SIZE_MARGIN) + int(reserve_bytes)
    try:
        free = check_room(
            datadir, estimate, f"the physical seed's copy (the source's data and index bytes x{SIZE_MARGIN})"
        )
    except RestoreError as exc:
        raise PhysicalSeedError(str(exc).replace("nothing was changed", "nothing was streamed")) from exc
    result = dict(
        changed=True,
        staging=staging,
        datadir=datadir,
        estimated_bytes=estimate,
        free_bytes=free,
        stream_command=list(stream_argv),
    )
    if check_mode:
        return dict(result, binlog_file="", binlog_position=0, gtid="", check_mode=True)
    st = os.stat(datadir)
    started = time.monotonic()
    os.mkdir(staging, 0o700)
    processes = []
    try:
        with tempfile.TemporaryFile() as stream_err, tempfile.TemporaryFile() as extract_err:
            producer = popen(
                list(stream_argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stream_err
            )
            processes.append(producer)
            consumer = popen(
                [mbstream, "-x", "-C", staging],
                stdin=producer.stdout,
                stdout=subprocess.DEVNULL,
                stderr=extract_err,
            )
            processes.append(consumer)
            producer.stdout.close()
            consumer_rc = consumer.wait()
            producer_rc = producer.wait()
            if producer_rc != 0 or consumer_rc != 0:
                message = _tail(stream_err) or _tail(extract_err) or "no message"
                raise PhysicalSeedError(
                    f"the backup stream failed (stream command exit {producer_rc}, "
                    f"mbstream exit {consumer_rc}): {message}; the staging directory was removed, "
                    "the replica was not touched"
                )
        result["stream_seconds"] = round(time.monotonic() - started, 3)
        coordinates = read_binlog_info(staging)
        prepared = subprocess.run(
            [backup_binary, "--prepare", f"--target-dir={staging}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if prepared.returncode != 0 or "completed OK!" not in prepared.stderr:
            raise PhysicalSeedError(
                f"mariadb-backup --prepare failed (exit {prepared.returncode}): "
                f"{prepared.stderr.strip()[-1500:]}; the staging directory was removed"
            )
        _own_like(staging, st.st_uid, st.st_gid)
        os.chmod(staging, st.st_mode & 0o7777)
    except BaseException:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.update(coordinates, bytes=_bytes(staging), seconds=round(time.monotonic() - started, 3))
    return result


def _own_like(top, uid, gid):
    for directory, _dirs, files in os.walk(top):
        os.chown(directory, uid, gid)
        for name in files:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


def _bytes(top):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _dirs, files in os.walk(top) for f in files)


def swap(datadir, run, check_mode=False):
    """The staged copy in place of the replica's data (its server stopped); the old entries set aside."""
    names = own_names(run)
    check_datadir(datadir)
    staging = os.path.join(datadir, names["staging"])
    if check_mode:  # the stage step made nothing in check mode
        return dict(changed=True, aside=os.path.join(datadir, names["aside"]))
    if not os.path.isdir(staging):
        raise PhysicalSeedError(f"nothing staged at {staging}: run step=stage first; nothing was changed")
    running = servers_on(datadir)
    if running:
        raise PhysicalSeedError(
            f"a process still runs in {datadir} (pid {', '.join(map(str, running))}): stop "
            "the replica's server first; nothing was changed"
        )
    return dict(swap_in_place(datadir, run), changed=True)


def empty_ignored(conn, ignore_tables, check_mode=False):
    """TRUNCATE the ignored tables (db.table) that exist on the replica, with sql_log_bin=0."""
    emptied = []
    for entry in ignore_tables:
        db, table = entry.split(".", 1)
        rows = query(
            conn,
            "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (db, table),
        )
        if not rows or not int(rows[0]["n"]):
            continue
        count = query(conn, f"SELECT COUNT(*) AS n FROM `{db}`.`{table}`")[0]["n"]
        if not count:
            continue
        emptied.append(dict(table=entry, rows=int(count)))
        if not check_mode:
            query(conn, "SET SESSION sql_log_bin = 0")
            query(conn, f"TRUNCATE TABLE `{db}`.`{table}`")
    return dict(changed=bool(emptied), emptied=emptied)


def finish(datadir, run, check_mode=False):
    names = own_names(run)
    aside = os.path.join(datadir, names["aside"])
    if check_mode:
        return dict(changed=os.path.isdir(aside), previous=None)
    return finish_in_place(datadir, run, keep_previous=False)


def rollback(datadir, run, check_mode=False):
    if check_mode:
        return dict(changed=True, state="would roll back")
    result = rollback_in_place(datadir, run)
    return dict(result, changed=result["state"] != "untouched")
