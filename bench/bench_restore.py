#!/usr/bin/env python3
"""Scratch restore benchmark (issue 13): a scratch restore plus verification of a MySQL datadir
against a plain `cp -a` of the same directory plus starting mariadbd on it.

A throwaway MariaDB server writes --size-mb MB of InnoDB rows and is shut down cleanly; its datadir
stands for the backup. Then, alternating, with the backup in the page cache for both (or, with
--cold, the page cache dropped before each path, as a restore reads a backup from disk):
  plain:   cp -a <backup> <dir>; mariadbd on the copy until it answers; shutdown.
  toolkit: lvm_restore.scratch_restore() on the datadir laid out as an LVM snapshot backup (what
           lvm_snapshot_restore.yml with a scratch directory and the LVM restore drill run): the
           files checked against MANIFEST.sha256, the copy (rsync, owned by the mysql user), a
           throwaway mariadbd as that user, CHECK TABLE and the row count of every table, removal.
Both servers get the same server options (mysql_datadir_verify.server_command). Prints both times
and the ratio (target <= 1.3), the toolkit's breakdown, and a scratch copy plus a server started
and stopped on it without any verification (ScratchInstance.start, as the PITR restore does).

    python bench/bench_restore.py [--size-mb 200] [--rounds 1] [--cold]
    BENCH_RESTORE_SIZE_MB=1000 python bench/bench_restore.py     # the issue's 1 GB

Nothing is asserted on time; the row counts the verification reads are checked.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(os.path.join(TOP, "plugins", "module_utils"))

import pymysql  # noqa: E402
from ansible.module_utils.lvm_restore import SCRATCH_BUFFER_POOL, scratch_restore  # noqa: E402
from ansible.module_utils.lvm_snapshot_copy import write_manifest  # noqa: E402
from ansible.module_utils.mysql_datadir_verify import server_binary, server_command  # noqa: E402
from ansible.module_utils.mysql_pitr import ScratchInstance  # noqa: E402

from tests.lib.mariadb import MariaDB  # noqa: E402

SERVER_ARGS = ["--innodb-buffer-pool-size=256M", "--innodb-flush-log-at-trx-commit=2"]
ROW_BYTES = 1024
NAME = "20261203T000000Z"


def generate(server, size_mb):
    server.sql("CREATE DATABASE bench")
    server.sql("CREATE TABLE bench.rows (id INT PRIMARY KEY, label VARCHAR(64), payload TEXT) ENGINE=InnoDB")
    server.sql("CREATE TABLE bench.small (id INT PRIMARY KEY, a INT, KEY (a)) ENGINE=InnoDB")
    server.sql("CREATE TABLE bench.other (id INT PRIMARY KEY, note VARCHAR(200)) ENGINE=Aria")
    rows = size_mb * 1_000_000 // ROW_BYTES
    batch = 20000
    for start in range(0, rows, batch):
        end = min(rows, start + batch)
        server.sql(
            "INSERT INTO bench.rows SELECT seq, CONCAT('row-', seq), REPEAT(MD5(seq), 30) "
            f"FROM seq_{start + 1}_to_{end}",
            db="bench",
        )
    server.sql("INSERT INTO bench.small SELECT seq, seq % 97 FROM seq_1_to_50000", db="bench")
    server.sql("INSERT INTO bench.other SELECT seq, REPEAT('n', 100) FROM seq_1_to_20000", db="bench")
    return {"bench.rows": rows, "bench.small": 50000, "bench.other": 20000}


def tree_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def warm(path):
    """Read every file once so both paths start with the backup in the page cache."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(1 << 20):
                    pass


def drop_caches():
    """Write back and drop the page cache (root only), so the next path reads the backup from disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def plain(backup, workdir):
    target = os.path.join(workdir, "data")
    rundir = os.path.join(workdir, "run")
    os.makedirs(rundir)
    started = time.monotonic()
    subprocess.run(["cp", "-a", backup, target], check=True)
    proc = subprocess.Popen(
        server_command(server_binary(), target, rundir, "root", SCRATCH_BUFFER_POOL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock = os.path.join(rundir, "verify.sock")
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mariadbd on the plain copy exited (rc {proc.returncode})")
            try:
                conn = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
                break
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        ready = time.monotonic() - started
        with conn.cursor() as cur:
            cur.execute("SHUTDOWN")
        conn.close()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - started, ready


def lvm_layout(datadir, dest):
    """The datadir as an LVM snapshot backup (lvm_snapshot_copy's layout: <dest>/<name>/mysql/...,
    MANIFEST.sha256, metadata.json with the row counts a backup's verification records)."""
    backup = os.path.join(dest, NAME)
    os.makedirs(backup)
    subprocess.run(["cp", "-a", datadir, os.path.join(backup, "mysql")], check=True)
    write_manifest(backup)
    with open(os.path.join(backup, "metadata.json"), "w") as f:
        json.dump({"name": NAME, "verification": {"row_counts": {"bench.small": 50000}}}, f)
    return backup


def toolkit(dest, workdir):
    """lvm_restore.scratch_restore, as lvm_snapshot_restore.yml and the LVM drill run it: the volume's
    files checked against the manifest, the copy (rsync, owned by the mysql user), a throwaway server
    as that user, CHECK TABLE and the row count of every table, the copy removed."""
    started = time.monotonic()
    result = scratch_restore(dest, "latest", "mysql", ".", workdir, user="mysql")
    return time.monotonic() - started, result


def toolkit_start_only(backup, workdir):
    """The scratch copy and a server started on it (ScratchInstance.start/stop), no verification."""
    scratch = ScratchInstance(workdir, user="root")
    scratch.check_new()
    started = time.monotonic()
    try:
        scratch.create(datadir_source=backup)
        scratch.start()
        scratch.stop()
        return time.monotonic() - started
    finally:
        scratch.remove()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mb",
        type=int,
        default=int(os.environ.get("BENCH_RESTORE_SIZE_MB", "200")),
        help="InnoDB rows generated (default 200, or $BENCH_RESTORE_SIZE_MB; the issue's figure is 1000)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both paths (default 1)")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before each path (root; default: both read a warm cache)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="bench-restore-")
    live = None
    try:
        live = MariaDB(os.path.join(base, "live"), 1, SERVER_ARGS).start()
        t0 = time.monotonic()
        expected = generate(live, args.size_mb)
        live.stop()
        backup = live.datadir
        size = tree_bytes(backup) / 1e6
        print(
            f"datadir: {size:.0f} MB on disk for {args.size_mb} MB of rows "
            "(default 200 MB; BENCH_RESTORE_SIZE_MB=1000 for the issue's 1 GB), "
            f"made in {time.monotonic() - t0:.1f}s"
        )
        os.chmod(base, 0o711)  # the scratch server runs as the mysql user
        dest = os.path.join(base, "backups")
        lvm_layout(backup, dest)
        settle = drop_caches if args.cold else (lambda: (warm(backup), warm(dest)))
        plain_times, toolkit_times, start_times = [], [], []
        for r in range(args.rounds):
            settle()
            elapsed, ready = plain(backup, os.path.join(base, f"plain-{r}"))
            shutil.rmtree(os.path.join(base, f"plain-{r}"))
            plain_times.append(elapsed)
            print(f"round {r + 1}: plain cp -a + mariadbd: {elapsed:6.2f} s (answering after {ready:.2f} s)")
            settle()
            elapsed, result = toolkit(dest, os.path.join(base, f"scratch-{r}"))
            toolkit_times.append(elapsed)
            if result["row_counts"] != expected:
                raise RuntimeError(f"row counts differ: {result['row_counts']} vs {expected}")
            rest = elapsed - result["copy_seconds"] - result["verify_seconds"]
            print(
                f"round {r + 1}: scratch restore + verify: {elapsed:6.2f} s (copy with the manifest "
                f"check beside it {result['copy_seconds']:.2f} s, server with CHECK TABLE of "
                f"{result['tables_checked']} tables and every table's rows {result['verify_seconds']:.2f} s, "
                f"the rest (checks before, removal) {rest:.2f} s)"
            )
            settle()
            start_only = toolkit_start_only(backup, os.path.join(base, f"start-{r}"))
            start_times.append(start_only)
            print(f"round {r + 1}: scratch copy + server start/stop, no CHECK TABLE: {start_only:6.2f} s")
        p, t = min(plain_times), min(toolkit_times)
        print(f"plain cp -a + start mariadbd : {p:7.2f} s  {size / p:7.1f} MB/s")
        print(f"scratch restore + verify     : {t:7.2f} s  {size / t:7.1f} MB/s")
        print(f"ratio (toolkit / plain time): {t / p:.2f}  (target <= 1.3; page cache "
              f"{'dropped before each path' if args.cold else 'warm'})")
        print(f"ratio without the verification (scratch copy + start / plain): {min(start_times) / p:.2f}")
    finally:
        if live is not None:
            live.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
