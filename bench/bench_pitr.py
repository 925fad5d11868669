#!/usr/bin/env python3
"""Point-in-time recovery benchmark (issue 16): archive lag and replay throughput, real MariaDB.

1. Archive lag. A source server runs a steady writer of small transactions (one INSERT each, at
   --rate per second for --seconds) while the archiver the role runs streams its binlog
   (binlog_archive.prepare_run(): mariadb-binlog --read-from-remote-server --raw --stop-never, over
   TCP). A thread polls the archive files' sizes every millisecond; for each committed transaction
   (its GTID read in the writer's session) the lag is the time from the commit returning to the
   archive file holding the transaction's last byte. Prints p50 / p99 / max (target p99 <= 1 s).
2. Replay throughput. The source then writes --replay-trx more transactions (a few rows each, plus
   a few bulk ones); the whole archived range is applied into a fresh server by
   mysql_pitr.replay() (what the restore runs after loading its backup) and, into another fresh
   server, by a plain `mariadb-binlog <files> | mariadb` of the same range. Both targets are
   mysql_pitr.ScratchInstance servers (socket only, binlog off), same options. Prints both
   throughputs and the ratio (target >= 0.9).

    python bench/bench_pitr.py [--rate 50] [--seconds 30] [--replay-trx 20000] [--rounds 1]

Nothing is asserted on time; the replay's result (row counts equal) is checked.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(os.path.join(TOP, "plugins", "module_utils"))

from ansible.module_utils.binlog_archive import (  # noqa: E402
    archive_files,
    binlog_binary,
    client_binary,
    prepare_run,
    read_file,
    transactions,
    write_option_file,
)
from ansible.module_utils.mysql_pitr import ArchiveIndex, ScratchInstance, replay, replay_ranges  # noqa: E402

from tests.lib.mariadb import MariaDB  # noqa: E402

TARGET_OPTIONS = ["--innodb-buffer-pool-size=256M", "--innodb-flush-log-at-trx-commit=2"]


class Poller(threading.Thread):
    """Records (monotonic time, file, size) each time an archive file grows."""

    def __init__(self, directory, interval=0.001):
        super().__init__(daemon=True)
        self.directory = directory
        self.interval = interval
        self.samples = []
        self.stopping = threading.Event()

    def run(self):
        sizes = {}
        while not self.stopping.is_set():
            now = time.monotonic()
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            for name in names:
                try:
                    size = os.stat(os.path.join(self.directory, name)).st_size
                except OSError:
                    continue
                if sizes.get(name) != size:
                    sizes[name] = size
                    self.samples.append((now, name, size))
            time.sleep(self.interval)


def archive_position(directory):
    files = archive_files(directory)
    return (files[-1][0], files[-1][1]) if files else (None, 0)


def wait_caught_up(src, directory, timeout=60):
    file, pos = src.sql("SHOW MASTER STATUS")[0][:2]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sizes = dict(archive_files(directory))
        if sizes.get(file, 0) >= pos:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the archive did not reach {file}:{pos} in {timeout}s")


def steady_writer(src, rate, seconds):
    """[(commit time, gtid)] of rate*seconds single-row transactions at a steady pace."""
    conn = src.connect()
    commits = []
    try:
        with conn.cursor() as cur:
            interval = 1.0 / rate
            start = time.monotonic()
            for i in range(int(rate * seconds)):
                due = start + i * interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                cur.execute("INSERT INTO bench.lag (id, payload) VALUES (%s, REPEAT('x', 200))", (i + 1,))
                committed = time.monotonic()
                cur.execute("SELECT @@last_gtid")
                commits.append((committed, cur.fetchone()[0]))
    finally:
        conn.close()
    return commits


def lags(directory, commits, samples):
    ends = {}
    for name, _size in archive_files(directory):
        for trx in transactions(read_file(os.path.join(directory, name))["events"]):
            ends[trx["gtid"]] = (name, trx["end"])
    by_file = {}
    for t, name, size in samples:
        by_file.setdefault(name, []).append((t, size))
    result = []
    for committed, gtid in commits:
        name, end = ends[gtid]
        seen = next(t for t, size in by_file[name] if size >= end)
        result.append(max(0.0, seen - committed))
    return result


def replay_workload(src, small, bulk=10, bulk_rows=20000):
    src.sql("CREATE TABLE bench.small (id INT PRIMARY KEY, a INT, label VARCHAR(64)) ENGINE=InnoDB")
    src.sql("CREATE TABLE bench.bulk (id INT PRIMARY KEY, payload VARCHAR(255)) ENGINE=InnoDB")
    conn = src.connect(database="bench")  # the seq_ tables are found in the current database
    try:
        with conn.cursor() as cur:
            for i in range(small):
                cur.execute(
                    "INSERT INTO bench.small VALUES (%s, %s, 'a'), (%s, %s, 'b'), (%s, %s, 'c')",
                    (3 * i + 1, i, 3 * i + 2, i, 3 * i + 3, i),
                )
            for b in range(bulk):
                lo = b * bulk_rows + 1
                cur.execute(
                    "INSERT INTO bench.bulk SELECT seq, REPEAT(MD5(seq), 6) "
                    f"FROM seq_{lo}_to_{lo + bulk_rows - 1}"
                )
    finally:
        conn.close()


def plain_replay(p, defaults_file):
    """`mariadb-binlog --start-position --stop-position <files> | mariadb`, the same ranges."""
    index = p["index"]
    names = [n for n, _s in index.files]
    for first_file, start, last_file, end, _count in p["ranges"]:
        files = names[names.index(first_file) : names.index(last_file) + 1]
        dump = subprocess.Popen(
            [
                binlog_binary(),
                "--no-defaults",
                f"--start-position={start}",
                f"--stop-position={end}",
                *[os.path.join(index.directory, f) for f in files],
            ],
            stdout=subprocess.PIPE,
        )
        load = subprocess.Popen([client_binary(), f"--defaults-file={defaults_file}"], stdin=dump.stdout)
        dump.stdout.close()
        if load.wait() != 0 or dump.wait() != 0:
            raise RuntimeError("plain mariadb-binlog | mariadb failed")


def counts(instance):
    out = subprocess.run(
        [
            client_binary(),
            f"--defaults-file={instance.defaults_file}",
            "-N",
            "-e",
            "SELECT (SELECT COUNT(*) FROM bench.lag), (SELECT COUNT(*) FROM bench.small), "
            "(SELECT COUNT(*) FROM bench.bulk)",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50, help="writer transactions per second (default 50)")
    parser.add_argument("--seconds", type=float, default=30, help="length of the lag run (default 30)")
    parser.add_argument(
        "--replay-trx", type=int, default=20000, help="small transactions to replay (default 20000)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="replay rounds of both paths (default 1)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="bench-pitr-")
    servers, archiver = [], None
    try:
        src = MariaDB(os.path.join(base, "source"), 1).start()
        servers.append(src)
        src.sql("CREATE DATABASE bench")
        src.sql("CREATE TABLE bench.lag (id INT PRIMARY KEY, payload VARCHAR(255)) ENGINE=InnoDB")

        archive = os.path.join(base, "archive")
        cnf = os.path.join(base, "archiver.cnf")
        write_option_file(cnf, src.tcp)
        argv, reason = prepare_run(dict(directory=archive, defaults_file=cnf, server_id=4242))
        archiver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_caught_up(src, archive)
        print(f"archiver: {reason}")

        # 1. lag
        poller = Poller(archive)
        poller.start()
        commits = steady_writer(src, args.rate, args.seconds)
        wait_caught_up(src, archive)
        time.sleep(0.05)
        poller.stopping.set()
        poller.join()
        lag = lags(archive, commits, poller.samples)
        print(
            f"archive lag, {len(lag)} transactions at {args.rate:g}/s: p50 {pct(lag, 50) * 1000:.1f} ms, "
            f"p99 {pct(lag, 99) * 1000:.1f} ms, max {max(lag) * 1000:.1f} ms, "
            f"mean {statistics.mean(lag) * 1000:.1f} ms  (target p99 <= 1000 ms)"
        )

        # 2. replay
        t0 = time.monotonic()
        replay_workload(src, args.replay_trx)
        wait_caught_up(src, archive)
        print(f"replay workload written in {time.monotonic() - t0:.1f}s")
        archiver.terminate()
        archiver.wait()
        archiver = None
        t0 = time.monotonic()
        index = ArchiveIndex(archive)
        applied = list(range(len(index.trx)))
        p = dict(index=index, ranges=replay_ranges(index.trx, applied), transactions=len(applied))
        mb = sum(size for _n, size in index.files) / 1e6
        print(
            f"archive: {len(index.files)} file(s), {mb:.1f} MB, {len(applied)} transactions "
            f"(indexed in {time.monotonic() - t0:.1f}s)"
        )
        plain_times, module_times = [], []
        for r in range(args.rounds):
            for which in ("plain", "module"):
                inst = ScratchInstance(
                    os.path.join(base, f"t-{which}-{r}"), user="root", options=TARGET_OPTIONS
                )
                inst.check_new()
                inst.create()
                inst.start()
                servers.append(inst)
                started = time.monotonic()
                if which == "plain":
                    plain_replay(p, inst.defaults_file)
                    plain_times.append(time.monotonic() - started)
                    expected = counts(inst)
                else:
                    done = replay(p, inst.defaults_file)
                    module_times.append(time.monotonic() - started)
                    if done != len(applied) or counts(inst) != expected:
                        raise RuntimeError(f"replay result differs: {counts(inst)} vs {expected}")
                inst.remove()
                servers.remove(inst)
        plain, module = min(plain_times), min(module_times)
        n = len(applied)
        print(
            f"plain mariadb-binlog | mariadb : {plain:7.2f} s  {n / plain:8.0f} trx/s  {mb / plain:6.2f} MB/s"
        )
        print(
            f"mysql_pitr.replay              : {module:7.2f} s  {n / module:8.0f} trx/s  "
            f"{mb / module:6.2f} MB/s"
        )
        print(f"ratio (replay / plain throughput): {plain / module:.2f}  (target >= 0.9)")
    finally:
        if archiver is not None:
            archiver.terminate()
            archiver.wait()
        for server in servers:
            if isinstance(server, ScratchInstance):
                server.remove()
            else:
                server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
