"""Restore drills: which backup a drill restores, how its scratch copy is proven, what it publishes.

A drill restores the newest **good** backup of each set (retention_policy: a suspect backup is
never restored by a drill, the way it never becomes ``latest``) into a scratch place, compares the
copy with what the backup itself recorded when it was made, and publishes one ``backup_runs``
record per host and drilled strategy (strategy ``restore_drill``):

- ``backup_age_seconds``: the age of the newest backup proved (the RPO at the drill: the data an
  incident at that moment would lose, at most); with several sets the oldest of them counts;
- ``restore_seconds`` (and ``duration_seconds``): the time the restores and their checks took (RTO);
- ``details``: each backup used, what was checked (expected and found) and the first check that
  failed, named with its backup.

btw sets (``btw_candidates``): the runs file of a set (``.btw-runs.json``, written by the shrink
guard) records each stored backup's figures (files and bytes of a file-system set, tables and bytes
of a dump) and its result. A tar archive is one state; an rdiff-backup chain holds one state per
session, and its newest good one is the session before the suspect runs that followed it (each
suspect run that is recorded stored a session). A database dump judged suspect has a chain of its
own, so the newest good dump is the last session of the newest chain with a good run.

fcrepo (``fcrepo_candidate``): the newest LevelDB backup whose metadata says good (leveldb_backup's
``latest`` rule), restored with its records counted against the count the backup recorded, and the
binaries backup restored beside it (SHA-1 of every binary, read back as the store's owner).

Pure Python apart from ``btw_candidates``, ``fcrepo_candidate`` (which read the backups' directories)
and ``tree_figures``.
"""
import os
import time

from ansible.module_utils.retention_policy import GOOD, SUSPECT

DRILL_STRATEGY = "restore_drill"
# The strategies a drill can rehearse here, and those it refuses (with the reason).
DRILLABLE = ("btw", "fcrepo", "lvm")
REFUSED = {
    "seafile": "the Seafile backup server is itself the restore target: its drill is "
               "playbooks/seafile_replication_health.yml",
}
FS_TYPES = ("tar", "rdiff")
DB_TYPES = ("pg_dump", "mysqldump")
NOT_DRILLED = {"pg_globals": "roles and tablespaces load into the cluster itself: no scratch place"}


class DrillError(Exception):
    """A drill that cannot run or whose copy failed a check; the message is meant for the operator."""


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch is not None else None


def check_strategies(strategies):
    """The drilled strategies as a list; an unknown or refused one raises DrillError."""
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    if not strategies:
        raise DrillError(f"no strategy to drill: choose from {', '.join(DRILLABLE)}")
    for name in strategies:
        if name in REFUSED:
            raise DrillError(f"restore drill of {name} refused, nothing was restored: {REFUSED[name]}")
        if name not in DRILLABLE:
            raise DrillError(f"unknown restore drill strategy {name!r}: choose from {', '.join(DRILLABLE)}")
    return list(strategies)


# -- which backup ------------------------------------------------------------------------------
def btw_states(backups, runs):
    """The restorable states of one btw set, oldest first.

    backups: btw_retention.list_backups (oldest first; a chain with "session_times", its sessions
    as epochs); runs: the set's recorded runs (oldest first, {location, result, figures}). Each
    state: {backup, kind, path, time, status, figures, session (chains), at (what btw_restore is
    given: the tar name or the session epoch)}."""
    by_location = {}
    for run in runs:
        by_location.setdefault(run.get("location"), []).append(run)
    states = []
    for backup in backups:
        recorded = by_location.get(backup["name"], [])
        good = [r for r in recorded if r.get("result") == GOOD]
        figures = good[-1].get("figures") if good else None
        state = {"backup": backup["name"], "kind": backup["kind"], "path": backup["path"], "figures": figures}
        if backup["kind"] == "tar":
            state.update(time=backup["time"], status=GOOD if not recorded or good else SUSPECT,
                         at=backup["name"])
        else:
            sessions = backup.get("session_times") or [backup["last"]]
            trailing_suspect = 0
            for run in reversed(recorded):
                if run.get("result") != SUSPECT:
                    break
                trailing_suspect += 1
            if recorded and not good:
                index = None  # every state of the chain was recorded suspect
            elif trailing_suspect < len(sessions):
                index = len(sessions) - 1 - trailing_suspect
            else:
                index = None
            if index is None:
                last = sessions[-1]
                state.update(time=last, status=SUSPECT, session=last, at=str(int(last)))
            else:
                state.update(time=sessions[index], status=GOOD, session=sessions[index],
                             at=str(int(sessions[index])))
        states.append(state)
    states.sort(key=lambda s: s["time"])
    return states


def newest_good(states, what="the set"):
    """The newest good state of a list (oldest first); DrillError when there is none, naming the
    suspect backups passed over."""
    suspect = [s["backup"] for s in states if s["status"] != GOOD]
    for state in reversed(states):
        if state["status"] == GOOD:
            return dict(state, skipped_suspect=[s["backup"] for s in states
                                                if s["status"] != GOOD and s["time"] > state["time"]])
    if not states:
        raise DrillError(f"no backup of {what} to restore")
    raise DrillError(f"no good backup of {what} to restore: every backup is suspect ({', '.join(suspect)})")


def btw_candidates(root, sets, now=None):
    """For each drillable btw set ({name, type, destination}): its newest good backup, with its age.

    Returns (chosen, skipped): chosen a list of {set, type, destination, backup, kind, path, at,
    time, date, age_seconds, figures, skipped_suspect}; skipped {set: why not drilled}."""
    from ansible.module_utils.btw_fs import rdiff_sessions, resolve_destination
    from ansible.module_utils.btw_retention import list_backups, read_runs

    now = time.time() if now is None else now
    chosen, skipped = [], {}
    for item in sets:
        name, kind = item.get("name"), item.get("type")
        if kind in NOT_DRILLED:
            skipped[name] = NOT_DRILLED[kind]
            continue
        if kind not in FS_TYPES + DB_TYPES:
            raise DrillError(f"set {name}: unknown type {kind!r}")
        dest = resolve_destination(root, item["destination"])
        backups = list_backups(dest)
        for backup in backups:
            if backup["kind"] == "rdiff-chain":
                backup["session_times"] = rdiff_sessions(backup["path"])
        state = newest_good(btw_states(backups, read_runs(dest)), f"set {name} ({dest})")
        chosen.append(dict(state, set=name, type=kind, destination=item["destination"],
                           date=_iso(state["time"]), age_seconds=round(max(0.0, now - state["time"]), 3)))
    if not chosen:
        raise DrillError("no btw set to drill: btw_backup_sets holds no tar, rdiff, pg_dump or mysqldump set")
    return chosen, skipped


def fcrepo_candidate(leveldb_dest, now=None):
    """The newest good LevelDB backup in leveldb_dest (fcrepo_backup_dest/leveldb), with its age and the
    record count it recorded, in btw_candidates' shape (set "leveldb")."""
    from ansible.module_utils.leveldb_backup import backup_status, list_backups, read_meta

    now = time.time() if now is None else now
    states = []
    for path in list_backups(leveldb_dest):
        meta = read_meta(path) or {}
        states.append({"backup": os.path.basename(path), "kind": "leveldb", "path": path,
                       "time": float(meta.get("created_epoch") or 0), "status": backup_status(path),
                       "figures": {"records": meta.get("records")}, "at": path})
    state = newest_good(states, f"the fcrepo LevelDB ({leveldb_dest})")
    return dict(state, set="leveldb", type="leveldb", destination=leveldb_dest, date=_iso(state["time"]),
                age_seconds=round(max(0.0, now - state["time"]), 3))


def lvm_candidate(dest, now=None):
    """The newest complete LVM snapshot backup in dest (lvm_snapshot_backup_dest), with its age (from
    its name, the UTC time of the snapshot) and the row counts it recorded at its verification, in
    btw_candidates' shape (set "mysql")."""
    import calendar

    from ansible.module_utils.lvm_restore import RestoreError, choose
    from ansible.module_utils.lvm_snapshot_copy import read_metadata

    now = time.time() if now is None else now
    try:
        path = choose(dest)
    except RestoreError as exc:
        raise DrillError(str(exc)) from exc
    name = os.path.basename(path)
    made = float(calendar.timegm(time.strptime(name, "%Y%m%dT%H%M%SZ")))
    counts = (read_metadata(path).get("verification") or {}).get("row_counts") or {}
    return {"set": "mysql", "type": "lvm", "destination": dest, "backup": name, "kind": "lvm", "path": path,
            "time": made, "date": _iso(made), "age_seconds": round(max(0.0, now - made), 3),
            "status": GOOD, "figures": {"row_counts": counts}, "at": path}


# -- proving the copy --------------------------------------------------------------------------
def tree_figures(path):
    """Regular files and their bytes under path (symlinks not followed), as the backup counts them."""
    files = size = 0
    for top, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(top, name))
            if (st.st_mode & 0o170000) == 0o100000:
                files += 1
                size += st.st_size
    return {"files": files, "bytes": size}


def compare(backup, check, expected, found):
    """One check: {backup, check, expected, found, ok} (expected None: nothing recorded, ok)."""
    return {"backup": backup, "check": check, "expected": expected, "found": found,
            "ok": expected is None or expected == found}


def prove_btw(chosen, restored, scratch_figures):
    """The checks of each restored btw set.

    chosen: btw_candidates' list; restored: {set: btw_restore result (failed, msg, verified,
    duration_seconds)}; scratch_figures: {set: tree_figures of its scratch copy} (file-system sets).
    A restore that failed is the check ``restore``; a file-system copy is compared with the files
    and bytes the backup recorded, a database with the dump's own list of tables, views and
    sequences (btw_restore's verified: each looked up in the scratch database)."""
    proofs = []
    for item in chosen:
        label = f"{item['destination']}/{item['backup']}"
        result = restored.get(item["set"]) or {"failed": True, "msg": "not restored"}
        checks = []
        if result.get("failed") or result.get("skipped"):
            checks.append(dict(compare(label, "restore", "restored", "failed"), ok=False,
                               error=str(result.get("msg") or "the restore failed")))
        elif item["type"] in FS_TYPES:
            found = scratch_figures.get(item["set"]) or {}
            for figure in ("files", "bytes"):
                recorded = (item.get("figures") or {}).get(figure)
                checks.append(compare(label, figure, recorded, found.get(figure)))
        else:
            verified = result.get("verified") or {}
            check = compare(label, "dump objects", verified.get("expected"), verified.get("found"))
            checks.append(dict(check, ok=bool(verified) and bool(verified.get("ok")),
                               missing=verified.get("missing", [])))
        proofs.append({"set": item["set"], "type": item["type"], "backup": label, "path": item["path"],
                       "backup_time": item["date"], "age_seconds": item["age_seconds"],
                       "restore_seconds": float(result.get("duration_seconds") or 0), "checks": checks})
    return proofs


def prove_fcrepo(chosen, leveldb, binaries, seconds=0.0):
    """The checks of an fcrepo scratch restore: the LevelDB's records (each read with checksums, as
    the store's owner) against the count the backup recorded; the binaries (SHA-1 of each against its
    name, read back as the owner). leveldb / binaries: the leveldb_restore and fcrepo_binaries_restore
    results (failed ones included; binaries None when there is no binaries backup); seconds: the
    time the two restores took (the modules do not report it)."""
    label = f"leveldb/{chosen['backup']}"
    checks = []
    if not leveldb or leveldb.get("failed") or leveldb.get("skipped"):
        checks.append(dict(compare(label, "restore", "restored", "failed"), ok=False,
                           error=str((leveldb or {}).get("msg") or "the LevelDB restore did not run")))
    else:
        checks.append(compare(label, "records", (chosen.get("figures") or {}).get("records"),
                              leveldb.get("records")))
    if binaries is not None:
        if binaries.get("failed") or binaries.get("skipped"):
            checks.append(dict(compare("binaries", "binaries restore", "restored", "failed"), ok=False,
                               error=str(binaries.get("msg") or "the binaries restore did not run")))
        else:
            owner = binaries.get("owner_check") or {}
            checks.append(compare("binaries", "binaries read back by the owner (SHA-1)",
                                  binaries.get("binaries"), owner.get("checked")))
            checks.append(compare("binaries", "SHA-1 mismatches", 0, len(binaries.get("mismatches") or [])))
    return [{"set": "leveldb", "type": "leveldb", "backup": label, "path": chosen["path"],
             "backup_time": chosen["date"], "age_seconds": chosen["age_seconds"],
             "restore_seconds": round(float(seconds or 0), 3), "checks": checks}]


def prove_lvm(chosen, restored):
    """The checks of an LVM scratch restore (lvm_snapshot_restore step=scratch, which started the copy
    as a throwaway server and ran CHECK TABLE on every table): the restore itself, the tables checked,
    and each table's rows against the count the backup recorded at its own verification."""
    label = f"lvm/{chosen['backup']}"
    checks = []
    if not restored or restored.get("failed") or restored.get("skipped"):
        checks.append(dict(compare(label, "restore", "restored", "failed"), ok=False,
                           error=str((restored or {}).get("msg") or "the scratch restore did not run")))
    else:
        checks.append(compare(label, "tables CHECK TABLE OK", None, restored.get("tables_checked")))
        found = restored.get("row_counts") or {}
        for table, rows in sorted(((chosen.get("figures") or {}).get("row_counts") or {}).items()):
            checks.append(compare(label, f"rows {table}", rows, found.get(table)))
    return [{"set": "mysql", "type": "lvm", "backup": label, "path": chosen["path"],
             "backup_time": chosen["date"], "age_seconds": chosen["age_seconds"],
             "restore_seconds": round(float((restored or {}).get("seconds") or 0), 3), "checks": checks}]


def describe_check(check):
    if check["check"] in ("restore", "binaries restore"):
        return f"{check['check']}: {check.get('error')}"
    return f"{check['check']}: expected {check['expected']}, found {check['found']}"


def first_failure(proofs):
    for proof in proofs:
        for check in proof["checks"]:
            if not check["ok"]:
                return proof, check
    return None, None


def drill_record(drilled, host, proofs, skipped=None, error=None):
    """The backup_runs record of one host's drill of one strategy (see the module docstring)."""
    proof, check = first_failure(proofs)
    failed = error is not None or check is not None
    if error is not None:
        failure = str(error)
    elif check is not None:
        failure = (f"restore drill of {drilled} on {host}: backup {check['backup']} failed the check "
                   f"{describe_check(check)}")
    else:
        failure = None
    restore_seconds = round(sum(p["restore_seconds"] for p in proofs), 3)
    ages = [p["age_seconds"] for p in proofs]
    record = {
        "strategy": DRILL_STRATEGY,
        "mode": drilled,
        "host": host,
        "set": f"{drilled}/{host}",
        "result": "failed" if failed else "ok",
        "location": ", ".join(p["backup"] for p in proofs),
        "size_bytes": 0,
        "duration_seconds": restore_seconds,
        "restore_seconds": restore_seconds,
        "details": {
            "backups": [{k: p[k] for k in ("set", "type", "backup", "backup_time", "age_seconds",
                                           "restore_seconds")} for p in proofs],
            "checked": [dict(describe=describe_check(c), **c) for p in proofs for c in p["checks"]],
            "skipped": dict(skipped or {}),
            "failed": failure,
        },
    }
    if ages:
        record["backup_age_seconds"] = max(ages)
    return record
