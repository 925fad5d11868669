"""Prometheus textfile-collector metrics for every backup strategy.

One file (default ``backup_toolkit.prom``) in node_exporter's textfile collector directory holds
the series of every strategy and set. Recording a run reads the file, replaces only the series of
that (strategy, set) and writes the whole file to a temporary name in the same directory, then
renames it into place, so node_exporter never reads a half-written file and the other strategies'
metrics are kept. A lock file serialises two runs finishing at the same moment.

A failed run updates result, duration and last-run time, but keeps the last success time and size
of the previous good backup: alerting on ``time() - backup_last_success_timestamp_seconds`` keeps
working.
"""
import fcntl
import math
import os
import re
import tempfile
import time

PREFIX = "backup_"
DEFAULT_FILE = "backup_toolkit.prom"

# name -> (help text, written on failure too?)
METRICS = {
    "last_success_timestamp_seconds": "Unix time of the last successful backup.",
    "last_run_timestamp_seconds": "Unix time the last backup run finished (success or failure).",
    "last_result": "Result of the last backup run: 1 ok, 0 failed.",
    "last_duration_seconds": "Duration of the last backup run in seconds.",
    "last_size_bytes": "Size of the last successful backup in bytes.",
    "last_lock_seconds": "Seconds writes were locked during the last successful backup.",
    "last_downtime_seconds": "Seconds the application was down during the last successful backup.",
}
ORDER = list(METRICS)
ALWAYS = ("last_run_timestamp_seconds", "last_result", "last_duration_seconds")
ON_SUCCESS = ("last_success_timestamp_seconds", "last_size_bytes", "last_lock_seconds",
              "last_downtime_seconds")
RESULTS = ("ok", "failed")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
LINE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\d+)?$")


class MetricsError(Exception):
    """Bad input or an unwritable collector directory; the message is meant for the operator."""


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


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
        "last_duration_seconds": _number("duration_seconds", run.get("duration_seconds")) or 0.0,
    }
    if result == "ok":
        values["last_success_timestamp_seconds"] = finished
        for field, metric in (("size_bytes", "last_size_bytes"), ("lock_seconds", "last_lock_seconds"),
                              ("downtime_seconds", "last_downtime_seconds")):
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
        labels = {k: _unescape(v) for k, v in LABEL_RE.findall(match.group(2) or "")}
        if "strategy" not in labels:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            raise MetricsError(f"line {lineno} of the metrics file has a bad value: {line!r}") from None
        state.setdefault((labels["strategy"], labels.get("set", "default")), {})[metric] = value
    return state


def _format(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(state):
    """Text exposition format, one HELP/TYPE block per metric, series sorted for stable diffs."""
    out = []
    for metric in ORDER:
        series = [(key, values[metric]) for key, values in sorted(state.items()) if metric in values]
        if not series:
            continue
        name = PREFIX + metric
        out.append(f"# HELP {name} {METRICS[metric]}")
        out.append(f"# TYPE {name} gauge")
        for (strategy, backup_set), value in series:
            labels = f'strategy="{_escape(strategy)}",set="{_escape(backup_set)}"'
            out.append(f"{name}{{{labels}}} {_format(value)}")
    return "\n".join(out) + "\n" if out else ""


def merge(state, runs, now=None):
    """Return a new state with the runs recorded; a failure keeps the previous success values."""
    new = {key: dict(values) for key, values in state.items()}
    for run in runs:
        key, values = normalise_run(run, now)
        current = new.setdefault(key, {})
        if values["last_result"] == 1.0:
            for metric in ON_SUCCESS:  # a success without lock/downtime clears stale figures
                current.pop(metric, None)
        current.update(values)
    return new


def record(collector_dir, runs, file_name=DEFAULT_FILE, now=None, check_mode=False):
    """Record runs in collector_dir/file_name. Returns (changed, before_text, after_text, path)."""
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
        after = render(merge(parse(before), runs, now))
        changed = after != before
        if changed and not check_mode:
            _write_atomic(path, after)
        return changed, before, after, path
    except OSError as exc:
        raise MetricsError(f"cannot write metrics in {collector_dir}: {exc}") from exc
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _write_atomic(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # node_exporter runs as its own user and must read it
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
