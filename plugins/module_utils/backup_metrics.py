"""Prometheus textfile-collector metrics: the one writer of the project's ``.prom`` files.

Two parts:

- The exposition writer every metrics file goes through (``backup_toolkit.prom`` below and the
  Seafile check's ``seafile_backup.prom``, plugins/module_utils/seafile_backup.py):
  ``render_family`` (HELP and TYPE lines, label values escaped, one value format), ``render_text``
  and ``write_textfile`` (temporary file in the same directory, fsync, mode 0644 so node_exporter,
  running as its own user, can read it, then rename into place: the collector never reads half a
  file; the temporary file is removed on failure).
- The backup runs of every strategy. One file (default ``backup_toolkit.prom``) in node_exporter's
  textfile collector directory holds the series of every strategy and set. Recording a run reads
  the file, replaces only the series of that (strategy, set) and rewrites the whole file, so the
  other strategies' metrics are kept. A lock file serialises two runs finishing at the same moment.
  A failed run updates result, duration and last-run time, but keeps the last success time and
  size of the previous good backup: alerting on ``time() - backup_last_success_timestamp_seconds``
  keeps working.
- Unreachable hosts. A run marked ``unreachable: true`` (the report callback records one for a host
  that became unreachable in a strategy's play) sets ``backup_last_unreachable`` to 1 on the
  (strategy, host) series and nothing else: such a host never ran the strategy, so its sets'
  result series are not touched (a failure there would never be cleared when the sets carry their
  own names). A host ``reached`` in a later run of the strategy sets an existing 1 back to 0.
"""
import fcntl
import math
import numbers
import os
import re
import tempfile
import time


class MetricsError(Exception):
    """Bad input or an unwritable collector directory; the message is meant for the operator."""


# --------------------------------------------------------------------------------------------
# Exposition format writer (shared by every metrics file)
# --------------------------------------------------------------------------------------------
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_TYPES = ("gauge", "counter", "untyped")
TEXTFILE_MODE = 0o644


def escape_label(value):
    """A label value for the text format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def unescape_label(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def format_value(value):
    """A sample value: booleans 1/0, integers as such, floats as Python's repr, None and NaN as
    NaN, infinities as +Inf/-Inf."""
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def render_family(name, help_text, samples, metric_type="gauge"):
    """The lines of one metric family: HELP, TYPE, then one line per (labels, value) sample.

    ``labels`` is a mapping or a sequence of (name, value) pairs (written in that order), or
    empty/None for a series without labels."""
    if not METRIC_NAME_RE.match(name):
        raise MetricsError(f"invalid metric name {name!r}")
    if metric_type not in METRIC_TYPES:
        raise MetricsError(f"invalid metric type {metric_type!r}")
    help_text = str(help_text).replace("\\", "\\\\").replace("\n", "\\n")
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {metric_type}"]
    for labels, value in samples:
        pairs = list(labels.items()) if isinstance(labels, dict) else list(labels or ())
        for label, _ in pairs:
            if not LABEL_NAME_RE.match(str(label)) or str(label).startswith("__"):
                raise MetricsError(f"invalid label name {label!r} for {name}")
        text = ",".join(f'{label}="{escape_label(label_value)}"' for label, label_value in pairs)
        lines.append(f"{name}{{{text}}} {format_value(value)}" if pairs else f"{name} {format_value(value)}")
    return lines


def render_text(families):
    """Join the lines of render_family() calls into the file's text ("" when there is nothing)."""
    lines = [line for family in families for line in family]
    return "\n".join(lines) + "\n" if lines else ""


def write_textfile(path, text, mode=TEXTFILE_MODE):
    """Write text to path atomically: temporary file in the same directory, fsync, chmod, rename.

    Raises OSError (the caller words it); the temporary file is removed whatever fails."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------------
# Backup runs (backup_toolkit.prom)
# --------------------------------------------------------------------------------------------
PREFIX = "backup_"
DEFAULT_FILE = "backup_toolkit.prom"

# name (after PREFIX) -> help text
METRICS = {
    "last_success_timestamp_seconds": "Unix time of the last successful backup.",
    "last_run_timestamp_seconds": "Unix time the last backup run finished (success or failure).",
    "last_result": "Result of the last backup run: 1 ok, 0 failed or suspect.",
    "last_suspect": ("1 when the last run's backup was kept as suspect: its size figures fell below the "
                     "last good backup's (shrink guard), so it is not counted as good; else 0."),
    "last_duration_seconds": "Duration of the last backup run in seconds.",
    "last_size_bytes": "Size of the last successful backup in bytes.",
    "last_lock_seconds": "Seconds writes were locked during the last successful backup.",
    "last_downtime_seconds": "Seconds the application was down during the last successful backup.",
    "last_restore_seconds": ("Seconds the last successful restore drill took to restore and prove its "
                             "backups (RTO; strategy restore_drill, set <drilled strategy>/<host>)."),
    "last_backup_age_seconds": ("Age in seconds of the backup the last successful restore drill proved, when "
                                "it ran (RPO at the drill; the oldest when it proved several sets)."),
    "last_unreachable": ("1 when the host (set label) was unreachable in the last run of the strategy, "
                         "0 once a later run reached it; absent for hosts never found unreachable."),
}
ORDER = list(METRICS)
ALWAYS = ("last_run_timestamp_seconds", "last_result", "last_suspect", "last_duration_seconds")
ON_SUCCESS = ("last_success_timestamp_seconds", "last_size_bytes", "last_lock_seconds",
              "last_downtime_seconds", "last_restore_seconds", "last_backup_age_seconds")
RESULTS = ("ok", "suspect", "failed")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
LINE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\d+)?$")


def _number(name, value, required=False):
    if value is None or value == "":
        if required:
            raise MetricsError(f"{name} is required")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetricsError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise MetricsError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def normalise_run(run, now=None):
    """Check one ``backup_runs`` entry and return (key, values) with key = (strategy, set)."""
    if not isinstance(run, dict):
        raise MetricsError(f"a run must be a mapping, got {type(run).__name__}")
    strategy = str(run.get("strategy") or "").strip()
    if not strategy:
        raise MetricsError("strategy is required for every run")
    backup_set = str(run.get("set") or run.get("host") or "default").strip()
    result = str(run.get("result") or "").strip()
    if result not in RESULTS:
        raise MetricsError(f"result of {strategy}/{backup_set} must be one of {', '.join(RESULTS)}, "
                           f"got {result!r}")
    finished = _number("timestamp", run.get("timestamp")) or (now if now is not None else time.time())
    values = {
        "last_run_timestamp_seconds": finished,
        "last_result": 1.0 if result == "ok" else 0.0,
        "last_suspect": 1.0 if result == "suspect" else 0.0,
        "last_duration_seconds": _number("duration_seconds", run.get("duration_seconds")) or 0.0,
    }
    if result == "ok":
        values["last_success_timestamp_seconds"] = finished
        for field, metric in (("size_bytes", "last_size_bytes"), ("lock_seconds", "last_lock_seconds"),
                              ("downtime_seconds", "last_downtime_seconds"),
                              ("restore_seconds", "last_restore_seconds"),
                              ("backup_age_seconds", "last_backup_age_seconds")):
            number = _number(field, run.get(field))
            if number is not None:
                values[metric] = number
    return (strategy, backup_set), values


def parse(text):
    """Parse a file written by render() into {(strategy, set): {metric: value}}.

    Lines of other metric families are ignored (they are not ours to keep)."""
    state = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE_RE.match(line)
        if not match or not match.group(1).startswith(PREFIX):
            continue
        metric = match.group(1)[len(PREFIX):]
        if metric not in METRICS:
            continue
        labels = {k: unescape_label(v) for k, v in LABEL_RE.findall(match.group(2) or "")}
        if "strategy" not in labels:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            raise MetricsError(f"line {lineno} of the metrics file has a bad value: {line!r}") from None
        state.setdefault((labels["strategy"], labels.get("set", "default")), {})[metric] = value
    return state


def render(state):
    """Text exposition format, one HELP/TYPE block per metric, series sorted for stable diffs."""
    families = []
    for metric in ORDER:
        series = [(key, values[metric]) for key, values in sorted(state.items()) if metric in values]
        if series:
            # values are floats once parsed; whole numbers are written without a fraction
            families.append(render_family(PREFIX + metric, METRICS[metric], [
                ((("strategy", strategy), ("set", backup_set)),
                 int(value) if float(value).is_integer() else float(value))
                for (strategy, backup_set), value in series]))
    return render_text(families)


def unreachable_key(run):
    """(strategy, host) of a run marked ``unreachable: true``, else None."""
    if not isinstance(run, dict) or not run.get("unreachable"):
        return None
    strategy, host = str(run.get("strategy") or "").strip(), str(run.get("host") or "").strip()
    if not strategy or not host:
        raise MetricsError("an unreachable run needs its strategy and host")
    return strategy, host


def merge(state, runs, now=None, reached=()):
    """Return a new state with the runs recorded; a failure keeps the previous success values.

    ``reached``: (strategy, host) pairs a run reached; each clears that series' last_unreachable
    where one is set (no series is created for it). Unreachable runs then set it to 1."""
    new = {key: dict(values) for key, values in state.items()}
    for strategy, host in reached or ():
        if "last_unreachable" in new.get((str(strategy), str(host)), {}):
            new[(str(strategy), str(host))]["last_unreachable"] = 0.0
    for run in runs:
        key = unreachable_key(run)
        if key is not None:
            new.setdefault(key, {})["last_unreachable"] = 1.0
            continue
        key, values = normalise_run(run, now)
        current = new.setdefault(key, {})
        if values["last_result"] == 1.0:
            for metric in ON_SUCCESS:  # a success without lock/downtime clears stale figures
                current.pop(metric, None)
        current.update(values)
    return new


# Strategy labels of the runs published before backup_runs used the run_backup strategy names
# (November 2026; fcrepo published its method). Series found under them in the file are moved to
# the current name when a run is recorded, so the history (last success, size) carries on and no
# series is left behind to go stale and trip a staleness alert.
RENAMED_STRATEGIES = {
    "btw_fs": "fs_backup",
    "btw_db": "db_backup",
    "btw_offsite": "offsite_sync",
    "seafile_replication": "seafile_backup_server",
    "lvm_snapshot": "lvm_snapshot_backup",
    "shutdown": "fcrepo_backup",
    "pause": "fcrepo_backup",
    "hot": "fcrepo_backup",
    "rest": "fcrepo_backup",
}


def _combine(a, b):
    """One series from two found for the same (strategy, set): the last run's result, duration and
    time; the last success's time and figures."""
    last_run, last_ok = "last_run_timestamp_seconds", "last_success_timestamp_seconds"
    newer = a if a.get(last_run, 0) >= b.get(last_run, 0) else b
    succeeded = a if a.get(last_ok, -1) >= b.get(last_ok, -1) else b
    combined = {metric: newer[metric] for metric in ALWAYS if metric in newer}
    combined.update({metric: succeeded[metric] for metric in ON_SUCCESS if metric in succeeded})
    if "last_unreachable" in newer:
        combined["last_unreachable"] = newer["last_unreachable"]
    return combined


def migrate(state):
    """Return a new state with the series of renamed strategy labels under their current name."""
    new = {}
    for (strategy, backup_set), values in sorted(state.items()):
        key = (RENAMED_STRATEGIES.get(strategy, strategy), backup_set)
        new[key] = _combine(new[key], values) if key in new else dict(values)
    return new


def record(collector_dir, runs, file_name=DEFAULT_FILE, now=None, check_mode=False, reached=()):
    """Record runs in collector_dir/file_name (``reached``: see merge()).

    Returns (changed, before_text, after_text, path)."""
    if not runs:
        raise MetricsError("no runs to record")
    if "/" in file_name or not file_name.endswith(".prom"):
        raise MetricsError(f"file_name must be a plain name ending in .prom, got {file_name!r}")
    if not os.path.isdir(collector_dir):
        raise MetricsError(f"collector directory {collector_dir} does not exist "
                           "(node_exporter --collector.textfile.directory)")
    path = os.path.join(collector_dir, file_name)
    lock_path = os.path.join(collector_dir, "." + file_name + ".lock")
    lock_fd = None
    try:
        if not check_mode:
            lock_fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        before = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                before = handle.read()
        after = render(merge(migrate(parse(before)), runs, now, reached))
        changed = after != before
        if changed and not check_mode:
            write_textfile(path, after)
        return changed, before, after, path
    except OSError as exc:
        raise MetricsError(f"cannot write metrics in {collector_dir}: {exc}") from exc
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
