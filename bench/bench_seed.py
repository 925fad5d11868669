#!/usr/bin/env python3
"""Seeding benchmark: the module's seed paths against a plain `mysqldump | mysql` pipe on the same
generated InnoDB data (a secondary index included), in the same process.

Starts two throwaway MariaDB servers under a temporary directory, generates --size-mb MB of rows
on the source, then times (a) the plain pipe, (b) the logical seed, run_seed() into the target (the
target's copy is dropped between runs), and (c) the physical seed (mysql_physical_seed: a
mariadb-backup stream extracted and prepared in the target's datadir, the target stopped, the copy
swapped in, started, replication started from the backup's coordinates and running), end to end.
Prints the times and the ratios (logical: throughput >= 0.9 of the pipe; physical: >= 4x as fast).

    python bench/bench_seed.py [--size-mb 200] [--rounds 1]
"""

import argparse
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

from ansible.module_utils.mysql_connection import (
    client_defaults_file,  # noqa: E402
    connect,  # noqa: E402
)
from ansible.module_utils.mysql_physical_seed import empty_ignored, finish, stage, swap  # noqa: E402
from ansible.module_utils.mysql_replica import ensure_replica  # noqa: E402
from ansible.module_utils.mysql_seed import run_seed  # noqa: E402

from tests.lib.mariadb import ROOT_PASSWORD, MariaDB  # noqa: E402

SERVER_ARGS = ["--innodb-buffer-pool-size=256M", "--innodb-flush-log-at-trx-commit=2"]
ROW_BYTES = 1024


def generate(src, size_mb):
    src.sql("CREATE DATABASE bench")
    src.sql("CREATE TABLE bench.rows (id INT PRIMARY KEY, label VARCHAR(64), payload TEXT, KEY (label)) "
            "ENGINE=InnoDB")
    rows = size_mb * 1_000_000 // ROW_BYTES
    batch = 20000
    for start in range(0, rows, batch):
        end = min(rows, start + batch)
        src.sql(
            "INSERT INTO bench.rows SELECT seq, CONCAT('row-', seq), REPEAT(MD5(seq), 30) "
            f"FROM seq_{start + 1}_to_{end}",
            db="bench",
        )
    return rows


def plain_pipe(src, dst, workdir):
    """mysqldump | mysql with the same consistency options the module uses, no Python in between."""
    src_cnf = client_defaults_file(
        dict(host="127.0.0.1", port=src.port, user="root", password=ROOT_PASSWORD), workdir
    )
    dst_cnf = client_defaults_file(dict(unix_socket=dst.socket, user="root"), workdir)
    dump_bin = shutil.which("mariadb-dump") or "mysqldump"
    client_bin = shutil.which("mariadb") or "mysql"
    counted = os.path.join(workdir, "bytes")
    try:
        started = time.monotonic()
        dump = subprocess.Popen(
            [
                dump_bin,
                f"--defaults-extra-file={src_cnf}",
                "--single-transaction",
                "--master-data=2",
                "--quick",
                "--max-allowed-packet=512M",
                "--databases",
                "bench",
            ],
            stdout=subprocess.PIPE,
        )
        load = subprocess.Popen(
            [client_bin, f"--defaults-extra-file={dst_cnf}", "--batch", "--max-allowed-packet=512M"],
            stdin=dump.stdout,
        )
        dump.stdout.close()
        if load.wait() != 0 or dump.wait() != 0:
            raise RuntimeError("plain pipe failed")
        elapsed = time.monotonic() - started
    finally:
        for path in (src_cnf, dst_cnf, counted):
            if os.path.exists(path):
                os.unlink(path)
    return elapsed


def module_path(src, dst):
    params = dict(
        login_host="127.0.0.1",
        login_port=src.port,
        login_user="root",
        login_password=ROOT_PASSWORD,
        databases=["bench"],
        ignore_tables=[],
        mode="import",
        target_unix_socket=dst.socket,
        target_user="root",
        consistency="auto",
        lock_wait_timeout=60,
        max_query_seconds=300,
        extra_dump_args=[],
        config_file=None,
    )
    started = time.monotonic()
    result = run_seed(params)
    return time.monotonic() - started, result


def physical_path(src, dst):
    """The physical seed end to end: stage (stream, extract, prepare), stop, swap, start, empty the
    ignored tables (none here), replication started and running; then the set-aside data removed
    (not timed)."""
    run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stream = ["mariadb-backup", "--backup", "--stream=xbstream", f"--socket={src.socket}", "--user=root",
              f"--datadir={src.datadir}"]
    started = time.monotonic()
    source = connect(dict(unix_socket=src.socket, user="root"))
    try:
        staged = stage(stream, dst.datadir, run, source)
    finally:
        source.close()
    dst.stop()
    swap(dst.datadir, run)
    dst.start(extra_args=["--skip-slave-start"])
    replica = connect(dict(unix_socket=dst.socket, user="root"))
    try:
        empty_ignored(replica, [])
        ensure_replica(replica, dict(
            source_host="127.0.0.1", source_port=src.port, source_user="repl", source_password=ROOT_PASSWORD,
            source_log_file=staged["binlog_file"], source_log_pos=staged["binlog_position"], state="running",
            update_password="on_create", wait=True, max_lag_seconds=5, wait_timeout=300, flavor="auto"))
        elapsed = time.monotonic() - started
        with replica.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")
    finally:
        replica.close()
    finish(dst.datadir, run)
    return elapsed, staged


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200, help="data generated on the source (default 200)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both paths (default 1)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="bench-seed-")
    servers = []
    try:
        src = MariaDB(os.path.join(base, "source"), 1, SERVER_ARGS).start()
        servers.append(src)
        dst = MariaDB(os.path.join(base, "target"), 2, SERVER_ARGS).start()
        servers.append(dst)
        t0 = time.monotonic()
        rows = generate(src, args.size_mb)
        src.sql(f"CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}'")
        src.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
        print(f"generated {rows} rows (~{args.size_mb} MB) in {time.monotonic() - t0:.1f}s")
        plain_times, module_times, physical_times, stream_bytes = [], [], [], 0
        for _ in range(args.rounds):
            dst.sql("DROP DATABASE IF EXISTS bench")
            plain_times.append(plain_pipe(src, dst, base))
            dst.sql("DROP DATABASE IF EXISTS bench")
            elapsed, result = module_path(src, dst)
            module_times.append(elapsed)
            stream_bytes = result["bytes"]
            assert dst.sql("SELECT COUNT(*) FROM bench.rows")[0][0] == rows
            elapsed, staged = physical_path(src, dst)
            physical_times.append(elapsed)
            assert dst.sql("SELECT COUNT(*) FROM bench.rows")[0][0] == rows
        plain = min(plain_times)
        module = min(module_times)
        mb = stream_bytes / 1e6
        print(f"dump stream: {mb:.1f} MB; coordinates {result['binlog_file']}:{result['binlog_position']}")
        print(f"plain mysqldump | mysql : {plain:7.2f} s  {mb / plain:7.2f} MB/s")
        print(f"mysql_consistent_seed   : {module:7.2f} s  {mb / module:7.2f} MB/s")
        print(f"ratio (module / plain throughput): {plain / module:.2f}  (target >= 0.9)")
        physical = min(physical_times)
        print(f"mysql_physical_seed     : {physical:7.2f} s  (prepared copy {staged['bytes'] / 1e6:.0f} MB, "
              "until replication runs)")
        print(f"ratio (plain time / physical seed time): {plain / physical:.2f}  (target >= 4)")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
