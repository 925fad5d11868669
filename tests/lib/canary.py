"""The suite-wide secret canary: every password, token and secret key the integration tests use.

Each secret is made here (``canary("name")``: ``CANARY-name``) or, when a server imposes its own
format (a Seafile sync token is 40 hex digits), registered here (``register(value)``). The autouse
fixture in tests/integration/conftest.py points ANSIBLE_LOG_PATH at a log in the test's tmp_path,
so every ansible-playbook / ansible-runner child of the test appends its display output there, and
after the test calls ``find_leaks``: a test fails when any registered value is in

- that log (the output of every playbook run of the test, at the verbosity the test chose);
- a file under the test's tmp_path that others can read (o+r, in directories others can search
  below tmp_path), whoever wrote it;
- an output file the toolkit writes whatever its mode: backup_runs records, reports, progress
  files, metrics (``OUTPUT_NAME``).

A file holding a secret on purpose (an option file, a vars file the test wrote) passes only when it
is not readable by others.
"""
import os
import re
import stat

PREFIX = "CANARY-"

_VALUES = set()


def canary(name):
    """A canary secret named ``name`` (letters, digits and ``-_.';`` only), registered."""
    value = PREFIX + name
    _VALUES.add(value)
    return value


def register(*values):
    """Register secrets a server or a format made (a Seafile sync token, a generated key); returned
    as given (the first one alone when only one)."""
    for value in values:
        if not value or len(value) < 6:
            raise ValueError(f"a canary must be at least 6 characters long: {value!r}")
        _VALUES.add(value)
    return values[0] if len(values) == 1 else values


def open_private(path):
    """A file opened for writing that may hold a secret on purpose: readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w")


def write_private(path, text):
    """Write a file that holds a secret on purpose (an inventory, an option file): 0600."""
    with open_private(path) as handle:
        handle.write(text)
    return path


def values():
    return frozenset(_VALUES)


# Any canary-shaped text, registered here or not (the molecule scenarios name theirs in YAML).
ANY_CANARY = re.compile(re.escape(PREFIX).encode() + rb"[A-Za-z0-9_.';-]+")


# The toolkit's output files: a canary in one of them is a leak whatever the file's mode.
OUTPUT_NAME = re.compile(r"(\.prom$|report|progress|backup_runs|\.state\.json$)", re.IGNORECASE)
# A file larger than this is read up to this size only (a MariaDB datadir's ibdata, a test's big
# payload file): a leak is text the toolkit wrote, at the start of what it wrote.
READ_LIMIT = 8 * 1024 * 1024
_SKIP_DIRS = {"__pycache__"}


def _pattern():
    return re.compile(b"|".join(re.escape(v.encode()) for v in sorted(_VALUES, key=len, reverse=True)))


def _scan(path, pattern, reason, findings, limit=READ_LIMIT):
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit)
    except OSError:
        return
    for match in {m.group(0) for m in pattern.finditer(data)}:
        findings.append(f"{path}: {reason} holds the canary {match.decode(errors='replace')!r}")


def scan_output(path):
    """The canaries in a run's output file (a molecule scenario's log): any ``CANARY-<name>`` and
    every registered value. A list of sentences, empty when none."""
    findings = []
    pattern = re.compile(b"|".join([ANY_CANARY.pattern] + [re.escape(v.encode()) for v in sorted(_VALUES)]))
    _scan(path, pattern, "the output", findings, limit=-1)
    return findings


def find_leaks(roots=(), logs=()):
    """Every place a registered canary leaked: a list of sentences, empty when none did.

    ``logs``: files checked whatever their mode (the playbook output log). ``roots``: directories
    walked; a regular file under them is checked when readable by others or named like an output of
    the toolkit (``OUTPUT_NAME``); files in ``logs`` are not checked twice."""
    if not _VALUES:
        return []
    pattern = _pattern()
    findings = []
    seen = set()
    for log in logs:
        log = os.path.realpath(log)
        seen.add(log)
        if os.path.isfile(log):
            _scan(log, pattern, "the playbook output", findings)
    for root in roots:
        # reachable by others: every directory below the root searchable by others (o+x); the root
        # itself (pytest makes tmp_path 0700) stands for wherever the files would be in production
        reachable = {os.path.normpath(str(root)): True}
        for directory, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            open_here = reachable.get(os.path.normpath(directory), False)
            for name in dirs:
                sub = os.path.join(directory, name)
                try:
                    reachable[os.path.normpath(sub)] = open_here and bool(os.stat(sub).st_mode & stat.S_IXOTH)
                except OSError:
                    reachable[os.path.normpath(sub)] = False
            for name in files:
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or os.path.realpath(path) in seen:
                    continue
                if open_here and info.st_mode & stat.S_IROTH:
                    _scan(path, pattern, f"a file readable by others ({stat.S_IMODE(info.st_mode):04o})",
                          findings)
                elif OUTPUT_NAME.search(name):
                    _scan(path, pattern, "an output file (record, report, progress or metrics)", findings)
    return findings


# The secrets every integration test shares (MariaDB root over TCP, PostgreSQL, the S3 secret key
# of the moto server, the vault password of the runner tests).
MARIADB_ROOT = canary("mariadb-root-pw")
POSTGRES = canary("postgres-pw")
S3_SECRET_KEY = canary("s3-secret-key")
VAULT = canary("vault-pw")
# The example lab inventory's passwords (inventories/lab/group_vars/all.yml), which the Seafile lab
# tests use as they are.
LAB_INVENTORY = register("lab-repl-password", "lab-admin-password")


if __name__ == "__main__":  # python -m tests.lib.canary LOG...: the molecule scenarios' output check
    import sys

    leaks = [line for log in sys.argv[1:] for line in scan_output(log)]
    for line in leaks:
        print(f"secret canary: {line}", file=sys.stderr)
    sys.exit(1 if leaks else 0)
