#!/usr/bin/env python3
"""Stand-in for fcrepo's write load on its LevelDB store (fcrepo itself is Java and not installable here).

Writes keys k0000000000, k0000000001, ... with random values into a LevelDB with a small write
buffer, and after each new key rewrites a random older one (overlapping key ranges), so memtable
flushes happen every few hundred writes and compactions every few flushes. After every write
that returned, the number of keys written so far is published atomically in --progress: every key
below that number is durable in the store's files (log or tables).

Signals: SIGUSR1 pauses writing (background compaction carries on, like fcrepo with ingest paused),
SIGUSR2 resumes, SIGTERM/SIGINT close the store cleanly and exit.
Usage: fcrepo_writer.py DB_DIR --progress FILE [--value-size 400] [--max-keys N] [--delay 0]
"""
import argparse
import os
import random
import signal
import sys
import time

import plyvel

state = {"paused": False, "stop": False}


def _publish(path, count):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(str(count))
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--progress", required=True)
    parser.add_argument("--value-size", type=int, default=400)
    parser.add_argument("--max-keys", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--write-buffer-size", type=int, default=64 * 1024)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGUSR1, lambda *_: state.update(paused=True))
    signal.signal(signal.SIGUSR2, lambda *_: state.update(paused=False))
    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    signal.signal(signal.SIGINT, lambda *_: state.update(stop=True))

    db = plyvel.DB(args.db, create_if_missing=True, write_buffer_size=args.write_buffer_size,
                   max_file_size=256 * 1024)
    count = 0
    with db.iterator(include_value=False, reverse=True) as it:  # resume after a restart
        for key in it:
            count = int(key[1:]) + 1
            break
    _publish(args.progress, count)
    try:
        while not state["stop"] and (not args.max_keys or count < args.max_keys):
            if state["paused"]:
                time.sleep(0.05)
                continue
            db.put(b"k%010d" % count, os.urandom(args.value_size // 2).hex().encode())
            if count:  # also update an older object: overlapping key ranges make LevelDB compact
                db.put(b"k%010d" % random.randrange(count), os.urandom(args.value_size // 2).hex().encode())
            count += 1
            _publish(args.progress, count)
            if args.delay:
                time.sleep(args.delay)
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
