"""The failed tests, named at the end of make test.

make test prints its stage table last, and CI's log may hold little more than that table. A failed
test (and a server that died under one) is appended to $BT_FAILURES, set by scripts/make-test.sh,
which prints the file's first lines above the table.
"""
import os


def record_failure(line):
    path = os.environ.get("BT_FAILURES")
    if path:
        with open(path, "a") as handle:
            handle.write(" ".join(str(line).split())[:300] + "\n")
