"""Backup of fcrepo's binary store (fcrepo.binary.directory) with fixity checks.

fcrepo 4 stores every binary over 4 KB in a file named after its SHA-1, sharded by the first three
byte pairs: a1/b2/c3/a1b2c369563c0465ab82cdb2789d45ce1c3585b1. Content-addressed files never
change, so the backup is a growing mirror: only files not yet in the backup are copied (to a
hidden temp name; a batch is made durable with one syncfs, then renamed into place; one more syncfs
at the end makes the new names durable), and fixity
is checked by recomputing the SHA-1 of what was written and comparing it with the file name. A
file whose content does not match its name is never installed in the backup; it is reported
(source corruption or a write in progress).
"""
import hashlib
import json
import os
import re
import time

from ansible.module_utils.fs_sync import sync_filesystem
from ansible.module_utils.retention_policy import GOOD, RetentionPolicyError, check_threshold, judge

SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
TMP_PREFIX = ".fcrepo-tmp-"
CHUNK = 1024 * 1024
FIGURES_FILE = ".fcrepo-binaries-runs.json"
FIGURES_KEPT = 50


class FcrepoBinariesError(Exception):
    """Operator-facing failure of a binary store backup."""


def sha1_file(path):
    digest = hashlib.sha1()  # noqa: S324 - fcrepo names binaries by SHA-1; this is its fixity check
    size = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def shard_path(sha1):
    """a1b2c3... -> a1/b2/c3/a1b2c3..."""
    return os.path.join(sha1[0:2], sha1[2:4], sha1[4:6], sha1)


def scan_store(root):
    """Walk a binary store: (binaries {relpath: size}, misplaced [relpath], unrecognised [relpath])."""
    binaries, misplaced, unrecognised = {}, [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if name.startswith(TMP_PREFIX) or name.startswith(FIGURES_FILE) or os.path.islink(full):
                continue  # a copy in progress, or the shrink guard's record of the runs (backup only)
            if not SHA1_RE.match(name):
                unrecognised.append(rel)
            elif rel != shard_path(name):
                misplaced.append(rel)
            else:
                binaries[rel] = os.path.getsize(full)
    return binaries, misplaced, unrecognised


def _check_paths(source, dest):
    if not os.path.exists(source):
        raise FcrepoBinariesError(f"binary directory {source} does not exist")
    if not os.path.isdir(source):
        raise FcrepoBinariesError(f"binary directory {source} is not a directory")
    src, dst = os.path.realpath(source), os.path.realpath(dest)
    if dst == src or dst.startswith(src.rstrip(os.sep) + os.sep):
        raise FcrepoBinariesError(f"destination {dest} is inside the binary directory {source}: refusing")
    if src.startswith(dst.rstrip(os.sep) + os.sep):
        raise FcrepoBinariesError(f"binary directory {source} is inside the destination {dest}: refusing")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        raise FcrepoBinariesError(f"parent directory of the destination {dest} does not exist")


def _copy_with_sha1(src, dst_tmp, ownership=None):
    """Copy src to the new file dst_tmp; return (SHA-1 of the bytes written, size). Small files (the
    usual binary) are read in one call. ownership ({uid, gid, file_mode}) is given to the new file."""
    digest = hashlib.sha1()  # noqa: S324
    size = 0
    rfd = os.open(src, os.O_RDONLY)
    try:
        wfd = os.open(dst_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if ownership:
                os.fchown(wfd, ownership["uid"], ownership["gid"])
                os.fchmod(wfd, ownership["file_mode"])
            while True:
                chunk = os.read(rfd, CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(wfd, view):]
                size += len(chunk)
        finally:
            os.close(wfd)
    finally:
        os.close(rfd)
    return digest.hexdigest(), size


def _existing_files(dest):
    """One walk of the backup: (relpath -> size of the files already in it, the temp files a killed
    run left, relpaths). One walk instead of a stat per binary, and instead of a second walk for the
    temps."""
    found, stale = {}, []
    for dirpath, _dirs, filenames in os.walk(dest):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if name.startswith(TMP_PREFIX):
                stale.append(os.path.relpath(full, dest))
                continue
            try:
                found[os.path.relpath(full, dest)] = os.lstat(full).st_size
            except FileNotFoundError:
                continue
    return found, stale


def plan(source, dest):
    """Files a backup would copy (check mode)."""
    _check_paths(source, dest)
    binaries, misplaced, unrecognised = scan_store(source)
    missing = [rel for rel in binaries if not os.path.isfile(os.path.join(dest, rel))]
    return {"to_copy": missing, "bytes_to_copy": sum(binaries[r] for r in missing),
            "binaries": len(binaries), "misplaced": misplaced, "unrecognised": unrecognised}


def _install_batch(dest, pending, report):
    """Make a batch of verified temp files durable with one filesystem sync (fs_sync), then rename
    them into place: a file never appears under its SHA-1 name before its content is on disk. The
    new names are made durable once, at the end of the run (a name lost in a crash before that only
    means the file is copied again by the next run)."""
    if not pending:
        return
    sync_filesystem(dest)
    for tmp, dst, written in pending:
        os.rename(tmp, dst)
        report["copied"] += 1
        report["bytes_copied"] += written
    report["changed"] = True
    pending.clear()


def _makedirs(path, ownership):
    """makedirs; the directories it creates get ownership ({uid, gid, dir_mode}), or 0700."""
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path), ownership)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    if ownership:
        os.chown(path, ownership["uid"], ownership["gid"])
        os.chmod(path, ownership["dir_mode"])


def read_runs(dest):
    """The figures of the previous runs recorded in dest (oldest first), [] when none."""
    try:
        with open(os.path.join(dest, FIGURES_FILE), encoding="utf-8") as handle:
            runs = json.load(handle).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [r for r in runs if isinstance(r, dict)]


def _write_runs(dest, runs):
    path = os.path.join(dest, FIGURES_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"runs": runs[-FIGURES_KEPT:]}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def shrink_guard(dest, figures, threshold, accept_shrink=False, check_mode=False, now=None):
    """Compare the store's figures (files, bytes) with the last good run recorded in dest, record
    this run (not in check mode) and return the verdict (retention_policy.judge). The mirror never
    deletes, so a suspect run loses nothing from the backup; the run fails so that someone looks."""
    try:
        threshold = check_threshold(threshold)
    except RetentionPolicyError as exc:
        raise FcrepoBinariesError(str(exc)) from None
    runs = read_runs(dest)
    good = next((r for r in reversed(runs) if r.get("result") == GOOD), None)
    verdict = judge(good.get("figures") if good else None, figures, threshold, accept_shrink,
                    what="the binary store backup", previous_name=good.get("at") if good else None)
    if not check_mode:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        runs.append({"at": at, "figures": figures, "result": verdict["status"],
                     "accepted": verdict["accepted"]})
        _write_runs(dest, runs)
    return verdict


def backup(source, dest, verify_existing=False, check_mode=False, batch_bytes=256 * 1024 * 1024,
           batch_files=10000, ownership=None, shrink_threshold=None, accept_shrink=False):
    """Copy binaries missing from dest; check fixity of every copied file (and of every file already
    in the backup when verify_existing). Returns a report; mismatches are listed, never installed.
    Without ownership, what is created is 0700/0600 (a backup); a restore passes the live store's
    ({uid, gid, dir_mode, file_mode}, see fcrepo_restore.ownership).

    With shrink_threshold (a backup, not a restore), the store's files and bytes are compared with
    the last good run's (shrink_guard): report "result" good or suspect, "figures", "shrink"."""
    if shrink_threshold is not None:
        try:
            check_threshold(shrink_threshold)
        except RetentionPolicyError as exc:
            raise FcrepoBinariesError(str(exc)) from None
    _check_paths(source, dest)
    binaries, misplaced, unrecognised = scan_store(source)
    report = {"binaries": len(binaries), "copied": 0, "bytes_copied": 0, "already_present": 0,
              "mismatches": [], "misplaced": misplaced, "unrecognised": unrecognised,
              "size_changed": [], "verified_existing": 0, "changed": False, "stale_removed": []}
    existing, stale = _existing_files(dest) if os.path.isdir(dest) else ({}, [])
    if not check_mode:
        _makedirs(dest, ownership)
        for rel in stale:  # a killed run's unfinished copies (never visible under a SHA-1 name)
            os.unlink(os.path.join(dest, rel))
        report["stale_removed"] = stale
    pending, pending_bytes = [], 0
    made_dirs = set()
    copying = None  # the temp file being written now (removed if the copy fails half way)
    try:
        for rel, size in binaries.items():
            src = os.path.join(source, rel)
            dst = os.path.join(dest, rel)
            expected = os.path.basename(rel)
            if rel in existing:
                report["already_present"] += 1
                if existing[rel] != size:
                    report["size_changed"].append(rel)
                if verify_existing:
                    actual, _ = sha1_file(dst)
                    report["verified_existing"] += 1
                    if actual != expected:
                        report["mismatches"].append({"file": rel, "where": "backup", "sha1": actual})
                continue
            if check_mode:
                report["copied"] += 1
                report["bytes_copied"] += size
                report["changed"] = True
                continue
            if os.path.dirname(rel) not in made_dirs:
                _makedirs(os.path.dirname(dst), ownership)
                made_dirs.add(os.path.dirname(rel))
            tmp = os.path.join(os.path.dirname(dst), TMP_PREFIX + expected)
            copying = tmp
            try:
                actual, written = _copy_with_sha1(src, tmp, ownership)
            except FileNotFoundError:
                if os.path.exists(src):
                    raise
                copying = None
                continue  # deleted from the store during the backup
            copying = None
            if actual != expected:
                os.unlink(tmp)
                report["mismatches"].append({"file": rel, "where": "source", "sha1": actual})
                continue
            pending.append((tmp, dst, written))
            pending_bytes += written
            if len(pending) >= batch_files or pending_bytes >= batch_bytes:
                _install_batch(dest, pending, report)
                pending_bytes = 0
        _install_batch(dest, pending, report)
        if report["changed"] and not check_mode:
            sync_filesystem(dest)  # the new names, once for the whole run
    except OSError as exc:
        _remove_if_there(copying)
        try:  # keep the files that were copied completely (e.g. when the disk filled up half way)
            _install_batch(dest, pending, report)
            sync_filesystem(dest)
        except OSError:
            pass
        raise FcrepoBinariesError(
            f"copying binaries to {dest} failed: {exc}; {report['copied']} files were installed complete, "
            "unfinished copies were removed") from exc
    finally:
        _remove_if_there(copying)
        for tmp, _dst, _written in pending:
            _remove_if_there(tmp)
    if shrink_threshold is not None:
        figures = {"files": len(binaries), "bytes": sum(binaries.values())}
        try:
            verdict = shrink_guard(dest, figures, shrink_threshold, accept_shrink, check_mode)
        except OSError as exc:
            raise FcrepoBinariesError(f"cannot record the run's figures in {dest}: {exc}") from exc
        report.update(result=verdict["status"], figures=figures, shrink=verdict["drops"],
                      shrink_accepted=verdict["accepted"], shrink_message=verdict["message"])
    return report


def _remove_if_there(path):
    if path and os.path.lexists(path):
        os.unlink(path)

