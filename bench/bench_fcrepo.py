#!/usr/bin/env python3
"""Benchmark of fcrepo backups against plain copies, measured in one process on the same data.

LevelDB (a generated store of --size-mb, default 1024 MB, values of --value-size bytes):
  baseline  `cp -r` of the store, `sync -f` on the destination (the backup's durability: a backup
            that is not on disk is not a backup), then one plain checksum iteration of the copy
            (plyvel, verify_checksums=True)
  full      leveldb_backup core: consistent copy (manifest check), fsync, checksum verification
            of every record, rename to *.sst, metadata, rename into place
  ratio     full / baseline                                      (target <= 1.3)
  incremental: 5% new objects with new keys after the existing ones, then an incremental backup
            (tables hard-linked, verify=changed); then 5% new data at random keys, which makes
            LevelDB's compaction rewrite most tables, and another incremental
  ratio     incremental / full                                   (target <= 0.15)
Binary store (--binaries files of 4-12 KB, default 20000):
  baseline  `cp -r`, `sync -f` on the destination, then `sha1sum` of every copied file
  ours      fcrepo_binaries core (copy + SHA-1 fixity in one pass, durable, renamed into place)
Caches stay warm (shared machine: no cache dropping); each figure is the best of --repeat rounds
(default 4), the order of the two sides alternating from round to round, and each round's ratio is
printed with their median; every copy goes to a new name and nothing is deleted until the end
(see paired(); about 10 GB at the defaults); everything written before a timed part (generated
data, the other side's copy) is synced first.
At 215 MB the baselines took 0.3 s, too short to measure well: the defaults are 1 GB and 20,000
binaries (issue 14).
Usage: bench/bench_fcrepo.py [--size-mb 1024] [--binaries 20000] [--repeat 4] [--workdir DIR]
"""
import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)
import ansible.module_utils  # noqa: E402

if os.path.join(TOP, "plugins", "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(TOP, "plugins", "module_utils"))
import plyvel  # noqa: E402
from ansible.module_utils import fcrepo_binaries as fb  # noqa: E402
from ansible.module_utils import leveldb_backup as lb  # noqa: E402


def generate_leveldb(path, size_mb, value_size, start=0, seed=7, append=False):
    """Random keys (spread over the whole key space), or with append=True new keys after all
    existing ones (new objects with increasing identifiers)."""
    rng = random.Random(seed + start)
    count = size_mb * 1024 * 1024 // value_size
    db = plyvel.DB(path, create_if_missing=True)
    try:
        for base in range(start, start + count, 1000):
            with db.write_batch() as batch:
                for i in range(base, min(base + 1000, start + count)):
                    number = i if append else rng.randrange(10**12)
                    key = (b"info:fedora/new/%012d" if append else b"info:fedora/obj/%012d") % number
                    batch.put(key, rng.randbytes(value_size))
    finally:
        db.close()
    return count


def generate_binaries(root, count, seed=11):
    rng = random.Random(seed)
    total = 0
    for _ in range(count):
        data = rng.randbytes(4097 + rng.randrange(8192))
        sha = hashlib.sha1(data).hexdigest()  # noqa: S324
        target = os.path.join(root, fb.shard_path(sha))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
        total += len(data)
    return total


def timed(func):
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def paired(repeat, baseline, ours):
    """Run baseline(round) and ours(round) in rounds, each round's copies under new names (the
    callables make them from the round number), and keep the best time of each side and each
    round's ratio. Nothing is deleted between rounds: on a filesystem without a journal (this
    machine's root) ext4 skips the inodes freed in the last minute when it allocates one, and a
    copy made right after tens of thousands of files were deleted spent most of its time there
    (cp -r of the binaries 5, 16, then 25 s in three rounds that each followed a deletion). The
    order alternates from round to round, ours last (the incremental figures start from its
    backup): the filesystem still drifts, and a fixed order would give one side the faster slot.
    Before each side, os.sync(): it pays only for writing its own copy.
    Returns (best base, its result, best ours, its result, [ratios])."""
    base_times, our_times, ratios, results = [], [], [], {}
    for round_no in range(repeat):
        order = ("base", "ours") if (repeat - round_no) % 2 == 1 else ("ours", "base")
        seconds = {}
        for side in order:
            os.sync()
            run = baseline if side == "base" else ours
            start = time.perf_counter()
            results[side] = run(round_no)
            seconds[side] = time.perf_counter() - start
        base_times.append(seconds["base"])
        our_times.append(seconds["ours"])
        ratios.append(seconds["ours"] / seconds["base"])
    return min(base_times), results["base"], min(our_times), results["ours"], ratios


def describe(ratios):
    """The median of the rounds' ratios and each one, e.g. 'median 1.12 (1.30 0.98 1.12 1.05)'."""
    return f"median {statistics.median(ratios):.2f} ({' '.join(f'{r:.2f}' for r in ratios)})"


def plain_copy_and_iterate(src, dst):
    subprocess.run(["cp", "-r", src, dst], check=True)
    subprocess.run(["sync", "-f", dst], check=True)
    db = plyvel.DB(dst, create_if_missing=False)
    try:
        return sum(1 for _ in db.iterator(verify_checksums=True, fill_cache=False))
    finally:
        db.close()


def plain_copy_and_sha1sum(src, dst):
    subprocess.run(["cp", "-r", src, dst], check=True)
    subprocess.run(["sync", "-f", dst], check=True)
    files = [os.path.join(d, f) for d, _s, fs in os.walk(dst) for f in fs]
    for chunk in range(0, len(files), 500):
        subprocess.run(["sha1sum", *files[chunk:chunk + 500]], check=True, stdout=subprocess.DEVNULL)
    return len(files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--binaries", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bench-fcrepo-", dir=args.workdir)
    try:
        src = os.path.join(work, "leveldb")
        print(f"generating a LevelDB of about {args.size_mb} MB ...", flush=True)
        records = generate_leveldb(src, args.size_mb, args.value_size)
        size = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src))
        print(f"  {records} records, {size / 2**20:.0f} MB in {len(os.listdir(src))} files")

        dest = os.path.join(work, "backups")
        base_s, base_n, full_s, full, full_ratios = paired(
            args.repeat, lambda n: plain_copy_and_iterate(src, os.path.join(work, f"plain{n}")),
            lambda n: lb.backup(src, dest, name=f"full{n}", incremental=False, verify="full"))
        assert full["records"] == base_n, (full["records"], base_n)

        five = max(1, args.size_mb * 5 // 100)
        print(f"adding 5% new objects ({five} MB, new keys after the existing ones) ...", flush=True)
        generate_leveldb(src, five, args.value_size, start=10**7, append=True)
        os.sync()  # the generator's writes are on disk: the backup's fsyncs pay only for its own data
        app_s, app = timed(lambda: lb.backup(src, dest, name="inc-append", verify="changed"))
        assert lb.verify_backup(app["path"])["ok"]
        print(f"adding 5% new data at random keys ({five} MB) ...", flush=True)
        generate_leveldb(src, five, args.value_size, start=2 * 10**7)
        os.sync()
        inc_s, inc = timed(lambda: lb.backup(src, dest, name="inc-random", verify="changed"))
        check = lb.verify_backup(inc["path"])
        assert check["ok"], check

        bin_src = os.path.join(work, "binaries")
        print(f"generating {args.binaries} binaries ...", flush=True)
        bin_bytes = generate_binaries(bin_src, args.binaries)
        os.sync()
        bplain_s, _, bours_s, bours, bin_ratios = paired(
            args.repeat, lambda n: plain_copy_and_sha1sum(bin_src, os.path.join(work, f"binaries-plain{n}")),
            lambda n: fb.backup(bin_src, os.path.join(work, f"binaries-backup{n}")))
        bin_dest = os.path.join(work, f"binaries-backup{args.repeat - 1}")
        assert bours["copied"] == args.binaries and not bours["mismatches"]
        generate_binaries(bin_src, args.binaries // 20, seed=12)
        os.sync()
        binc_s, binc = timed(lambda: fb.backup(bin_src, bin_dest))

        print()
        print(f"LevelDB {size / 2**20:.0f} MB, {records} records (best of {args.repeat})")
        print(f"  baseline cp -r + checksum iteration : {base_s:7.2f} s")
        print(f"  full consistent verified backup     : {full_s:7.2f} s  (copy {full['copy_seconds']:.2f} s, "
              f"verify {full['verify_seconds']:.2f} s, attempts {full['attempts']})")
        print(f"  ratio full / baseline               : {full_s / base_s:7.2f}   (target <= 1.3)")
        print(f"  ratio of each round                 : {describe(full_ratios)}")
        for label, secs, rep in (("5% new objects (appended keys)", app_s, app),
                                 ("5% new data at random keys", inc_s, inc)):
            print(f"  incremental, {label:31s}: {secs:6.2f} s  ratio to full {secs / full_s:5.2f} "
                  f"(target <= 0.15); copied {rep['bytes_copied'] / 2**20:.0f} MB, "
                  f"linked {rep['bytes_linked'] / 2**20:.0f} MB")
        print(f"Binary store {args.binaries} files, {bin_bytes / 2**20:.0f} MB")
        print(f"  baseline cp -r + sha1sum            : {bplain_s:7.2f} s")
        print(f"  backup with SHA-1 fixity            : {bours_s:7.2f} s")
        print(f"  ratio                               : {bours_s / bplain_s:7.2f}   (target <= 1.3)")
        print(f"  ratio of each round                 : {describe(bin_ratios)}")
        print(f"  incremental (+5% files)             : {binc_s:7.2f} s  (copied {binc['copied']}, "
              f"ratio to full {binc_s / bours_s:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
