"""Backup of fcrepo's binary store (fcrepo.binary.directory) with fixity checks.

fcrepo 4 stores every binary over 4 KB in a file named after its SHA-1, sharded by the first three
byte pairs: a1/b2/c3/a1b2c369563c0465ab82cdb2789d45ce1c3585b1. Content-addressed files never
change, so the backup is a growing mirror: only files not yet in the backup are copied (to a
hidden temp name; a batch is made durable, then renamed into place; the new names are made durable
once at the end: fs_sync.sync_files, an fsync each for up to 128 files, one syncfs for more), and fixity
is checked by recomputing the SHA-1 of what was written and comparing it with the file name. A
file whose content does not match its name is never installed in the backup; it is reported
(source corruption or a write in progress).
"""
import concurrent.futures
import hashlib
import json
import os
import re
import time

from ansible.module_utils.fs_sync import copy_hashed, sync_files
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


def _classify(root, dirpath, name, found):
    """Sort one file of a store into found = (binaries {relpath: size}, misplaced, unrecognised)."""
    full = os.path.join(dirpath, name)
    if name.startswith(TMP_PREFIX) or name.startswith(FIGURES_FILE) or os.path.islink(full):
        return  # a copy in progress, or the shrink guard's record of the runs (backup only)
    rel = os.path.relpath(full, root)
    if not SHA1_RE.match(name):
        found[2].append(rel)
    elif rel != shard_path(name):
        found[1].append(rel)
    else:
        found[0][rel] = os.path.getsize(full)


def _top_level(root):
    """The directories directly in root (sorted), and its own files sorted into
    (binaries, misplaced, unrecognised)."""
    found, tops = ({}, [], []), []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                tops.append(entry.name)
            else:
                _classify(root, root, entry.name, found)
    return tops, found


def _scan_tree(root, top):
    """(binaries, misplaced, unrecognised) of the directory top of the store root, in path order."""
    found = ({}, [], [])
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
        dirnames.sort()
        for name in sorted(filenames):
            _classify(root, dirpath, name, found)
    return found


def _merge(found, more):
    found[0].update(more[0])
    found[1].extend(more[1])
    found[2].extend(more[2])


def scan_store(root):
    """Walk a binary store: (binaries {relpath: size}, misplaced [relpath], unrecognised [relpath])."""
    tops, found = _top_level(root)
    for top in tops:
        _merge(found, _scan_tree(root, top))
    return found


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
    """Copy src to the new file dst_tmp; return (SHA-1 of the bytes written, size). ownership
    ({uid, gid, file_mode}) is given to the new file."""
    return copy_hashed(src, dst_tmp, hashlib.sha1(), ownership=ownership)  # noqa: S324 - fcrepo's fixity


def _existing_files(dest, top):
    """One walk of the backup's directory top: (relpath -> size of the files already there, the
    temp files a killed run left, relpaths). One walk instead of a stat per binary, and instead of
    a second walk for the temps."""
    found, stale = {}, []
    for dirpath, _dirs, filenames in os.walk(os.path.join(dest, top)):
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


def _install_batch(dest, pending, report, renamed_dirs):
    """Make a batch of verified temp files durable (fs_sync.sync_files: an fsync each for a small
    batch, one syncfs for a big one), then rename them into place: a file never appears under its
    SHA-1 name before its content is on disk. The directories the names went into are added to
    renamed_dirs, made durable once at the end of the run (_sync_names; a name lost in a crash
    before that only means the file is copied again by the next run)."""
    if not pending:
        return
    sync_files(dest, [tmp for tmp, _dst, _written in pending])
    for tmp, dst, written in pending:
        os.rename(tmp, dst)
        report["copied"] += 1
        report["bytes_copied"] += written
        renamed_dirs.add(os.path.dirname(dst))
    report["changed"] = True
    pending.clear()


def _sync_names(dest, renamed_dirs):
    """The new names durable: each directory that got one, and those above it up to dest's parent
    (a shard directory made by this run is itself a new name in its parent, and so may dest be)."""
    top = os.path.abspath(dest)
    dirs = {os.path.dirname(top)}
    for path in renamed_dirs:
        path = os.path.abspath(path)
        while path not in dirs and (path == top or path.startswith(top + os.sep)):
            dirs.add(path)
            path = os.path.dirname(path)
    sync_files(dest, [], sorted(dirs))


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


def _copy_group(source, dest, rels, ownership):
    """Copy one top-level shard's missing binaries to temp names with their SHA-1 (run by a worker
    thread). [("ok", tmp, dst, written) | ("mismatch", rel, sha1) ...]; on an error the temps this
    call made are removed before it is raised."""
    done, made_dirs, copying = [], set(), None
    try:
        for rel in rels:
            src, dst = os.path.join(source, rel), os.path.join(dest, rel)
            expected = os.path.basename(rel)
            if os.path.dirname(rel) not in made_dirs:
                _makedirs(os.path.dirname(dst), ownership)
                made_dirs.add(os.path.dirname(rel))
            copying = os.path.join(os.path.dirname(dst), TMP_PREFIX + expected)
            try:
                actual, written = _copy_with_sha1(src, copying, ownership)
            except FileNotFoundError:
                if os.path.exists(src):
                    raise
                copying = None
                continue  # deleted from the store during the backup
            if actual != expected:
                os.unlink(copying)
                done.append(("mismatch", rel, actual))
            else:
                done.append(("ok", copying, dst, written))
            copying = None
    except BaseException:
        _remove_if_there(copying)
        for entry in done:
            if entry[0] == "ok":
                _remove_if_there(entry[1])
        raise
    return done


def _shard_task(source, dest, top, ownership, verify_existing, check_mode):
    """Everything a backup does in one top-level directory (run by a worker thread): scan the
    store's and the backup's copy of it, remove a killed run's temps, check the binaries already
    there (verify_existing: their SHA-1), copy the missing ones to temp names (_copy_group)."""
    part = {"found": _scan_tree(source, top) if os.path.isdir(os.path.join(source, top)) else ({}, [], []),
            "already_present": 0, "size_changed": [], "verified_existing": 0, "mismatches": [],
            "to_copy": [], "copied": [], "stale": []}
    existing, stale = _existing_files(dest, top) if os.path.isdir(os.path.join(dest, top)) else ({}, [])
    if not check_mode:
        for rel in stale:  # a killed run's unfinished copies (never visible under a SHA-1 name)
            os.unlink(os.path.join(dest, rel))
        part["stale"] = stale
    for rel, size in part["found"][0].items():
        if rel not in existing:
            part["to_copy"].append(rel)
            continue
        part["already_present"] += 1
        if existing[rel] != size:
            part["size_changed"].append(rel)
        if verify_existing:
            actual, _ = sha1_file(os.path.join(dest, rel))
            part["verified_existing"] += 1
            if actual != os.path.basename(rel):
                part["mismatches"].append({"file": rel, "where": "backup", "sha1": actual})
    if not check_mode:
        part["copied"] = _copy_group(source, dest, part["to_copy"], ownership)
    return part


def copy_workers():
    """Top-level directories worked on at once. A binary is small: its backup is mostly walk, mkdir,
    open and rename, system calls that release the GIL, so a second thread keeps the second core
    and the disk busy."""
    return max(1, min(4, os.cpu_count() or 1))


def _add_part(report, found, part, check_mode):
    _merge(found, part["found"])
    for key in ("already_present", "verified_existing"):
        report[key] += part[key]
    for key in ("size_changed", "mismatches"):
        report[key].extend(part[key])
    report["stale_removed"].extend(part["stale"])
    if check_mode:
        report["copied"] += len(part["to_copy"])
        report["bytes_copied"] += sum(part["found"][0][rel] for rel in part["to_copy"])
        report["changed"] = report["changed"] or bool(part["to_copy"])


def _remove_unclaimed(futures, pending):
    """After a failure: wait for the tasks still running, remove the temps of those whose copies
    were not taken into pending (nothing of theirs is installed)."""
    for future in futures:
        future.cancel()
    concurrent.futures.wait(futures)
    claimed = {tmp for tmp, _dst, _written in pending}
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            for entry in future.result()["copied"]:
                if entry[0] == "ok" and entry[1] not in claimed:
                    _remove_if_there(entry[1])


def _run_tasks(source, dest, tops, ownership, verify_existing, check_mode, batch_files, batch_bytes,
               report, found):
    """The per-directory tasks on a few threads; their results taken in order, the copies installed
    in batches (_install_batch). A failure keeps the batches already installed plus the copies
    taken before it (e.g. when the disk filled up half way) and removes every other temp file."""
    pending, pending_bytes, renamed_dirs = [], 0, set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=copy_workers()) as pool:
        futures = [pool.submit(_shard_task, source, dest, top, ownership, verify_existing, check_mode)
                   for top in tops]
        try:
            for future in futures:
                part = future.result()
                _add_part(report, found, part, check_mode)
                for entry in part["copied"]:
                    if entry[0] == "mismatch":
                        report["mismatches"].append({"file": entry[1], "where": "source", "sha1": entry[2]})
                        continue
                    pending.append(entry[1:])
                    pending_bytes += entry[3]
                    if len(pending) >= batch_files or pending_bytes >= batch_bytes:
                        _install_batch(dest, pending, report, renamed_dirs)
                        pending_bytes = 0
            _install_batch(dest, pending, report, renamed_dirs)
            if report["changed"] and not check_mode:
                _sync_names(dest, renamed_dirs)  # the new names, once for the whole run
        except BaseException as exc:
            _remove_unclaimed(futures, pending)
            if isinstance(exc, OSError):
                try:  # keep the files that were copied completely
                    _install_batch(dest, pending, report, renamed_dirs)
                    _sync_names(dest, renamed_dirs)
                except OSError:
                    pass
                raise FcrepoBinariesError(
                    f"copying binaries to {dest} failed: {exc}; {report['copied']} files were installed "
                    "complete, unfinished copies were removed") from exc
            raise
        finally:
            for tmp, _dst, _written in pending:
                _remove_if_there(tmp)


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
    tops, found = _top_level(source)
    if os.path.isdir(dest):  # a directory only the backup still has may hold a killed run's temps
        tops = sorted(set(tops) | set(_top_level(dest)[0]))
    report = {"binaries": 0, "copied": 0, "bytes_copied": 0, "already_present": 0,
              "mismatches": [], "misplaced": [], "unrecognised": [],
              "size_changed": [], "verified_existing": 0, "changed": False, "stale_removed": []}
    if not check_mode:
        _makedirs(dest, ownership)
    _run_tasks(source, dest, tops, ownership, verify_existing, check_mode, batch_files, batch_bytes,
               report, found)
    binaries, report["misplaced"], report["unrecognised"] = found
    report["binaries"] = len(binaries)
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

