#!/usr/bin/env bash
# pytest as make runs it: its own base temp directory under /tmp (short paths: a MariaDB socket path
# in a test's directory must stay under 108 bytes, and xdist adds popen-gwN/; concurrent runs
# sharing /tmp/pytest-of-root would prune each other's directories). A passed test's directory is
# removed as soon as it has passed (tests/conftest.py), so the run's disk use does not add up over
# its hundreds of MariaDB datadirs; the base directory goes when the run passes. A failed run keeps
# it, holding only the failed tests' directories, and says where.
set -uo pipefail
base=$(mktemp -d /tmp/bt-pytest.XXXXXX)
python -m pytest -p no:cacheprovider --basetemp="$base" "$@"
rc=$?
if [ "$rc" = 0 ]; then
  rm -rf "$base"
else
  echo "pytest: exit $rc; the failed tests' directories are kept under $base" >&2
fi
exit "$rc"
