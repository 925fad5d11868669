"""Listing, shrink guard and retention of btw backups (tar archives and rdiff-backup chains).

Retention works on whole backups: a tar archive, or a whole rdiff-backup chain (a full backup
with its increments), by the rule every strategy shares (retention_policy): a backup is deleted
when it is beyond the newest ``keep_count`` good backups or when its newest state is older than
``max_age``, but the newest backup, the newest good one and at least ``min_good`` good ones are
kept, and suspect backups do not count as good. Never while any of its files is not confirmed
synced in the off-site journal(s) (``require_synced``). A chain is first renamed to a hidden
``.partial-`` name, then removed, so a half-deleted chain never looks like a backup.

Shrink guard: each file-system backup run records the source's figures (files, bytes) in
``.btw-runs.json`` beside the backups, with its result: good, or suspect when a figure fell below
the last good run's by more than the threshold. A tar archive is suspect when its run was; a chain
is good while any of its runs was good (it holds that state).
"""

import json
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
    write_atomic,
)
from ansible.module_utils.btw_s3 import STATE_DIR, Journal, journal_paths
from ansible.module_utils.retention_policy import (
    DEFAULT_MIN_GOOD,
    GOOD,
    SUSPECT,
    RetentionPolicyError,
    check_threshold,
    judge,
    plan_retention,
)

TAR_RE = re.compile(r"[^.].*-(" + STAMP_RE + r")\.tar(\.gz|\.zst)?")
CHAIN_RE = re.compile(CHAIN_PREFIX + "(" + STAMP_RE + r")(-\d+)?")
RUNS_FILE = ".btw-runs.json"
RUNS_KEPT = 500


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


def plan(backups, keep_count=None, max_age_seconds=None, now=None, min_good=DEFAULT_MIN_GOOD):
    """Split backups (oldest first, each with a "status", default good) into (keep, delete) by the
    shared rule (retention_policy.plan_retention); each delete carries a reason."""
    try:
        return plan_retention(backups, keep_count, max_age_seconds, min_good, now)
    except RetentionPolicyError as exc:
        raise BtwRetentionError(str(exc)) from None


# -- shrink guard ----------------------------------------------------------------------------
def read_runs(dest):
    """The recorded runs of one set (oldest first), [] when none or unreadable."""
    try:
        with open(os.path.join(dest, RUNS_FILE), encoding="utf-8") as handle:
            runs = json.load(handle).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [r for r in runs if isinstance(r, dict)]


def shrink_guard(dest, location, figures, stored, threshold, accept_shrink=False, check_mode=False,
                 now=None):
    """Judge a run's figures against the last good run of the set in dest and record the run.

    A stored backup is recorded with its result; a run that stored nothing (source unchanged) is
    judged again (a source that stays shrunk keeps failing) and recorded only when it accepts a
    drop or is the set's first record. Returns the verdict (retention_policy.judge)."""
    try:
        threshold = check_threshold(threshold)
    except RetentionPolicyError as exc:
        raise BtwRetentionError(str(exc)) from None
    runs = read_runs(dest)
    good = next((r for r in reversed(runs) if r.get("result") == GOOD), None)
    verdict = judge(good.get("figures") if good else None, figures, threshold, accept_shrink,
                    what=f"the backup of {os.path.basename(dest)}",
                    previous_name=good.get("location") if good else None)
    if not check_mode and location and (stored or verdict["accepted"] or not runs):
        runs.append({"at": _iso(now or time.time()), "location": os.path.basename(location),
                     "figures": figures, "result": verdict["status"], "accepted": verdict["accepted"]})
        data = json.dumps({"runs": runs[-RUNS_KEPT:]}, indent=1).encode()
        write_atomic(os.path.join(dest, RUNS_FILE), data)
    return verdict


def with_status(dest, backups):
    """backups with their "status": a tar suspect when its run was, a chain good while any of its
    runs was good; backups without a recorded run (made before the guard) good."""
    results = {}
    for run in read_runs(dest):
        results.setdefault(run.get("location"), []).append(run.get("result"))
    out = []
    for backup in backups:
        recorded = results.get(backup["name"])
        status = GOOD if not recorded or GOOD in recorded else SUSPECT
        out.append(dict(backup, status=status))
    return out


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
    root, destination, keep_count=None, max_age=None, require_synced=True, check_mode=False, now=None,
    min_good=DEFAULT_MIN_GOOD,
):
    if keep_count is None and not max_age:
        raise BtwRetentionError("retention needs keep_count and/or max_age")
    if keep_count is not None and int(keep_count) < 1:
        raise BtwRetentionError(f"keep_count {keep_count} must be >= 1")
    max_age_seconds = parse_span(max_age) if max_age else None
    dest = resolve_destination(root, destination)
    backups = with_status(dest, list_backups(dest))
    keep, delete = plan(backups, int(keep_count) if keep_count is not None else None, max_age_seconds, now,
                        min_good)
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
    fields = ("name", "kind", "date", "size_bytes", "reason", "held", "status")
    summarize = [{k: b.get(k) for k in fields} for b in held]
    return {
        "changed": bool(deleted),
        "destination": dest,
        "deleted": [{k: b[k] for k in ("name", "kind", "date", "size_bytes", "reason", "status")}
                    for b in deleted],
        "suspect": [b["name"] for b in keep if b["status"] == SUSPECT],
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
