"""Prove a copied MariaDB/MySQL data directory usable: start a throwaway server on it, CHECK TABLE, stop.

The server runs with --no-defaults, networking off, grants skipped, its socket/pid/log in a private
temporary directory, so it cannot collide with production. InnoDB crash recovery runs on the copy
(a snapshot taken under FLUSH TABLES WITH READ LOCK is crash-consistent). Pure Python.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import time

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


class VerifyError(Exception):
    """The copy could not be started or its tables do not check clean."""


def server_binary():
    for name in ("mariadbd", "mysqld"):
        for path in (shutil.which(name), f"/usr/sbin/{name}"):
            if path and os.path.exists(path):
                return path
    raise VerifyError("no mariadbd/mysqld binary found to verify the copy")


def server_command(binary, datadir, rundir, user, buffer_pool="64M"):
    return [
        binary,
        "--no-defaults",
        f"--user={user}",
        f"--datadir={datadir}",
        f"--socket={os.path.join(rundir, 'verify.sock')}",
        f"--pid-file={os.path.join(rundir, 'verify.pid')}",
        f"--log-error={os.path.join(rundir, 'verify.err')}",
        "--skip-networking",
        "--skip-grant-tables",
        "--skip-log-bin",
        "--skip-slave-start",
        f"--innodb-buffer-pool-size={buffer_pool}",
        "--server-id=999",
    ]


def check_tables(cur, count_tables=(), count_all=False, biggest=0, recount=()):
    """CHECK TABLE every user table through a cursor; count the rows of count_tables ('db.t'), or of
    every table with count_all, and of the `biggest` largest tables (data + index size) and of
    recount (the tables an earlier backup counted; those that no longer exist are listed in
    'tables_gone'). Returns {'tables_checked', 'row_counts', 'biggest_tables', 'tables_gone'};
    raises VerifyError naming the tables that do not check OK, or a table of count_tables that does
    not exist."""
    cur.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = "
        "'BASE TABLE' AND TABLE_SCHEMA NOT IN (" + ",".join(["%s"] * len(SYSTEM_SCHEMAS)) + ") "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME",
        SYSTEM_SCHEMAS,
    )
    names = [(s, t) for s, t in cur.fetchall()]
    bad = []
    for schema, table in names:
        cur.execute(f"CHECK TABLE `{schema}`.`{table}`")
        for row in cur.fetchall():
            msg_type, msg_text = str(row[2]).lower(), str(row[3])
            if msg_type == "error" or (msg_type == "status" and msg_text != "OK"):
                bad.append(f"`{schema}`.`{table}`: {msg_type} {msg_text}")
    if bad:
        raise VerifyError("tables in the copy do not check clean: " + "; ".join(bad[:10]))
    present = {f"{s}.{t}" for s, t in names}
    missing = [t for t in count_tables if t not in present]
    if missing:
        raise VerifyError(f"tables to count are not in the copy: {', '.join(missing)}")
    top = biggest_tables(cur, biggest) if biggest else []
    wanted = [f"{s}.{t}" for s, t in names] if count_all else list(count_tables)
    wanted += [t for t in list(top) + list(recount) if t not in wanted and t in present]
    counts = {}
    for name in wanted:
        schema, _, table = name.partition(".")
        cur.execute(f"SELECT COUNT(*) FROM `{schema}`.`{table}`")
        counts[name] = cur.fetchone()[0]
    gone = sorted(t for t in recount if t not in present)
    return {"tables_checked": len(names), "row_counts": counts, "biggest_tables": top, "tables_gone": gone}


def biggest_tables(cur, n):
    """The n largest user tables ('db.t') by data and index size, as the server estimates them."""
    cur.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = "
        "'BASE TABLE' AND TABLE_SCHEMA NOT IN (" + ",".join(["%s"] * len(SYSTEM_SCHEMAS)) + ") "
        "ORDER BY COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) DESC, TABLE_SCHEMA, TABLE_NAME "
        f"LIMIT {int(n)}",
        SYSTEM_SCHEMAS,
    )
    return [f"{s}.{t}" for s, t in cur.fetchall()]


def verify_datadir(datadir, count_tables=(), start_timeout=300, connect=None, count_all=False,
                   buffer_pool="64M", biggest=0, recount=()):
    """Start a server on datadir, CHECK TABLE every user table, count rows of count_tables ('db.t')
    (of every table with count_all). buffer_pool: the server's InnoDB buffer pool (64M: the backup's
    verification runs beside production).

    biggest, recount: see check_tables.

    Returns {'tables_checked', 'row_counts', 'biggest_tables', 'tables_gone', 'server_seconds'};
    raises VerifyError on any table that does not check OK or a server that does not start. The
    server is always stopped.
    """
    if connect is None:
        import pymysql  # the module checks the import and reports missing_required_lib

        def connect(sock):
            return pymysql.connect(unix_socket=sock, user="root", autocommit=True)

    if not os.path.isdir(os.path.join(datadir, "mysql")):
        raise VerifyError(f"{datadir} does not look like a MySQL data directory (no mysql/ schema)")
    user = pwd.getpwuid(os.stat(datadir).st_uid).pw_name
    rundir = tempfile.mkdtemp(prefix="lvm-verify-")
    os.chown(rundir, os.stat(datadir).st_uid, os.stat(datadir).st_gid)
    sock = os.path.join(rundir, "verify.sock")
    command = server_command(server_binary(), datadir, rundir, user, buffer_pool)
    t0 = time.monotonic()
    proc = conn = None
    try:
        try:
            proc, conn = _start(command, sock, rundir, connect, t0, start_timeout)
        except VerifyError as exc:
            if "prepared transaction" not in str(exc):
                raise
            # A snapshot of a server with the binary log on can hold transactions that InnoDB
            # had prepared and the binlog had already committed (with the binlog, InnoDB does not
            # sync its commit record). The snapshot was taken under FLUSH TABLES WITH READ LOCK,
            # which waits for commits in progress, so every such transaction is in the binlog
            # before the recorded coordinates: commit them. The server may stop after this
            # recovery pass; then it is started once more without the option.
            proc, conn = _start(command + ["--tc-heuristic-recover=COMMIT"], sock, rundir, connect, t0,
                                start_timeout, exit_ok=True)
            if conn is None:
                proc, conn = _start(command, sock, rundir, connect, t0, start_timeout)
        with conn.cursor() as cur:
            checked = check_tables(cur, count_tables, count_all, biggest, recount)
        return dict(checked, server_seconds=round(time.monotonic() - t0, 3))
    finally:
        if conn is not None:
            try:
                with conn.cursor() as cur:
                    cur.execute("SHUTDOWN")
            except Exception:
                pass
            try:
                conn.close()
            except Exception:
                pass
        if proc is not None:
            _stop(proc, asked=conn is not None)
        shutil.rmtree(rundir, ignore_errors=True)


def _stop(proc, asked):
    """Wait for a server asked to SHUTDOWN; terminate (then kill) one that was not or does not stop."""
    if not asked and proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(command, sock, rundir, connect, t0, start_timeout, exit_ok=False):
    """Start the server and connect. Returns (proc, conn), or (proc, None) when exit_ok and the
    server stopped by itself (a recovery pass; the next start shows whether it worked).
    Raises VerifyError otherwise."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                if exit_ok:
                    return proc, None
                raise VerifyError(f"the server on the copy exited (rc {proc.returncode}): {_tail(rundir)}")
            try:
                return proc, connect(sock)
            except Exception as exc:
                if time.monotonic() - t0 > start_timeout:
                    raise VerifyError(
                        f"the server on the copy did not answer in {start_timeout}s: {_tail(rundir)}"
                    ) from exc
                time.sleep(0.1)
    except BaseException:
        _stop(proc, asked=False)
        raise


def _tail(rundir, n=8):
    try:
        with open(os.path.join(rundir, "verify.err")) as f:
            return " | ".join(line.strip() for line in f.readlines()[-n:])
    except OSError:
        return "(no error log)"
