#!/usr/bin/env python3
"""Benchmark of btw file-system backups on a generated tree.

1. A run on an UNCHANGED tree: btw (manifest, stat first pass) against the tar-and-compare
   approach of the original btw-backup (write a tar of the tree, compare it with the previous
   tar).  Target: ratio <= 0.1.
2. A run after 1% of the files CHANGED: btw type rdiff (scan + hash the candidates + rdiff-backup
   increment) against plain rdiff-backup of the same tree with the same change.  Target: <= 1.1.

Usage: bench/bench_btw.py [--files 5000] [--mb 200] [--repeat 3] [--workdir DIR]
(default small; e.g. --files 50000 --mb 4000 for the issue's full size).  Both sides of a ratio run
with a warm page cache, in alternating order; medians of --repeat runs.  Wall-clock and CPU
seconds (this process plus its commands, from getrusage) are both reported: on a shared machine
CPU seconds are the steadier measure.  Nothing is asserted; the ratios are printed.
"""

import argparse
import filecmp
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    """Adds up the wall-clock time spent in external commands (rdiff-backup, tar)."""

    seconds = 0.0

    def run(self, argv, **kw):
        started = time.perf_counter()
        try:
            return super().run(argv, **kw)
        finally:
            self.seconds += time.perf_counter() - started


def cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(func, *args, **kw):
    """(wall seconds, CPU seconds, result) of func(*args, **kw)."""
    cpu = cpu_seconds()
    started = time.perf_counter()
    out = func(*args, **kw)
    return time.perf_counter() - started, cpu_seconds() - cpu, out


def tar_and_compare(src, previous, new):
    subprocess.run(["tar", "--create", "--file", new, "--format=gnu", "--directory", src, "."], check=True)
    same = filecmp.cmp(previous, new, shallow=False)
    os.unlink(new)
    return same


def report(what, baseline, samples, target, note):
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(
        f"{what}: {baseline} {med['base_wall']:.3f}s wall / {med['base_cpu']:.3f}s CPU, "
        f"btw {med['btw_wall']:.3f}s wall / {med['btw_cpu']:.3f}s CPU ({note})"
    )
    print(
        f"RATIO {what}: btw / {baseline} = {med['btw_wall'] / med['base_wall']:.3f} wall, "
        f"{med['btw_cpu'] / med['base_cpu']:.3f} CPU  (target <= {target})"
    )


def new_samples():
    return {"base_wall": [], "base_cpu": [], "btw_wall": [], "btw_cpu": []}


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
        t_gen, _cpu, paths = timed(generate, src, args.files, args.mb)
        print(
            f"tree: {args.files} files, {args.mb} MB generated in {t_gen:.1f}s; medians of {args.repeat} runs"
        )
        time.sleep(2.5)  # so the first manifest sees no "racy" files

        # 1. unchanged tree
        previous = os.path.join(work, "previous.tar")
        subprocess.run(
            ["tar", "--create", "--file", previous, "--format=gnu", "--directory", src, "."], check=True
        )
        btw_fs.fs_backup("bench", src, root, "tar", "tar", exclude_tag=None)
        samples = new_samples()
        for rep in range(args.repeat):
            for side in ("btw", "base") if rep % 2 else ("base", "btw"):
                if side == "base":
                    wall, cpu, same = timed(tar_and_compare, src, previous, os.path.join(work, "new.tar"))
                    assert same
                else:
                    wall, cpu, result = timed(
                        btw_fs.fs_backup, "bench", src, root, "tar", "tar", exclude_tag=None
                    )
                    assert result["stored"] is False
                samples[side + "_wall"].append(wall)
                samples[side + "_cpu"].append(cpu)
        report(
            "unchanged tree", "tar-and-compare", samples, 0.1, f"btw hashed {result['scan']['hashed']} files"
        )
        os.unlink(previous)

        # 2. 1% of the files changed: both back up the same source after the same change.
        plain = os.path.join(work, "plain-repo")
        plain_cmd = ["rdiff-backup", "backup", src, plain]
        subprocess.run(plain_cmd, check=True, stdout=subprocess.DEVNULL)
        btw_fs.fs_backup("bench", src, root, "rdiff", "rdiff", exclude_tag=None)
        rnd = random.Random(7)
        samples = new_samples()
        overhead = []
        for rep in range(args.repeat):
            time.sleep(1.1)  # rdiff-backup needs a new second per session
            changed = rnd.sample(paths, max(1, int(len(paths) * args.changed_percent / 100)))
            for path in changed:
                with open(path, "ab") as f:
                    f.write(b"changed\n")
            for side in ("btw", "base") if rep % 2 else ("base", "btw"):
                if side == "base":
                    wall, cpu, _ = timed(subprocess.run, plain_cmd, check=True, stdout=subprocess.DEVNULL)
                else:
                    runner = TimingRunner()
                    wall, cpu, result = timed(
                        btw_fs.fs_backup,
                        "bench",
                        src,
                        root,
                        "rdiff",
                        "rdiff",
                        exclude_tag=None,
                        runner=runner,
                    )
                    assert result["stored"] and not result["full"], result
                    overhead.append(wall - runner.seconds)
                samples[side + "_wall"].append(wall)
                samples[side + "_cpu"].append(cpu)
        report(
            f"{len(changed)} files ({args.changed_percent:g}%) changed",
            "plain rdiff-backup",
            samples,
            1.1,
            f"btw's own work outside rdiff-backup {statistics.median(overhead):.3f}s wall, "
            f"hashed {result['scan']['hashed']} files",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
