"""Callback plugin: one table of the backups a playbook made, and the same as JSON."""

DOCUMENTATION = r"""
name: backup_report
type: aggregate
short_description: Print one table of the backups made and write it as JSON
description:
  - At the end of the playbook, collects the C(backup_runs) lists the strategy playbooks publish
    with C(ansible.builtin.set_stats) (run-wide and per-host), prints one table (strategy, mode,
    host, result, size, duration, lock and downtime where they apply, location) and writes the same
    runs as JSON. Restore drills (strategy C(restore_drill)) show as rows too - mode the drilled
    strategy, duration the restore time (RTO), location the backups restored - and add a column
    C(BACKUP AGE), the age of the backup each drill proved (RPO).
  - C(strategy) is the run_backup strategy name (C(fs_backup), C(fcrepo_backup)...), C(mode) the
    strategy's variant where it has one (fcrepo's C(hot)/C(pause)/C(shutdown)/C(rest), a btw set's
    type); C(-) when a run has none.
  - The JSON goes to O(path) when set (extra variable C(backup_report_path) wins over the option);
    otherwise into the directory holding the first C(location) of a run on the controller (its host
    C(localhost), or reached with C(ansible_connection=local)) when that directory exists; a run on
    another host never decides a directory on the controller. Otherwise no JSON is written and the
    table says so.
  - When O(metrics_dir) is set (or the extra variable C(backup_metrics_dir)), the runs are also
    recorded as Prometheus textfile-collector metrics there (plugins/module_utils/backup_metrics.py),
    failed runs included (for a control host running node_exporter).
  - A host that becomes unreachable in a play of a strategy playbook (the play sets the variable
    C(backup_report_strategy) to the strategy name) never reaches the play's rescue, so it publishes
    nothing; the callback adds a C(failed) run for it (strategy, host, C(details) the word
    C(unreachable) and the connection message, C(unreachable) true) unless the host already has a
    run of that strategy. In the metrics such a run sets C(backup_last_unreachable) of (strategy,
    host) to 1 instead of a failed result; a later run of the strategy that reaches the host sets it
    back to 0. Tasks with C(ignore_unreachable) do not count.
  - That run is added to the run-wide custom stats (C(backup_runs), as C(set_stats) would) when the
    host is found unreachable, so it is also in the job's C(artifact_data) under AWX/ansible-runner,
    whose stdout callback reads those stats before any other callback sees them.
  - A playbook without C(backup_runs) and without unreachable hosts prints nothing and writes nothing.
  - With a machine-readable stdout callback (C(json), C(ansible.posix.json), C(jsonl)...) the table
    is not printed, so that output stays parseable; the JSON file and the metrics are still written.
requirements:
  - enable with C(callbacks_enabled = backup_report) in ansible.cfg or ANSIBLE_CALLBACKS_ENABLED
options:
  path:
    description: File (or existing directory) to write the JSON report to.
    type: path
    env:
      - name: BACKUP_REPORT_PATH
    ini:
      - section: callback_backup_report
        key: path
  metrics_dir:
    description: node_exporter textfile collector directory to record the runs in (unset = no metrics).
    type: path
    env:
      - name: BACKUP_METRICS_DIR
    ini:
      - section: callback_backup_report
        key: metrics_dir
"""

import importlib.util
import json
import os
import sys
import tempfile
import time

from ansible.plugins.callback import CallbackBase

COLUMNS = (("strategy", "STRATEGY"), ("mode", "MODE"), ("host", "HOST"), ("result", "RESULT"),
           ("size", "SIZE"), ("duration", "DURATION"), ("lock", "LOCK"), ("downtime", "DOWNTIME"),
           ("location", "LOCATION"))
# A restore drill (strategy restore_drill) adds the age of the backup it proved (RPO); its duration is
# the restore time (RTO) and its location the backups it restored.
AGE_COLUMN = ("age", "BACKUP AGE")


def table_columns(runs):
    """COLUMNS, with BACKUP AGE after DURATION when a run carries backup_age_seconds (a drill)."""
    if not any(run.get("backup_age_seconds") is not None for run in runs):
        return COLUMNS
    at = [key for key, _ in COLUMNS].index("duration") + 1
    return COLUMNS[:at] + (AGE_COLUMN,) + COLUMNS[at:]


def human_size(value):
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def human_seconds(value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def collect_runs(custom_stats):
    """All backup_runs entries from AggregateStats.custom ({'_run': {...}, host: {...}})."""
    runs = []
    for scope in sorted(custom_stats or {}, key=lambda s: (s != "_run", s)):
        data = custom_stats[scope] or {}
        entries = data.get("backup_runs") if isinstance(data, dict) else None
        if isinstance(entries, dict):
            entries = [entries]
        for entry in entries or []:
            if isinstance(entry, dict):
                run = dict(entry)
                if scope != "_run":
                    run.setdefault("host", scope)
                runs.append(run)
    return runs


UNREACHABLE_MESSAGE_MAX = 300


def unreachable_runs(unreachable, runs):
    """Failed runs for the hosts found unreachable in a strategy's play.

    unreachable: {(strategy, host): message}, in the order found; runs: the published backup_runs.
    A host that already has a run of that strategy (it published before it was lost) gets none."""
    published = {(str(run.get("strategy")), str(run.get("host"))) for run in runs}
    added = []
    for (strategy, host), message in unreachable.items():
        if (strategy, host) in published:
            continue
        text = " ".join(str(message or "host unreachable").split())
        if len(text) > UNREACHABLE_MESSAGE_MAX:
            text = text[:UNREACHABLE_MESSAGE_MAX - 3] + "..."
        added.append({"strategy": strategy, "host": host, "result": "failed", "unreachable": True,
                      "location": "", "size_bytes": 0, "duration_seconds": 0,
                      "details": f"unreachable: {text}"})
    return added


def publish_unreachable_run(stats, strategy, host, message):
    """Add the failed run of a host just found unreachable to the run-wide custom stats, where the
    playbooks' set_stats put theirs (AggregateStats.custom['_run']['backup_runs']): the stdout
    callback reads them as they are when the playbook ends (ansible-runner: the job's artifact_data).
    Nothing when the host already published a run of that strategy. Returns the runs added."""
    added = unreachable_runs({(strategy, host): message}, collect_runs(stats.custom))
    if added:
        stats.update_custom_stats("backup_runs", added)
    return added


def dispatching_stats(max_depth=8):
    """The AggregateStats of the TaskQueueManager dispatching the current callback event, or None.

    ansible-core hands a callback the stats only in v2_playbook_on_stats, and calls the stdout
    callback first; under ansible-runner that is awx_display, which then writes the run-wide custom
    stats as the job's artifact_data. A run added there would come too late, so it is added when the
    event arrives, through TaskQueueManager.send_callback (the caller's `self`, a frame or two up)."""
    from ansible.executor.stats import AggregateStats

    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        stats = getattr(frame.f_locals.get("self"), "_stats", None)
        if isinstance(stats, AggregateStats):
            return stats
        frame = frame.f_back
    return None


def unreachable_message(result):
    """The connection error of an unreachable task result; in a loop, the first unreachable item's."""
    result = result if isinstance(result, dict) else {}
    for item in result.get("results") or []:
        if isinstance(item, dict) and item.get("unreachable") and item.get("msg"):
            return item["msg"]
    return result.get("msg")


def play_strategy(play):
    """The strategy a play runs (its play variable backup_report_strategy), or None."""
    try:
        value = (play.vars or {}).get("backup_report_strategy")
    except AttributeError:
        return None
    if not isinstance(value, str) or not value.strip() or "{" in value:
        return None
    return value.strip()


def table_rows(runs):
    rows = []
    for run in runs:
        rows.append({
            "strategy": str(run.get("strategy", "?")),
            "mode": str(run.get("mode") or "-"),
            "host": str(run.get("host", "?")),
            "result": str(run.get("result", "?")).upper(),
            "size": human_size(run.get("size_bytes")),
            "duration": human_seconds(run.get("duration_seconds")),
            "lock": human_seconds(run["lock_seconds"]) if run.get("lock_seconds") is not None else "-",
            "downtime": (human_seconds(run["downtime_seconds"])
                         if run.get("downtime_seconds") is not None else "-"),
            "location": str(run.get("location") or "-"),
            "age": (human_seconds(run["backup_age_seconds"])
                    if run.get("backup_age_seconds") is not None else "-"),
        })
    return rows


def render_table(runs):
    rows = table_rows(runs)
    columns = table_columns(runs)
    widths = {key: max([len(title)] + [len(row[key]) for row in rows]) for key, title in columns}
    lines = ["  ".join(title.ljust(widths[key]) for key, title in columns).rstrip(),
             "  ".join("-" * widths[key] for key, _ in columns)]
    for row in rows:
        lines.append("  ".join(row[key].ljust(widths[key]) for key, _ in columns).rstrip())
    counts = count_results(runs)
    suspect = f"{counts['suspect']} suspect, " if counts["suspect"] else ""
    lines.append(f"{len(runs)} backup run(s): {counts['ok']} ok, {suspect}{counts['failed']} failed")
    return "\n".join(lines)


def count_results(runs):
    """ok, suspect (the shrink guard kept the backup without counting it as good) and failed runs;
    any other result counts as failed."""
    ok = sum(1 for run in runs if run.get("result") == "ok")
    suspect = sum(1 for run in runs if run.get("result") == "suspect")
    return {"ok": ok, "suspect": suspect, "failed": len(runs) - ok - suspect}


def report_document(runs, playbook=None, now=None):
    counts = count_results(runs)
    summary = {"runs": len(runs), "ok": counts["ok"], "failed": counts["failed"]}
    if counts["suspect"]:
        summary["suspect"] = counts["suspect"]
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "playbook": playbook,
        "summary": summary,
        "runs": runs,
    }


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def host_is_local(host):
    """Whether an inventory host is the controller: named localhost, or reached with the local
    connection (set on the host or on one of its groups)."""
    if host.get_name() in LOCAL_NAMES:
        return True
    connection = (getattr(host, "vars", None) or {}).get("ansible_connection")
    if connection is None:
        for group in sorted(host.get_groups(), key=lambda g: -getattr(g, "depth", 0)):
            connection = (getattr(group, "vars", None) or {}).get("ansible_connection")
            if connection is not None:
                break
    return connection == "local"


def report_path(explicit, runs, now=None, local_hosts=LOCAL_NAMES):
    """Where the JSON goes, or None. A directory gets a timestamped file name. Without an explicit
    path, only the location of a run on the controller (host in local_hosts) decides the directory:
    a path on another host says nothing about the controller's directories."""
    name = "backup-report-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + ".json"
    if explicit:
        explicit = os.path.expanduser(str(explicit))
        return os.path.join(explicit, name) if os.path.isdir(explicit) else explicit
    for run in runs:
        if run.get("host") not in local_hosts:
            continue
        location = run.get("location")
        if isinstance(location, str) and location.startswith("/"):
            parent = os.path.dirname(location.rstrip("/")) or "/"
            if os.path.isdir(parent):
                return os.path.join(parent, name)
    return None


def write_json(path, document):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".backup-report.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def load_metrics_core():
    """plugins/module_utils/backup_metrics.py (not importable as ansible.module_utils on the controller)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils",
                        "backup_metrics.py")
    spec = importlib.util.spec_from_file_location("backup_toolkit_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "backup_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._playbook = None
        self._extra_path = None
        self._extra_metrics_dir = None
        self._strategy = None  # backup_report_strategy of the current play
        self._unreachable = {}  # (strategy, host) -> first message
        self._reached = set()  # (strategy, host) with a result that is not unreachable
        self._local_hosts = set(LOCAL_NAMES)  # hosts seen that are the controller

    def v2_playbook_on_start(self, playbook):
        self._playbook = getattr(playbook, "_file_name", None)

    def v2_playbook_on_play_start(self, play):
        self._strategy = play_strategy(play)
        try:
            extra = play.get_variable_manager().extra_vars
        except AttributeError:
            extra = {}
        if extra.get("backup_report_path"):
            self._extra_path = extra["backup_report_path"]
        if extra.get("backup_metrics_dir"):
            self._extra_metrics_dir = extra["backup_metrics_dir"]

    def _note_reached(self, result):
        try:
            if host_is_local(result._host):
                self._local_hosts.add(result._host.get_name())
        except AttributeError:
            pass
        if self._strategy:
            self._reached.add((self._strategy, result._host.get_name()))

    def v2_runner_on_ok(self, result):
        self._note_reached(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._note_reached(result)

    def v2_runner_on_unreachable(self, result):
        if not self._strategy or getattr(result._task, "ignore_unreachable", False):
            return
        key = (self._strategy, result._host.get_name())
        if key in self._unreachable:
            return
        self._unreachable[key] = unreachable_message(result._result)
        stats = dispatching_stats()
        if stats is None:
            self._display.warning(f"backup report: the failed run of unreachable host {key[1]} is in the "
                                  "report but not in the run's custom stats (not in AWX's artifact_data)")
            return
        publish_unreachable_run(stats, *key, self._unreachable[key])

    def all_runs(self, custom_stats):
        """The published backup_runs, then a failed run for each host lost to unreachability."""
        runs = collect_runs(custom_stats)
        return runs + unreachable_runs(self._unreachable, runs)

    def v2_playbook_on_stats(self, stats):
        runs = self.all_runs(getattr(stats, "custom", {}))
        if not runs:
            return
        now = time.time()
        if self._human_stdout():
            self._display.banner("BACKUP REPORT")
            self._display.display(render_table(runs))
        self._record_metrics(runs, now)
        path = report_path(self._extra_path or self.get_option("path"), runs, now, self._local_hosts)
        if path is None:
            self._say("backup report: no JSON written (set backup_report_path or BACKUP_REPORT_PATH)")
            return
        try:
            write_json(path, report_document(runs, self._playbook, now))
        except OSError as exc:
            self._display.warning(f"backup report: cannot write {path}: {exc}")
            return
        self._say(f"backup report written to {path}")

    def _say(self, message):
        """A status line: on stdout under a human stdout callback, else on stderr."""
        self._display.display(message, stderr=not self._human_stdout())

    @staticmethod
    def _human_stdout():
        """False when the stdout callback prints JSON that a program parses."""
        from ansible import constants as C

        name = os.environ.get("ORIGINAL_STDOUT_CALLBACK") or str(C.DEFAULT_STDOUT_CALLBACK or "")
        return not name.split(".")[-1].startswith("json") and not name.endswith("jsonl")

    def _record_metrics(self, runs, now):
        metrics_dir = self._extra_metrics_dir or self.get_option("metrics_dir")
        if not metrics_dir:
            return
        try:
            core = load_metrics_core()
            reached = sorted(self._reached - set(self._unreachable))
            _, _, _, path = core.record(os.path.expanduser(str(metrics_dir)), runs, now=now, reached=reached)
        except Exception as exc:  # a report problem must not hide the backup's own result
            self._display.warning(f"backup report: metrics not recorded in {metrics_dir}: {exc}")
            return
        self._say(f"backup metrics recorded in {path}")
