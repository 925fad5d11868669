#!/usr/bin/env python3
"""Benchmark of btw file-system backups on a generated tree.

1. A run on an UNCHANGED tree: btw (manifest, stat first pass) against the tar-and-compare
   approach of the original btw-backup (write a tar of the tree, compare it with the previous
   tar).  Target: ratio <= 0.1.
2. A run after 1% of the files CHANGED: btw type rdiff (scan + hash the candidates + rdiff-backup
   increment) against plain rdiff-backup of the same tree with the same change.  Target: <= 1.1.

Usage: bench/bench_btw.py [--files 5000] [--mb 200] [--workdir DIR]
(default small; e.g. --files 50000 --mb 4000 for the issue's full size).  Warm page cache for
both sides of each ratio; nothing is asserted, the ratios are printed.
"""

import argparse
import filecmp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "plugins", "module_utils"))
import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(os.path.join(TOP, "plugins", "module_utils"))
from ansible.module_utils import btw_fs  # noqa: E402


def generate(src, files, total_mb, seed=6):
    rnd = random.Random(seed)
    avg = total_mb * 1024 * 1024 // files
    block = os.urandom(1 << 20)
    paths = []
    for i in range(files):
        d = os.path.join(src, f"d{i % 50:02d}", f"e{i % 7}")
        os.makedirs(d, exist_ok=True)
        size = max(1, int(rnd.expovariate(1 / avg)))
        path = os.path.join(d, f"f{i:06d}.dat")
        with open(path, "wb") as f:
            left = size
            off = rnd.randrange(0, len(block))
            while left:
                chunk = block[off : off + left] or block[:left]
                f.write(chunk)
                left -= len(chunk)
                off = 0
        paths.append(path)
    return paths


class TimingRunner(btw_fs.Runner):
    """Adds up the time spent in external commands (rdiff-backup, tar)."""

    seconds = 0.0

    def run(self, argv, **kw):
        started = time.perf_counter()
        try:
            return super().run(argv, **kw)
        finally:
            self.seconds += time.perf_counter() - started


def timed(func, *args, **kw):
    started = time.perf_counter()
    out = func(*args, **kw)
    return time.perf_counter() - started, out


def tar_and_compare(src, previous, new):
    subprocess.run(["tar", "--create", "--file", new, "--format=gnu", "--directory", src, "."], check=True)
    same = filecmp.cmp(previous, new, shallow=False)
    os.unlink(new)
    return same


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--changed-percent", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="where to build the tree (default a temp dir)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-btw-", dir=args.workdir)
    try:
        src, root = os.path.join(work, "src"), os.path.join(work, "root")
        os.makedirs(root)
        t_gen, paths = timed(generate, src, args.files, args.mb)
        print(f"tree: {args.files} files, {args.mb} MB generated in {t_gen:.1f}s ({work})")
        time.sleep(2.5)  # so the first manifest sees no "racy" files

        # 1. unchanged tree (median of --repeat runs each)
        previous = os.path.join(work, "previous.tar")
        subprocess.run(
            ["tar", "--create", "--file", previous, "--format=gnu", "--directory", src, "."], check=True
        )
        btw_fs.fs_backup("bench", src, root, "tar", "tar", exclude_tag=None)
        base, ours = [], []
        for _ in range(args.repeat):
            t_base, same = timed(tar_and_compare, src, previous, os.path.join(work, "new.tar"))
            t_btw, result = timed(btw_fs.fs_backup, "bench", src, root, "tar", "tar", exclude_tag=None)
            assert same and result["stored"] is False
            base.append(t_base)
            ours.append(t_btw)
        t_base, t_btw = statistics.median(base), statistics.median(ours)
        print(
            f"unchanged tree: tar-and-compare {t_base:.3f}s, btw {t_btw:.3f}s "
            f"(hashed {result['scan']['hashed']} files; medians of {args.repeat})"
        )
        print(f"RATIO unchanged btw / tar-and-compare = {t_btw / t_base:.3f}  (target <= 0.1)")
        os.unlink(previous)

        # 2. 1% of the files changed: both back up the same source after the same change; the
        # order alternates between repetitions (the machine is shared: rdiff-backup's own time varies).
        plain = os.path.join(work, "plain-repo")
        subprocess.run(["rdiff-backup", "backup", src, plain], check=True, stdout=subprocess.DEVNULL)
        btw_fs.fs_backup("bench", src, root, "rdiff", "rdiff", exclude_tag=None)
        rnd = random.Random(7)
        base, ours, overhead = [], [], []
        for rep in range(args.repeat):
            time.sleep(1.1)  # rdiff-backup needs a new second per session
            changed = rnd.sample(paths, max(1, int(len(paths) * args.changed_percent / 100)))
            for path in changed:
                with open(path, "ab") as f:
                    f.write(b"changed\n")
            runner = TimingRunner()
            plain_cmd = ["rdiff-backup", "backup", src, plain]
            if rep % 2:
                t_btw2, result = timed(
                    btw_fs.fs_backup, "bench", src, root, "rdiff", "rdiff", exclude_tag=None, runner=runner
                )
                t_plain, _ = timed(subprocess.run, plain_cmd, check=True, stdout=subprocess.DEVNULL)
            else:
                t_plain, _ = timed(subprocess.run, plain_cmd, check=True, stdout=subprocess.DEVNULL)
                t_btw2, result = timed(
                    btw_fs.fs_backup, "bench", src, root, "rdiff", "rdiff", exclude_tag=None, runner=runner
                )
            assert result["stored"] and not result["full"], result
            base.append(t_plain)
            ours.append(t_btw2)
            overhead.append(t_btw2 - runner.seconds)
        t_plain, t_btw2 = statistics.median(base), statistics.median(ours)
        print(
            f"{len(changed)} files changed: plain rdiff-backup {t_plain:.3f}s, btw rdiff {t_btw2:.3f}s "
            f"(of which btw's own work outside rdiff-backup {statistics.median(overhead):.3f}s; "
            f"hashed {result['scan']['hashed']} files; medians of {args.repeat})"
        )
        print(f"RATIO 1% changed btw / plain rdiff-backup = {t_btw2 / t_plain:.3f}  (target <= 1.1)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
