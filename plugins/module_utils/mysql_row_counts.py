"""Shrink guard of a replica: its per-table row counts against the last good ones.

The Seafile backup server holds no backup files of its database: the replica IS the backup. Its
health check counts the rows of every replicated table and compares them, with the rule every
strategy shares (retention_policy.judge), with the last good counts kept in a small JSON state file
on the backup host. A table whose count fell by more than the threshold makes the replica
**suspect**: the check says which tables and both figures, and the last good counts are NOT
replaced, so the next check compares with them again (a replica that stays shrunk keeps failing)
until the drop is accepted for one run (accept_shrink).

- Tables whose last good count is under ``min_rows`` are not compared (a tiny table going from 10
  rows to 4 is not news). A table that was counted and is gone counts as 0 rows.
- Counts are exact (``SELECT COUNT(*)``) for tables whose information_schema estimate is at most
  ``exact_max_rows``; above that the estimate (``TABLE_ROWS``) is used, so a health check never
  scans a huge table. InnoDB estimates can be off by tens of percent, so keep ``exact_max_rows``
  above the tables you care about (the default, 10 million, covers a Seafile site's tables).

State file: ``{"version": 1, "last_good": {"at", "counts": {db.table: rows}, "estimated": [...],
"accepted": bool}}``, mode 0600, written atomically (temporary file, fsync, rename).
"""
import json
import os
import time

from ansible.module_utils.btw_fs import write_atomic
from ansible.module_utils.mysql_checksum import list_tables, quote_identifier
from ansible.module_utils.mysql_connection import query
from ansible.module_utils.mysql_seed import SeedError, validate_ignore_tables
from ansible.module_utils.retention_policy import (
    DEFAULT_SHRINK_THRESHOLD,
    SUSPECT,
    RetentionPolicyError,
    check_threshold,
    describe_drops,
    judge,
)

STATE_VERSION = 1
DEFAULT_MIN_ROWS = 1000
DEFAULT_EXACT_MAX_ROWS = 10_000_000


class RowCountError(Exception):
    """Bad input or an unreadable state file; the message is meant for the operator."""


# -- pure ------------------------------------------------------------------------------------
def comparable(previous_counts, current_counts, min_rows=DEFAULT_MIN_ROWS):
    """(previous, current) limited to the tables whose last good count is >= min_rows; a table
    counted before and missing now is 0 rows now."""
    previous = {t: n for t, n in (previous_counts or {}).items()
                if isinstance(n, int) and n >= int(min_rows)}
    current = {t: int((current_counts or {}).get(t) or 0) for t in previous}
    return previous, current


def evaluate(state, counts, threshold=DEFAULT_SHRINK_THRESHOLD, min_rows=DEFAULT_MIN_ROWS,
             accept_shrink=False, estimated=(), now=None):
    """Judge counts ({db.table: rows}) against the state's last good counts.

    Returns (report, new_state): report {"result": good|suspect, "counts", "previous_at", "shrink",
    "shrink_accepted", "message", "compared"}; new_state is the state to write, or None when the
    file must stay as it is (suspect: the last good counts are kept; or nothing changed)."""
    try:
        threshold = check_threshold(threshold)
    except RetentionPolicyError as exc:
        raise RowCountError(str(exc)) from None
    if int(min_rows) < 0:
        raise RowCountError(f"min_rows must be >= 0, got {min_rows!r}")
    good = (state or {}).get("last_good") or {}
    previous, current = comparable(good.get("counts"), counts, min_rows)
    verdict = judge(previous or None, current, threshold, accept_shrink,
                    what="the replica", previous_name=good.get("at"))
    for drop in verdict["drops"]:
        drop["table"] = drop["figure"]
    if verdict["status"] == SUSPECT:
        verdict["message"] = (f"the replica is suspect: compared with the last good row counts "
                              f"({good.get('at')}), {describe_drops(verdict['drops'])}. The last good counts "
                              "are kept until the drop is accepted for one run (accept_shrink)")
    report = {
        "result": verdict["status"],
        "counts": dict(counts),
        "estimated": sorted(estimated),
        "previous_at": good.get("at"),
        "compared": len(previous),
        "shrink": verdict["drops"],
        "shrink_accepted": verdict["accepted"],
        "message": verdict["message"],
    }
    if verdict["status"] == SUSPECT:
        return report, None
    if good.get("counts") == dict(counts) and not verdict["accepted"]:
        return report, None
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    new_state = {"version": STATE_VERSION,
                 "last_good": {"at": at, "counts": dict(counts), "estimated": sorted(estimated),
                               "accepted": verdict["accepted"]}}
    return report, new_state


# -- state file ------------------------------------------------------------------------------
def read_state(path):
    """The state in path, {} when the file does not exist yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RowCountError(f"cannot read the row count state file {path}: {exc}. Move it away to start "
                            "over (the next check records the current counts as good)") from None
    if not isinstance(state, dict) or not isinstance(state.get("last_good", {}), dict):
        raise RowCountError(f"row count state file {path} is not a row count record; "
                            "move it away to start over")
    return state


def write_state(path, state):
    """Write state to path atomically, mode 0600; the directory is made (0700) when missing."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomic(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())
    except OSError as exc:
        raise RowCountError(f"cannot write the row count state file {path}: {exc}") from None


# -- server ----------------------------------------------------------------------------------
def count_rows(conn, tables, exact_max_rows=DEFAULT_EXACT_MAX_ROWS):
    """({db.table: rows}, [estimated db.table]) for tables [(db, table)]: COUNT(*) unless the
    information_schema estimate is above exact_max_rows (then the estimate)."""
    if not tables:
        return {}, []
    estimates = {}
    databases = sorted({db for db, _ in tables})
    for row in query(conn, "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA IN (" + ",".join(["%s"] * len(databases)) + ")", databases):
        estimates[(row["TABLE_SCHEMA"], row["TABLE_NAME"])] = int(row["TABLE_ROWS"] or 0)
    counts, estimated = {}, []
    for db, table in tables:
        name = f"{db}.{table}"
        estimate = estimates.get((db, table), 0)
        if exact_max_rows is not None and estimate > int(exact_max_rows):
            counts[name] = estimate
            estimated.append(name)
        else:
            rows = query(conn, f"SELECT COUNT(*) AS n FROM {quote_identifier(db)}.{quote_identifier(table)}")
            counts[name] = int(rows[0]["n"])
    return counts, estimated


def add_row_counts(facts, report):
    """Add the guard's report to the health facts (mysql_health.gather_facts): C(row_counts),
    C(suspect), and a C(row_counts) check (a failed one is a problem, so not healthy). Returns
    whether the state file was (or would be) written."""
    facts["suspect"] = bool(report and report["result"] == SUSPECT)
    if report is None:
        return False
    report = dict(report)
    changed = report.pop("changed")
    facts["row_counts"] = report
    if facts["suspect"]:
        message = report["message"]
    else:
        message = (f"{len(report['counts'])} tables counted, {report['compared']} compared with the last "
                   f"good counts ({report['previous_at'] or 'none recorded yet'})")
        if report["shrink_accepted"]:
            message += "; " + report["message"]
    facts["checks"].append({"name": "row_counts", "ok": not facts["suspect"], "message": message})
    if facts["suspect"]:
        facts["problems"].append(message)
        facts["healthy"] = False
    return changed


def row_count_guard(conn, databases, ignore_tables, state_path, threshold=DEFAULT_SHRINK_THRESHOLD,
                    min_rows=DEFAULT_MIN_ROWS, accept_shrink=False, exact_max_rows=DEFAULT_EXACT_MAX_ROWS,
                    check_mode=False):
    """Count the replica's rows of every table of databases except ignore_tables ("db.table"),
    judge them against the last good counts in state_path and record them when good (not in check
    mode). Returns the report of evaluate with "state_file" and "changed"."""
    try:
        ignore_tables = validate_ignore_tables(ignore_tables or [])
    except SeedError as exc:
        raise RowCountError(str(exc)) from None
    if not databases:
        raise RowCountError("row counts need the replicated databases (databases)")
    if not state_path or not os.path.isabs(state_path):
        raise RowCountError(f"row_counts_state must be an absolute path, got {state_path!r}")
    state = read_state(state_path)
    counts, estimated = count_rows(conn, list_tables(conn, list(databases), ignore_tables), exact_max_rows)
    report, new_state = evaluate(state, counts, threshold, min_rows, accept_shrink, estimated)
    if new_state is not None and not check_mode:
        write_state(state_path, new_state)
    report.update(state_file=state_path, changed=new_state is not None)
    return report
