#!/usr/bin/env python3
"""Benchmark: what progress reporting costs a long copy.

Baseline: copy a file in 1 MiB chunks. Project: the same copy calling ProgressFile.update() after
every chunk (plugins/module_utils/progress.py, the default min_interval of 1 s, so the file is
rewritten about once a second), and a worst case with min_interval=0 (rewritten after every chunk).
Also: time to record one run in a metrics file holding 50 strategy/set series.
Target: ratio <= 1.02 with the default interval. Nothing is asserted; figures are printed.

Usage: bench/bench_progress.py [--mb 256] [--repeat 8] [--workdir DIR]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(os.path.join(TOP, "plugins", "module_utils"))
from ansible.module_utils import backup_metrics, progress  # noqa: E402

CHUNK = 1024 * 1024


def copy(src, dst, on_chunk=None):
    done = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            block = fin.read(CHUNK)
            if not block:
                break
            fout.write(block)
            done += len(block)
            if on_chunk:
                on_chunk(done)
        fout.flush()
        os.fsync(fout.fileno())


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns, repeat):
    """Medians of the functions run in turn, in a rotating order, so machine load and the position
    after the previous copy's write-back hit them alike."""
    times = [[] for _ in fns]
    for r in range(repeat):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-progress-", dir=args.workdir)
    try:
        src = os.path.join(work, "src.bin")
        with open(src, "wb") as handle:
            for _ in range(args.mb):
                handle.write(os.urandom(CHUNK))
        dst = os.path.join(work, "dst.bin")
        path = os.path.join(work, "copy.progress")
        total = args.mb * CHUNK

        def with_progress(interval):
            def run():
                prog = progress.ProgressFile(path, "copy", total_bytes=total, min_interval=interval)
                copy(src, dst, prog.update)
                prog.finish()
            return run

        copy(src, dst)  # warm the page cache
        variants = [lambda: copy(src, dst), lambda: copy(src, dst), with_progress(1.0), with_progress(0.0)]
        base, again, default, every = interleaved(variants, args.repeat)
        print(f"copy of {args.mb} MiB in 1 MiB chunks, median of {args.repeat}")
        print(f"  baseline (no progress)            {base:8.3f} s")
        print(f"  baseline again (noise)            {again:8.3f} s   ratio {again / base:.3f}")
        print(f"  progress, min_interval 1 s        {default:8.3f} s   ratio {default / base:.3f}"
              " (target <= 1.02)")
        print(f"  progress, rewritten every chunk   {every:8.3f} s   ratio {every / base:.3f}")

        collector = os.path.join(work, "textfile")
        os.mkdir(collector)
        runs = [{"strategy": f"s{i % 6}", "set": f"set{i}", "result": "ok", "size_bytes": i,
                 "duration_seconds": 1} for i in range(50)]
        backup_metrics.record(collector, runs)
        one = timed(lambda: backup_metrics.record(collector, [runs[7]]), max(args.repeat, 10))
        print(f"metrics: record one run into a file of 50 series: {one * 1000:.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
