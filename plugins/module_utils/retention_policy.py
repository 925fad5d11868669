"""One rule, for every strategy, for what makes a backup good, suspect or removable.

- A backup is **good** when it was verified and is not suspect; **suspect** when one of its size
  figures (records, files, bytes, tables...) fell below the last good backup's by more than a
  threshold fraction (the shrink guard); **failed** otherwise (not verified, incomplete).
- A suspect backup is kept, never becomes ``latest`` and is never counted as a good backup; the job
  that made it fails with a message naming the figure, both values and how to accept the drop
  (``accept_shrink: true`` for one run, which records the backup as good).
- Retention never deletes the newest good backup, never leaves fewer than ``min_good`` good
  backups, and keeps suspect backups newer than the oldest good backup it keeps (they are what an
  operator looks at next). Protections of a strategy's own (unsynced off-site copies) apply on
  top: the caller holds back what this plan would delete.

Pure Python, no I/O: the strategies (LevelDB, fcrepo binaries, btw file sets) store the figures and
statuses in their own metadata and call ``judge`` and ``plan_retention``.
"""
import time

GOOD = "good"
SUSPECT = "suspect"
FAILED = "failed"
STATUSES = (GOOD, SUSPECT, FAILED)

# A drop of more than 40 % of a figure is suspect: a source that lost half its data is caught.
DEFAULT_SHRINK_THRESHOLD = 0.4
DEFAULT_MIN_GOOD = 2
ACCEPT_HINT = "accept_shrink: true"


class RetentionPolicyError(ValueError):
    """Bad policy input (threshold, counts); the message is meant for the operator."""


def check_threshold(threshold):
    """The threshold as a float in [0, 1); 0 disables nothing, it flags any drop."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise RetentionPolicyError(
            f"shrink threshold must be a fraction between 0 and 1, got {threshold!r}") from None
    if not 0 <= value < 1:
        raise RetentionPolicyError(f"shrink threshold must be a fraction >= 0 and < 1 (0.4 = a 40 % drop), "
                                   f"got {threshold!r}")
    return value


def check_min_good(min_good):
    try:
        value = int(min_good)
    except (TypeError, ValueError):
        raise RetentionPolicyError(f"min_good must be a whole number >= 1, got {min_good!r}") from None
    if value < 1:
        raise RetentionPolicyError(f"min_good must be at least 1 (the newest good backup is always kept), "
                                   f"got {min_good!r}")
    return value


def compare_figures(previous, current, threshold=DEFAULT_SHRINK_THRESHOLD):
    """The figures of current that fell below previous's by more than threshold (a fraction).

    previous and current map figure names to numbers (None or missing: not compared). Returns a list
    of {"figure", "previous", "current", "drop"} (drop a fraction, rounded to 4 places), in the
    order of previous."""
    threshold = check_threshold(threshold)
    drops = []
    for figure, before in (previous or {}).items():
        after = (current or {}).get(figure)
        if before is None or after is None or before <= 0:
            continue
        drop = (before - after) / before
        if drop > threshold:
            drops.append({"figure": figure, "previous": before, "current": after, "drop": round(drop, 4)})
    return drops


def describe_drops(drops):
    """"records fell from 100000 to 0 (-100 %); bytes fell from ..." """
    return "; ".join(f"{d['figure']} fell from {d['previous']} to {d['current']} (-{d['drop'] * 100:.0f} %)"
                     for d in drops)


def shrink_message(drops, what="the new backup", previous_name=None, accept_hint=ACCEPT_HINT):
    """One operator-facing sentence naming every figure that dropped, both values and how to accept."""
    against = f" the last good backup ({previous_name})" if previous_name else " the last good backup"
    return (f"{what} is suspect: compared with{against}, " + describe_drops(drops)
            + ". It was kept but is not counted as good and does not replace the last good backup. "
            f"If the drop is expected (data deleted on purpose), run once with {accept_hint}.")


def judge(previous_good, figures, threshold=DEFAULT_SHRINK_THRESHOLD, accept_shrink=False,
          what="the new backup", previous_name=None):
    """Status of a verified backup with these figures against the last good backup's figures.

    Returns {"status": good|suspect, "drops": [...], "accepted": bool, "message": str|None}. With
    accept_shrink a drop is accepted (status good, accepted true, message says so)."""
    drops = compare_figures(previous_good, figures, threshold) if previous_good else []
    if not drops:
        return {"status": GOOD, "drops": [], "accepted": False, "message": None}
    if accept_shrink:
        return {"status": GOOD, "drops": drops, "accepted": True,
                "message": f"shrink accepted for this run (accept_shrink): {describe_drops(drops)}"}
    return {"status": SUSPECT, "drops": drops, "accepted": False,
            "message": shrink_message(drops, what, previous_name)}


def last_good(backups):
    """The newest good backup of a list (oldest first), None when there is none."""
    for backup in reversed(backups):
        if backup.get("status", GOOD) == GOOD:
            return backup
    return None


def plan_retention(backups, keep_count=None, max_age_seconds=None, min_good=DEFAULT_MIN_GOOD, now=None):
    """Split backups (oldest first, dicts with "status" (default good) and "last" (epoch of their newest
    state, for max_age)) into (keep, delete), both oldest first; each delete carries a "reason".

    keep_count counts good backups only; max_age deletes older ones. Whatever those say, the newest
    good backup and at least min_good good backups are kept, suspect backups newer than the oldest
    good backup kept stay, and the newest backup of any status stays (it may be the run's own)."""
    min_good = check_min_good(min_good)
    if keep_count is not None and int(keep_count) < 1:
        raise RetentionPolicyError(f"keep_count {keep_count} must be >= 1")
    now = time.time() if now is None else now
    newest_first = list(reversed(backups))
    decisions = {}
    good_seen = 0
    for index, backup in enumerate(newest_first):
        status = backup.get("status", GOOD)
        reason = None
        if index == 0:
            reason = None  # the newest backup is always kept
        elif status == GOOD:
            if keep_count is not None and good_seen >= int(keep_count):
                reason = f"beyond the newest {keep_count} good backups"
        elif status == FAILED:
            reason = "failed (not a usable backup)"
        if reason is None and max_age_seconds is not None and index > 0 and status != SUSPECT:
            last = backup.get("last", backup.get("time"))
            if last is not None and now - last > max_age_seconds:
                reason = f"newest state {_iso(last)} older than {int(max_age_seconds)}s"
        decisions[index] = reason
        if status == GOOD:
            good_seen += 1
    # minimum redundancy: un-delete the newest good backups until min_good are kept
    kept_good = [i for i, b in enumerate(newest_first)
                 if b.get("status", GOOD) == GOOD and decisions[i] is None]
    for index, backup in enumerate(newest_first):
        if len(kept_good) >= min_good:
            break
        if backup.get("status", GOOD) == GOOD and decisions[index] is not None:
            decisions[index] = None
            kept_good.append(index)
    # suspect backups: kept while newer than the oldest good backup kept
    oldest_kept_good = max(kept_good) if kept_good else len(newest_first)
    for index, backup in enumerate(newest_first):
        if backup.get("status", GOOD) == SUSPECT and index > 0:
            decisions[index] = (None if index < oldest_kept_good
                                else "suspect, older than every good backup kept")
    keep, delete = [], []
    for index, backup in enumerate(newest_first):
        if decisions[index] is None:
            keep.append(backup)
        else:
            delete.append(dict(backup, reason=decisions[index]))
    return list(reversed(keep)), list(reversed(delete))


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else None
