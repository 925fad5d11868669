"""File-system backups with skip-if-unchanged ("btw-backup" style), as a pure-Python core.

A backup set stores into ``<root>/<destination>``.  Two types:

* ``tar``: one archive per backup, ``<name>-<YYYYmmddTHHMMSSZ>.tar[.gz|.zst]``, written under a
  hidden temporary name and renamed into place only when complete.
* ``rdiff``: rdiff-backup repositories ("chains") ``chain-<YYYYmmddTHHMMSSZ>/``; a new chain (a
  new full backup) starts when the current one holds ``max_incremental_count`` increments or
  spans more than ``max_incremental_span``.

Change detection needs no archive: a manifest of every path (type, mode, owner, size, mtime,
symlink target, sha256 of file content) is stored beside the backups (``.btw-manifest.json``).
The cheap first pass compares ``lstat`` results; the content of a file is hashed only when its
stat differs from the manifest, including ``ctime`` and inode, which user space cannot set back,
so a file rewritten with its size and mtime restored is still hashed and found changed.  When
nothing changed, nothing is stored and a note is appended to ``log.txt``.

A directory holding the exclude tag file (default ``.btw-nobackup``) is left out entirely
(GNU tar ``--exclude-tag-all``, rdiff-backup ``--exclude-if-present``).

Everything raises ``BtwError`` with an operator-facing message.  Commands run through an
injected runner with argument lists.
"""

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import time

from ansible.module_utils.fs_sync import fsync_dir

MANIFEST = ".btw-manifest.json"
LOG = "log.txt"
DEFAULT_EXCLUDE_TAG = ".btw-nobackup"
DEFAULT_MAX_INCREMENTAL_COUNT = 10
DEFAULT_MAX_INCREMENTAL_SPAN = "24h"
TYPES = ("tar", "rdiff")
COMPRESSIONS = {"none": ("", []), "gzip": (".gz", ["--gzip"]), "zstd": (".zst", ["--zstd"])}
CHAIN_PREFIX = "chain-"
PARTIAL_PREFIX = ".partial-"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP_RE = r"\d{8}T\d{6}Z"
# A file whose ctime is this close to the scan that recorded it is re-hashed next time
# (it may have changed again within the same clock tick: git's "racy clean" problem).
RACY_NS = 2 * 10**9
HASH_CHUNK = 1 << 20


class BtwError(Exception):
    """An operator-facing error of a btw backup operation."""


# ---------------------------------------------------------------------------------------------
# Commands


class Runner:
    """Run commands from argument lists (never a shell).  Tests may inject a recording runner."""

    def run(self, argv, env=None, cwd=None, stdout_path=None, stdin_path=None):
        """Run argv; return (rc, stdout, stderr).  With stdout_path, stdout goes to that file."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        if stdin_path:
            with open(stdin_path, "rb") as stdin:
                proc = subprocess.run(
                    argv, env=full_env, cwd=cwd, stdin=stdin, capture_output=True, check=False
                )
            return (
                proc.returncode,
                proc.stdout.decode("utf-8", "replace"),
                proc.stderr.decode("utf-8", "replace"),
            )
        try:
            if stdout_path:
                fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    proc = subprocess.run(
                        argv, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.PIPE, check=False
                    )
                    out.flush()
                    os.fsync(out.fileno())
                return proc.returncode, "", proc.stderr.decode("utf-8", "replace")
            proc = subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, check=False)
        except FileNotFoundError as exc:
            raise BtwError(f"command not found: {argv[0]} (install it, e.g. scripts/setup.sh)") from exc
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    def stream(self, argv, env=None):
        """Run argv and yield its stdout line by line (bytes); raise BtwError if it fails."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError as exc:
            raise BtwError(f"command not found: {argv[0]}") from exc
        try:
            yield from proc.stdout
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode("utf-8", "replace")
            proc.stderr.close()
            rc = proc.wait()
        if rc != 0:
            raise BtwError(f"{os.path.basename(argv[0])} failed (rc={rc}): {err.strip()[-800:]}")


# ---------------------------------------------------------------------------------------------
# Input checks

_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPAN_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_span(text):
    """'90m', '36h', '7d', '1d12h', '2w' or a number of seconds -> seconds (float)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise BtwError(f"time span {text!r} must be positive")
        return float(text)
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    else:
        compact = value.replace(" ", "")
        parts = _SPAN_RE.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise BtwError(
                f"cannot parse time span {text!r}: use a number and a unit, e.g. "
                "90m, 36h, 7d, 1d12h, 2w (s, m, h, d, w)"
            )
        seconds = sum(float(n) * _SPAN_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise BtwError(f"time span {text!r} must be positive")
    return seconds


def parse_owner(owner):
    """'user:group', 'user', 'uid:gid' or ':group' -> (uid, gid); -1 keeps that part unchanged."""
    if not owner:
        return None
    user, _, group = str(owner).partition(":")
    uid = gid = -1
    try:
        if user:
            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        elif user and not user.isdigit():
            gid = pwd.getpwnam(user).pw_gid
    except KeyError as exc:
        raise BtwError(f"owner {owner!r}: unknown user or group {exc}") from exc
    return uid, gid


def resolve_destination(root, destination):
    """Destination relative to the configured root; never outside it."""
    if not root or not os.path.isabs(root):
        raise BtwError(f"root {root!r} must be an absolute path")
    if not destination or os.path.isabs(destination):
        raise BtwError(f"destination {destination!r} must be a path relative to root {root}")
    real_root = os.path.realpath(root)
    dest = os.path.realpath(os.path.join(real_root, destination))
    if dest == real_root or not dest.startswith(real_root + os.sep):
        raise BtwError(f"destination {destination!r} escapes root {root}")
    return dest


def check_source(source, dest):
    """The source must be an existing directory and must not contain the destination."""
    if not source or not os.path.isabs(source):
        raise BtwError(f"source {source!r} must be an absolute path")
    if not os.path.isdir(source):
        raise BtwError(f"source {source} does not exist or is not a directory")
    real_source = os.path.realpath(source)
    if dest == real_source or dest.startswith(real_source.rstrip(os.sep) + os.sep):
        raise BtwError(f"destination {dest} is inside the source {source}: it would back itself up")
    if real_source.startswith(dest + os.sep):
        raise BtwError(f"source {source} is inside the destination {dest}")
    return real_source


def validate_policy(max_incremental_count, max_incremental_span):
    try:
        count = int(max_incremental_count)
    except (TypeError, ValueError) as exc:
        raise BtwError(f"max_incremental_count {max_incremental_count!r} is not a number") from exc
    if count < 0:
        raise BtwError(f"max_incremental_count {count} must be >= 0")
    return count, parse_span(max_incremental_span)


# ---------------------------------------------------------------------------------------------
# Small file helpers


def write_atomic(path, data, mode=0o600):
    """Write bytes to a hidden temp name beside path, fsync, rename into place."""
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def append_log(dest, message, now=None):
    """Append a timestamped line to <dest>/log.txt (fsync'd)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now or time.time()))
    path = os.path.join(dest, LOG)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{stamp} {message}\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def ensure_dir(path, mode=0o700):
    if not os.path.isdir(path):
        os.makedirs(path, mode=mode, exist_ok=True)
    return path


def apply_owner(paths, owner_ids, recursive=False):
    """chown (lchown) the given paths (recursively for directories) to (uid, gid)."""
    if not owner_ids:
        return
    uid, gid = owner_ids
    for path in paths:
        if not os.path.lexists(path):
            continue
        os.lchown(path, uid, gid)
        if recursive and os.path.isdir(path) and not os.path.islink(path):
            for top, dirs, files in os.walk(path):
                for entry in dirs + files:
                    os.lchown(os.path.join(top, entry), uid, gid)


def tree_size(path):
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(HASH_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def utc_stamp(now=None):
    return time.strftime(STAMP_FORMAT, time.gmtime(now if now is not None else time.time()))


def stamp_epoch(stamp):
    return float(time.mktime(time.strptime(stamp, STAMP_FORMAT)) - time.timezone)


def remove_partials(dest):
    """Remove leftovers of interrupted runs (hidden, never mistaken for backups)."""
    removed = []
    for entry in os.listdir(dest):
        if entry.startswith(PARTIAL_PREFIX) or (entry.startswith(".") and ".tmp-" in entry):
            path = os.path.join(dest, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------
# Manifest

# entry: [kind, mode, uid, gid, size, mtime_ns, ctime_ns, ino, content]
# kind: f file, d directory, l symlink, o other; content: sha256 (f), link target (l), "" otherwise
_KIND, _MODE, _UID, _GID, _SIZE, _MTIME, _CTIME, _INO, _CONTENT = range(9)


def scan_tree(source, exclude_tag=DEFAULT_EXCLUDE_TAG, old_entries=None, racy_limit_ns=0, hash_all=False):
    """Walk source without following symlinks: ({relpath: entry}, [relpaths to hash]).

    A directory containing exclude_tag is left out entirely (with its own entry).  A regular file
    whose stat equals its old entry (and that was not racy) takes the old content hash; the others
    are returned to be hashed.  One pass, few function calls: this is the whole cost of a run on
    an unchanged tree.
    """
    old_get = (old_entries or {}).get
    reuse = not hash_all
    entries = {}
    to_hash = []
    stack = [""]
    lexists, join, readlink = os.path.lexists, os.path.join, os.readlink
    s_isreg, s_isdir, s_islnk = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK
    while stack:
        rel_dir = stack.pop()
        abs_dir = join(source, rel_dir) if rel_dir else source
        prefix = rel_dir + "/" if rel_dir else ""
        try:
            with os.scandir(abs_dir) as it:
                children = list(it)
        except OSError as exc:
            raise BtwError(f"cannot read {abs_dir}: {exc.strerror}") from exc
        for child in children:
            rel = prefix + child.name
            st = child.stat(follow_symlinks=False)
            mode = st.st_mode
            if s_isreg(mode):
                entry = [
                    "f",
                    mode & 0o7777,
                    st.st_uid,
                    st.st_gid,
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                    st.st_ino,
                    "",
                ]
                old = old_get(rel)
                if (
                    reuse
                    and old is not None
                    and old[_CTIME] < racy_limit_ns
                    and old[:_CONTENT] == entry[:_CONTENT]
                ):
                    entry[_CONTENT] = old[_CONTENT]
                else:
                    to_hash.append(rel)
            elif s_isdir(mode):
                if exclude_tag and lexists(join(child.path, exclude_tag)):
                    continue
                stack.append(rel)
                entry = [
                    "d",
                    mode & 0o7777,
                    st.st_uid,
                    st.st_gid,
                    0,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                    st.st_ino,
                    "",
                ]
            else:
                kind = "l" if s_islnk(mode) else "o"
                entry = [
                    kind,
                    mode & 0o7777,
                    st.st_uid,
                    st.st_gid,
                    0,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                    st.st_ino,
                    readlink(child.path) if kind == "l" else "",
                ]
            entries[rel] = entry
    return entries, to_hash


def _same_stat(new, old):
    return new[:_CONTENT] == old[:_CONTENT]


def _same_backup_content(new, old):
    """Equal as far as a backup is concerned (ctime and inode do not end up in a backup)."""
    return new[:_CTIME] == old[:_CTIME] and new[_CONTENT] == old[_CONTENT]


def build_manifest(
    source, old_entries, scanned_at_ns, old_scanned_at_ns=0, exclude_tag=DEFAULT_EXCLUDE_TAG, hash_all=False
):
    """Scan source and fill in content hashes, reusing old ones whose stat is unchanged.

    Returns (entries, stats) where stats = {"files", "hashed", "bytes_hashed"}.
    """
    entries, to_hash = scan_tree(source, exclude_tag, old_entries, old_scanned_at_ns - RACY_NS, hash_all)
    bytes_hashed = 0
    for rel in to_hash:
        entry = entries[rel]
        try:
            entry[_CONTENT] = sha256_file(os.path.join(source, rel))
        except FileNotFoundError:
            entry[_CONTENT] = "vanished"
        except OSError as exc:
            raise BtwError(f"cannot read {os.path.join(source, rel)}: {exc.strerror}") from exc
        bytes_hashed += entry[_SIZE]
    files = sum(1 for e in entries.values() if e[_KIND] == "f")
    hashed = len(to_hash)
    return entries, {
        "files": files,
        "hashed": hashed,
        "bytes_hashed": bytes_hashed,
        "scanned_at_ns": scanned_at_ns,
    }


def diff_manifests(new_entries, old_entries, limit=20):
    """Paths added, removed and modified (as far as a backup is concerned)."""
    added = sorted(set(new_entries) - set(old_entries))
    removed = sorted(set(old_entries) - set(new_entries))
    modified = sorted(
        p
        for p, new in new_entries.items()
        if p in old_entries and new != old_entries[p] and not _same_backup_content(new, old_entries[p])
    )
    # rdiff-backup decides what changed from size and mtime truncated to the second: a file
    # changed with both kept is silently skipped by an increment.  Such "stealth" changes force
    # a new full backup (a new chain).
    stealth = sorted(
        p
        for p in modified
        if new_entries[p][_KIND] == "f" == old_entries[p][_KIND]
        and new_entries[p][_SIZE] == old_entries[p][_SIZE]
        and new_entries[p][_MTIME] // 10**9 == old_entries[p][_MTIME] // 10**9
    )
    return {
        "added": len(added),
        "removed": len(removed),
        "modified": len(modified),
        "examples": (added + removed + modified)[:limit],
        "stealth": len(stealth),
        "stealth_examples": stealth[:limit],
    }


def load_manifest(dest):
    path = os.path.join(dest, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable: treated as no manifest, i.e. a new backup is made
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("entries"), dict):
        return None
    return data


def save_manifest(dest, data):
    write_atomic(os.path.join(dest, MANIFEST), json.dumps(data, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------------------------
# rdiff-backup chains (shared with the database backups)


def rdiff_sessions(repo):
    """Completed session times (epoch seconds, sorted) of an rdiff-backup repository."""
    data = os.path.join(repo, "rdiff-backup-data")
    times = []
    try:
        names = os.listdir(data)
    except OSError:
        return []
    for name in names:
        m = re.fullmatch(r"session_statistics\.(.+)\.data", name)
        if m:
            times.append(_rdiff_time(m.group(1)))
    current = [n for n in names if n.startswith("current_mirror.")]
    if not current:
        return []
    return sorted(t for t in times if t is not None)


def _rdiff_time(text):
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d)[:-](\d\d)[:-](\d\d)(Z|[+-]\d\d[:-]\d\d)", text)
    if not m:
        return None
    y, mo, d, h, mi, s, tz = m.groups()
    epoch = time.mktime((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0)) - time.timezone
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        epoch -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return float(epoch)


def list_chains(dest):
    """Completed chains, oldest first: [(name, path)]."""
    if not os.path.isdir(dest):
        return []
    names = sorted(n for n in os.listdir(dest) if re.fullmatch(CHAIN_PREFIX + STAMP_RE + r"(-\d+)?", n))
    return [(n, os.path.join(dest, n)) for n in names]


def choose_chain(dest, max_count, max_span, now=None):
    """Return (path, is_new, reason).  A new chain is a hidden partial directory for now."""
    now = now if now is not None else time.time()
    chains = list_chains(dest)
    if chains:
        name, path = chains[-1]
        sessions = rdiff_sessions(path)
        if sessions:
            increments = len(sessions) - 1
            span = now - sessions[0]
            if increments >= max_count:
                reason = f"{name} holds {increments} increments (max_incremental_count {max_count})"
            elif span >= max_span:
                reason = f"{name} spans {int(span)}s (max_incremental_span {int(max_span)}s)"
            else:
                return path, False, f"increment {increments + 1} of {name}"
        else:
            reason = f"{name} has no completed backup"
    else:
        reason = "no previous full backup"
    return _new_name(dest, CHAIN_PREFIX, "", now, partial=True), True, "new full backup: " + reason


def _new_name(dest, prefix, suffix, now, partial=False):
    stamp = utc_stamp(now)
    name = f"{prefix}{stamp}{suffix}"
    while os.path.lexists(os.path.join(dest, name)):
        # Same second as an existing backup: wait for the next second so names stay ordered.
        time.sleep(1.05 - (time.time() % 1))
        now = time.time()
        name = f"{prefix}{utc_stamp(now)}{suffix}"
    return os.path.join(dest, PARTIAL_PREFIX + name if partial else name)


def final_name(partial_path):
    directory, base = os.path.split(partial_path)
    if base.startswith(PARTIAL_PREFIX):
        base = base[len(PARTIAL_PREFIX) :]
    return os.path.join(directory, base)


RDIFF_RC_WARNINGS = 2  # rdiff-backup's exit status with warnings only (e.g. after its own regress)
_ENOSPC_RE = re.compile(r"\[Errno 28\]|No space left on device")
_RDIFF_TMP_RE = re.compile(r"rdiff-backup\.tmp\.\d+")


def current_mirror_markers(repo):
    """rdiff-backup's current_mirror markers: one in a sound chain, two after a failed session."""
    try:
        names = os.listdir(os.path.join(repo, "rdiff-backup-data"))
    except OSError:
        return []
    return sorted(n for n in names if n.startswith("current_mirror."))


def chain_needs_regress(repo):
    return len(current_mirror_markers(repo)) > 1


def _past_the_last_sessions_second(repo):
    """rdiff-backup names a session (its mirror marker, increments and logs) by the second it started:
    a session started in the same second as the previous one (a quick run, or the run after a
    regress) collides with its files and fails. Wait until the second of the newest file in
    rdiff-backup-data has passed (at most a second)."""
    data = os.path.join(repo, "rdiff-backup-data")
    try:
        newest = max(os.stat(os.path.join(data, name)).st_mtime for name in os.listdir(data))
    except (OSError, ValueError):  # no chain yet, or an empty one
        return
    wait = int(newest) + 1 - time.time()
    if wait > 0:
        time.sleep(min(wait, 1.0))


def rdiff_backup(runner, source, repo, exclude_tag=None, extra=()):
    """One rdiff-backup session into repo; returns its warnings, raises BtwError if it failed.

    Judged by its result: exit 2 means warnings only (rdiff-backup exits 2 after repairing a
    failed previous session itself, and stores the new one), so it succeeded when a session newer
    than the last one is complete and the chain holds no unfinished session.
    """
    before = rdiff_sessions(repo)
    _past_the_last_sessions_second(repo)
    argv = ["rdiff-backup", "backup"]
    if exclude_tag:
        argv += ["--exclude-if-present", exclude_tag]
    argv += list(extra) + [source, repo]
    rc, out, err = runner.run(argv)
    if rc == 0:
        return []
    if rc == RDIFF_RC_WARNINGS:
        after = rdiff_sessions(repo)
        if after and (not before or after[-1] > before[-1]) and not chain_needs_regress(repo):
            said = [line for line in (err + "\n" + out).splitlines() if line.startswith("WARNING")]
            return [
                "rdiff-backup stored the backup with warnings (rc=2): "
                + ("; ".join(said)[-600:] or "see its log in rdiff-backup-data")
            ]
    raise BtwError(f"rdiff-backup failed (rc={rc}): {(err.strip() or out.strip())[-800:]}")


def regress_chain(runner, repo):
    """Take a chain back to its last complete session.  None when it is sound afterwards, else why not."""
    rc, out, err = runner.run(["rdiff-backup", "regress", repo])
    if not chain_needs_regress(repo):
        return None
    return f"rdiff-backup regress failed (rc={rc}): {(err.strip() or out.strip())[-300:]}"


def _remove_session_temp_files(repo, since):
    """The temporary files (rdiff-backup.tmp.N) of the session that just failed in repo: a file
    being written when the disk filled up, which leaves regress itself no room.  Only files made
    by that session (mtime from its start on); regress would remove them too."""
    for top, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if not (top == repo and d == "rdiff-backup-data")]
        for name in names:
            if _RDIFF_TMP_RE.fullmatch(name):
                path = os.path.join(top, name)
                try:
                    if os.lstat(path).st_mtime >= since - 1:
                        os.unlink(path)
                except FileNotFoundError:
                    pass


def _space(path):
    try:
        st = os.statvfs(path)
    except OSError:
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize} of {st.f_blocks * st.f_frsize} bytes free"


def _failed_session(runner, repo, dest, is_new, error, since):
    """After a failed session: undo what it left and say so.  Returns the operator's message."""
    what = "a new full backup" if is_new else f"an increment of {os.path.basename(repo)}"
    if is_new:
        shutil.rmtree(repo, ignore_errors=True)  # our own unfinished chain (a hidden partial name)
        undone = "the unfinished new chain was removed"
    elif chain_needs_regress(repo):
        _remove_session_temp_files(repo, since)
        problem = regress_chain(runner, repo)
        last = rdiff_sessions(repo)
        if problem is None:
            undone = "the chain was regressed to its last complete backup" + (
                f" ({utc_stamp(last[-1])})" if last else ""
            )
        else:
            undone = (
                f"the automatic regress failed too ({problem}); the next run regresses the chain "
                f"first (or run: rdiff-backup regress {repo})"
            )
    else:
        undone = "the chain was not changed"
    if _ENOSPC_RE.search(error):
        return (
            f"out of space on the file system of {dest} ({_space(dest)}) while rdiff-backup stored "
            f"{what}; {undone}. Free space (or keep fewer backups) and run again"
        )
    return f"{error}; {undone}"


def store_in_chain(
    runner,
    staging_or_source,
    dest,
    max_count,
    max_span,
    exclude_tag=None,
    now=None,
    force_full=None,
    touch=(),
    warnings=None,
):
    """rdiff-backup into the current chain or a new one; returns (chain_path, reason, new).

    force_full: a reason to start a new chain whatever the policy says.  touch: files (of a
    staging directory) whose mtime is set to the session's second, so rdiff-backup cannot
    mistake a same-size rewrite for an unchanged file.  warnings: a list the run's warnings are
    appended to.

    A chain whose last session failed (out of space, killed) is regressed before it is used; one
    that cannot be regressed is left as it is and a new chain started.  A session that fails is
    undone (a new chain removed, an increment regressed) and reported, out of space as such.
    """
    warnings = [] if warnings is None else warnings
    repo, is_new, reason = choose_chain(dest, max_count, max_span, now)
    if not is_new and chain_needs_regress(repo):
        problem = regress_chain(runner, repo)
        if problem is None:
            warnings.append(
                f"{os.path.basename(repo)}: its last session had failed; regressed to its last "
                "complete backup before this one"
            )
        elif not force_full:
            force_full = (
                f"{os.path.basename(repo)} holds a failed session that cannot be regressed ({problem})"
            )
    if force_full and not is_new:
        repo, is_new, reason = (
            _new_name(dest, CHAIN_PREFIX, "", now or time.time(), partial=True),
            True,
            force_full,
        )
        reason = "new full backup: " + force_full
    if not is_new:
        sessions = rdiff_sessions(repo)
        while sessions and sessions[-1] >= int(time.time()):
            # rdiff-backup refuses a session in the same second as the previous one
            time.sleep(1.05 - (time.time() % 1))
    for path in touch:
        os.utime(path, None)
    started = time.time()
    try:
        warnings += rdiff_backup(runner, staging_or_source, repo, exclude_tag)
    except BtwError as exc:
        raise BtwError(_failed_session(runner, repo, dest, is_new, str(exc), started)) from None
    if is_new:
        final = final_name(repo)
        os.rename(repo, final)
        fsync_dir(dest)
        repo = final
    return repo, reason, is_new


def session_size(repo, is_new):
    """Bytes a backup session added to a chain: the whole chain for a new one, else rdiff-backup's
    TotalDestinationSizeChange of the last session (no walk over a large repository)."""
    if is_new:
        return tree_size(repo)
    data = os.path.join(repo, "rdiff-backup-data")
    try:
        latest = max(n for n in os.listdir(data) if n.startswith("session_statistics."))
        with open(os.path.join(data, latest)) as f:
            for line in f:
                if line.startswith("TotalDestinationSizeChange "):
                    return max(0, int(float(line.split()[1])))
    except (OSError, ValueError):
        pass
    return tree_size(repo)


def chain_state(repo):
    sessions = rdiff_sessions(repo)
    return {"chain": os.path.basename(repo), "last_session": sessions[-1] if sessions else None}


# ---------------------------------------------------------------------------------------------
# tar


def list_tars(dest, name):
    pattern = re.escape(name) + "-" + STAMP_RE + r"\.tar(\.gz|\.zst)?"
    if not os.path.isdir(dest):
        return []
    return sorted(n for n in os.listdir(dest) if re.fullmatch(pattern, n))


def write_tar(runner, source, dest, name, compression="none", exclude_tag=None, now=None):
    """GNU tar of source into a hidden temp file, fsync, rename.  Returns (path, warnings)."""
    suffix, flags = COMPRESSIONS[compression]
    final = _new_name(dest, name + "-", ".tar" + suffix, now if now is not None else time.time())
    tmp = os.path.join(dest, PARTIAL_PREFIX + os.path.basename(final))
    argv = ["tar", "--create", "--file", tmp, "--format=posix", "--numeric-owner", "--sparse"] + flags
    if exclude_tag:
        argv.append(f"--exclude-tag-all={exclude_tag}")
    argv += ["--directory", source, "."]
    warnings = []
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        rc, _out, err = runner.run(argv)
        if rc == 1:
            warnings.append("tar: some files changed while being read: " + err.strip()[-400:])
        elif rc != 0:
            raise BtwError(f"tar failed (rc={rc}): {err.strip()[-800:]}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, final)
        fsync_dir(dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final, warnings


# ---------------------------------------------------------------------------------------------
# The operation


def fs_backup(
    name,
    source,
    root,
    destination,
    backup_type="rdiff",
    exclude_tag=DEFAULT_EXCLUDE_TAG,
    max_incremental_count=DEFAULT_MAX_INCREMENTAL_COUNT,
    max_incremental_span=DEFAULT_MAX_INCREMENTAL_SPAN,
    owner=None,
    compression="none",
    hash_all=False,
    check_mode=False,
    runner=None,
    now=None,
):
    """Back up source if it changed since the last backup.  Returns a result dict."""
    started = time.time()
    runner = runner or Runner()
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise BtwError(f"backup set name {name!r}: use letters, digits, '.', '_' and '-'")
    if backup_type not in TYPES:
        raise BtwError(f"unknown backup type {backup_type!r} for a file-system backup: use one of {TYPES}")
    if compression not in COMPRESSIONS:
        raise BtwError(f"unknown compression {compression!r}: use one of {tuple(COMPRESSIONS)}")
    max_count, max_span = validate_policy(max_incremental_count, max_incremental_span)
    owner_ids = parse_owner(owner)
    dest = resolve_destination(root, destination)
    source = check_source(source, dest)

    old = None
    if os.path.isdir(dest):
        old = load_manifest(dest)
    scanned_at_ns = time.time_ns()
    old_entries = {}
    old_scanned = 0
    reason = None
    if old is None:
        reason = "no previous backup manifest"
    elif (old.get("source"), old.get("type"), old.get("exclude_tag")) != (source, backup_type, exclude_tag):
        reason = "source, type or exclude tag changed since the last backup"
    else:
        old_entries, old_scanned = old["entries"], old.get("scanned_at_ns", 0)
        missing = _previous_backup_missing(dest, old)
        if missing:
            reason = missing
    entries, scan_stats = build_manifest(
        source, old_entries, scanned_at_ns, old_scanned, exclude_tag, hash_all
    )
    changes = diff_manifests(entries, old_entries)
    if reason is None and (changes["added"] or changes["removed"] or changes["modified"]):
        reason = f"{changes['added']} added, {changes['removed']} removed, {changes['modified']} modified"

    result = {
        "name": name,
        "type": backup_type,
        "source": source,
        "destination": dest,
        "scan": scan_stats,
        "changes": changes,
        "warnings": [],
        # the shrink guard's figures (btw_retention.shrink_guard): regular files and their bytes
        "figures": {
            "files": sum(1 for e in entries.values() if e[0] == "f"),
            "bytes": sum(e[4] for e in entries.values() if e[0] == "f"),
        },
    }
    if reason is None:
        result.update(
            changed=False,
            stored=False,
            reason="unchanged since the last backup",
            location=_previous_location(dest, old),
            size_bytes=0,
        )
        if not check_mode:
            last = old.get("backup", {}).get("at", "")
            log = append_log(
                dest, f"{name}: source {source} unchanged since the backup of {last}; nothing stored"
            )
            apply_owner([log], owner_ids)
            _refresh_racy(dest, old, entries, scanned_at_ns, scan_stats)
        result["duration_seconds"] = round(time.time() - started, 3)
        return result

    result.update(changed=True, stored=not check_mode, reason=reason)
    if check_mode:
        result.update(location=dest, size_bytes=0, duration_seconds=round(time.time() - started, 3))
        return result

    ensure_dir(dest)
    apply_owner([dest], owner_ids)
    remove_partials(dest)
    if backup_type == "tar":
        path, warnings = write_tar(runner, source, dest, name, compression, exclude_tag, now)
        result["warnings"] += warnings
        backup_ref = {"file": os.path.basename(path), "at": utc_stamp(now)}
        apply_owner([path], owner_ids)
        size = os.path.getsize(path)
        result["full"] = True
    else:
        force_full = None
        if changes["stealth"]:
            force_full = (
                f"{changes['stealth']} file(s) changed with size and mtime (to the second) kept, which "
                f"rdiff-backup would not see, e.g. {changes['stealth_examples'][0]}"
            )
        elif not old_entries:
            force_full = "no usable manifest to vouch for the current chain"
        path, chain_reason, is_new = store_in_chain(
            runner,
            source,
            dest,
            max_count,
            max_span,
            exclude_tag,
            now,
            force_full=force_full,
            warnings=result["warnings"],
        )
        state = chain_state(path)
        backup_ref = {"chain": state["chain"], "last_session": state["last_session"], "at": utc_stamp(now)}
        apply_owner([path], owner_ids, recursive=True)
        size = session_size(path, is_new)
        result["full"] = is_new
        result["chain_reason"] = chain_reason
    save_manifest(
        dest,
        {
            "version": 1,
            "name": name,
            "type": backup_type,
            "source": source,
            "exclude_tag": exclude_tag,
            "scanned_at_ns": scanned_at_ns,
            "backup": backup_ref,
            "entries": entries,
        },
    )
    apply_owner([os.path.join(dest, MANIFEST)], owner_ids)
    result.update(location=path, size_bytes=size, duration_seconds=round(time.time() - started, 3))
    return result


def _previous_backup_missing(dest, manifest):
    ref = manifest.get("backup") or {}
    if manifest.get("type") == "tar":
        if not ref.get("file") or not os.path.isfile(os.path.join(dest, ref["file"])):
            return "the previous tar archive recorded in the manifest is missing"
        return None
    repo = os.path.join(dest, ref.get("chain") or "-")
    if not os.path.isdir(repo):
        return "the previous rdiff-backup chain recorded in the manifest is missing"
    if chain_state(repo)["last_session"] != ref.get("last_session"):
        return "the rdiff-backup chain changed since the manifest was written"
    return None


def _previous_location(dest, manifest):
    ref = (manifest or {}).get("backup") or {}
    return os.path.join(dest, ref.get("file") or ref.get("chain") or "")


def _refresh_racy(dest, old, entries, scanned_at_ns, scan_stats):
    """Save the hashes just computed (content unchanged) so those files are not hashed again."""
    if scan_stats["hashed"]:
        data = dict(old)
        data["entries"] = entries
        data["scanned_at_ns"] = scanned_at_ns
        save_manifest(dest, data)


# ---------------------------------------------------------------------------------------------
# Restore


def parse_at(at, now=None):
    """When to restore: None/'now', epoch seconds, an ISO time (UTC unless an offset is given),
    a backup stamp (20261122T012437Z) or a span ago ('36h', '7d')."""
    now = now if now is not None else time.time()
    if at in (None, "", "now"):
        return now
    text = str(at).strip()
    if re.fullmatch(r"\d{9,}(\.\d+)?", text):
        return float(text)
    if re.fullmatch(STAMP_RE, text):
        return stamp_epoch(text)
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d))?)?(Z|[+-]\d\d:?\d\d)?", text)
    if m:
        y, mo, d, h, mi, s, tz = m.groups()
        epoch = (
            time.mktime((int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), 0, 0, 0))
            - time.timezone
        )
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            epoch -= sign * (int(tz[1:3]) * 3600 + int(tz[-2:]) * 60)
        return float(epoch)
    try:
        return now - parse_span(text)
    except BtwError:
        raise BtwError(
            f"cannot parse restore time {at!r}: use 'now', an ISO time (2026-11-22T01:30:00Z), "
            "epoch seconds, a backup stamp or an age such as 36h / 7d"
        ) from None


def chain_at(dest, at_epoch):
    """(chain path, session epoch) holding the newest backup at or before at_epoch."""
    best = None
    for _name, path in list_chains(dest):
        sessions = [s for s in rdiff_sessions(path) if s <= at_epoch]
        if sessions:
            best = (path, sessions[-1])
    if best is None:
        raise BtwError(
            f"no rdiff-backup backup in {dest} at or before "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at_epoch))}"
        )
    return best


def tar_at(dest, at_epoch, backup=None):
    names = (
        sorted(n for n in os.listdir(dest) if re.fullmatch(r"[^.].*-" + STAMP_RE + r"\.tar(\.gz|\.zst)?", n))
        if os.path.isdir(dest)
        else []
    )
    if backup:
        if backup not in names:
            raise BtwError(f"backup {backup} not found in {dest}")
        return os.path.join(dest, backup)
    candidates = [n for n in names if stamp_epoch(re.search(STAMP_RE, n).group(0)) <= at_epoch]
    if not candidates:
        raise BtwError(
            f"no tar backup in {dest} at or before "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at_epoch))}"
        )
    return os.path.join(dest, candidates[-1])


def fs_restore(root, destination, target, at=None, backup=None, check_mode=False, runner=None):
    """Restore a tar or an rdiff-backup state into target (which must not exist yet).

    Restores into a hidden sibling of target and renames it into place when complete.
    """
    started = time.time()
    runner = runner or Runner()
    dest = resolve_destination(root, destination)
    if not target or not os.path.isabs(target):
        raise BtwError(f"restore target {target!r} must be an absolute path")
    target = os.path.normpath(target)
    if os.path.lexists(target):
        raise BtwError(f"restore target {target} already exists: restore into a new directory")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise BtwError(f"parent directory {parent} of the restore target does not exist")
    at_epoch = parse_at(at)
    manifest = load_manifest(dest) or {}
    is_tar = (
        backup is not None
        or manifest.get("type") == "tar"
        or (not list_chains(dest) and os.path.isdir(dest) and any(".tar" in n for n in os.listdir(dest)))
    )
    if is_tar:
        source = tar_at(dest, at_epoch, backup)
        session = None
    else:
        source, session = chain_at(dest, at_epoch)
    result = {"changed": not check_mode, "source": source, "session": session, "target": target}
    if check_mode:
        return result
    tmp = os.path.join(parent, PARTIAL_PREFIX + os.path.basename(target))
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    try:
        if is_tar:
            os.mkdir(tmp, 0o700)
            rc, _out, err = runner.run(
                [
                    "tar",
                    "--extract",
                    "--file",
                    source,
                    "--directory",
                    tmp,
                    "--same-permissions",
                    "--numeric-owner",
                ]
            )
            what = "tar"
        else:
            rc, _out, err = runner.run(["rdiff-backup", "restore", "--at", str(int(session)), source, tmp])
            what = "rdiff-backup restore"
        if rc != 0:
            raise BtwError(f"{what} failed (rc={rc}): {err.strip()[-800:]}")
        os.chmod(tmp, os.stat(tmp).st_mode & 0o7777)
        os.rename(tmp, target)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp)
    result["duration_seconds"] = round(time.time() - started, 3)
    return result
