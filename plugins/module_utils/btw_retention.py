"""Listing and retention of btw backups (tar archives and rdiff-backup chains).

Retention works on whole backups: a tar archive, or a whole rdiff-backup chain (a full backup
with its increments).  The newest backup is never deleted.  A backup is deleted when it is
beyond the newest ``keep_count`` or when its newest state is older than ``max_age``; but never
while any of its files is not confirmed synced in the off-site journal(s) (``require_synced``).
A chain is first renamed to a hidden ``.partial-`` name, then removed, so a half-deleted chain
never looks like a backup.
"""

import os
import re
import shutil
import time

from ansible.module_utils.btw_fs import (
    CHAIN_PREFIX,
    MANIFEST,
    PARTIAL_PREFIX,
    STAMP_RE,
    BtwError,
    parse_span,
    rdiff_sessions,
    resolve_destination,
    stamp_epoch,
    tree_size,
)
from ansible.module_utils.btw_s3 import STATE_DIR, Journal, journal_paths

TAR_RE = re.compile(r"[^.].*-(" + STAMP_RE + r")\.tar(\.gz|\.zst)?")
CHAIN_RE = re.compile(CHAIN_PREFIX + "(" + STAMP_RE + r")(-\d+)?")


class BtwRetentionError(BtwError):
    """An operator-facing error of listing or retention."""


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else None


def list_backups(dest):
    """Backups in one destination, oldest first."""
    out = []
    if not os.path.isdir(dest):
        return out
    for name in sorted(os.listdir(dest)):
        path = os.path.join(dest, name)
        m = TAR_RE.fullmatch(name)
        if m and os.path.isfile(path):
            epoch = stamp_epoch(m.group(1))
            out.append(
                {
                    "name": name,
                    "path": path,
                    "kind": "tar",
                    "time": epoch,
                    "last": epoch,
                    "date": _iso(epoch),
                    "size_bytes": os.path.getsize(path),
                    "backups": 1,
                }
            )
            continue
        m = CHAIN_RE.fullmatch(name)
        if m and os.path.isdir(path):
            sessions = rdiff_sessions(path)
            if not sessions:
                continue
            out.append(
                {
                    "name": name,
                    "path": path,
                    "kind": "rdiff-chain",
                    "time": sessions[0],
                    "last": sessions[-1],
                    "date": _iso(sessions[0]),
                    "last_date": _iso(sessions[-1]),
                    "size_bytes": tree_size(path),
                    "backups": len(sessions),
                    "sessions": [_iso(s) for s in sessions],
                }
            )
    out.sort(key=lambda b: (b["time"], b["name"]))
    return out


def list_sets(root, max_depth=4):
    """Every destination under root holding btw backups: {relative destination: [backups]}."""
    if not root or not os.path.isabs(root) or not os.path.isdir(root):
        raise BtwRetentionError(f"backup root {root!r} must be an existing absolute directory")
    sets = {}
    base_depth = root.rstrip(os.sep).count(os.sep)
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        looks_like_set = (
            MANIFEST in files
            or any(CHAIN_RE.fullmatch(d) for d in dirs)
            or any(TAR_RE.fullmatch(f) for f in files)
        )
        if looks_like_set and rel != ".":
            sets[rel] = list_backups(top)
            dirs[:] = []
            continue
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d != STATE_DIR and top.count(os.sep) - base_depth < max_depth
        ]
    return sets


def plan(backups, keep_count=None, max_age_seconds=None, now=None):
    """Split backups (oldest first) into (keep, delete); each delete carries a reason."""
    now = now if now is not None else time.time()
    keep, delete = [], []
    newest_first = list(reversed(backups))
    for index, backup in enumerate(newest_first):
        reason = None
        if index == 0:
            pass  # the newest backup is always kept
        elif keep_count is not None and index >= keep_count:
            reason = f"beyond the newest {keep_count}"
        elif max_age_seconds is not None and now - backup["last"] > max_age_seconds:
            reason = f"newest state {_iso(backup['last'])} older than {int(max_age_seconds)}s"
        if reason:
            delete.append(dict(backup, reason=reason))
        else:
            keep.append(backup)
    return list(reversed(keep)), list(reversed(delete))


def unsynced_files(root, path, journals):
    """Files of one backup (a file or a tree) that some journal has not confirmed."""
    if os.path.isdir(path):
        files = [os.path.join(top, n) for top, _d, names in os.walk(path) for n in names]
    else:
        files = [path]
    missing = []
    for full in files:
        rel = os.path.relpath(full, root)
        st = os.lstat(full)
        if not all(j.is_synced(root, rel, st) for j in journals):
            missing.append(rel)
    return missing


def apply_retention(
    root, destination, keep_count=None, max_age=None, require_synced=True, check_mode=False, now=None
):
    if keep_count is None and not max_age:
        raise BtwRetentionError("retention needs keep_count and/or max_age")
    if keep_count is not None and int(keep_count) < 1:
        raise BtwRetentionError(f"keep_count {keep_count} must be >= 1")
    max_age_seconds = parse_span(max_age) if max_age else None
    dest = resolve_destination(root, destination)
    backups = list_backups(dest)
    keep, delete = plan(backups, int(keep_count) if keep_count is not None else None, max_age_seconds, now)
    journals = [Journal(p) for p in journal_paths(root)] if require_synced else []
    deleted, held = [], []
    for backup in delete:
        if require_synced:
            if not journals:
                held.append(
                    dict(backup, held="no off-site sync journal found: nothing is deleted before a sync")
                )
                continue
            missing = unsynced_files(root, backup["path"], journals)
            if missing:
                held.append(
                    dict(backup, held=f"{len(missing)} file(s) not yet synced off-site, e.g. {missing[0]}")
                )
                continue
        if not check_mode:
            _remove(backup["path"])
        deleted.append(backup)
    summarize = [
        {k: b.get(k) for k in ("name", "kind", "date", "size_bytes", "reason", "held")} for b in held
    ]
    return {
        "changed": bool(deleted),
        "destination": dest,
        "deleted": [{k: b[k] for k in ("name", "kind", "date", "size_bytes", "reason")} for b in deleted],
        "held": summarize,
        "kept": [b["name"] for b in keep] + [b["name"] for b in held],
        "freed_bytes": sum(b["size_bytes"] for b in deleted),
    }


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        parent, name = os.path.split(path)
        doomed = os.path.join(parent, PARTIAL_PREFIX + "deleting-" + name)
        os.rename(path, doomed)
        shutil.rmtree(doomed)
    else:
        os.unlink(path)
