"""backup_report callback: a host lost to unreachability in a strategy's play is reported failed
(issue 15 item 19), and the metrics core marks it with backup_last_unreachable."""
import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible.executor.stats import AggregateStats
from ansible.module_utils import backup_metrics as bm

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_callback():
    spec = importlib.util.spec_from_file_location(
        "backup_report_under_test", os.path.join(TOP, "plugins", "callback", "backup_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


br = load_callback()


class Play:
    def __init__(self, play_vars):
        self.vars = play_vars

    def get_variable_manager(self):
        raise AttributeError


class Host:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class Task:
    def __init__(self, ignore_unreachable=False):
        self.ignore_unreachable = ignore_unreachable


class Result:
    def __init__(self, host, result, ignore_unreachable=False):
        self._host, self._result, self._task = Host(host), result, Task(ignore_unreachable)


REFUSED = {"msg": "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: "
                  "Connection refused", "unreachable": True}


def test_unreachable_host_gets_one_failed_run_with_the_strategy_and_message():
    runs = br.unreachable_runs({("fs_backup", "web2"): REFUSED["msg"]}, [])
    assert runs == [{"strategy": "fs_backup", "host": "web2", "result": "failed", "unreachable": True,
                     "location": "", "size_bytes": 0, "duration_seconds": 0,
                     "details": "unreachable: " + REFUSED["msg"]}]


def test_no_duplicate_when_the_host_already_published_a_run_of_that_strategy():
    published = [{"strategy": "fs_backup", "host": "web2", "result": "ok"},
                 {"strategy": "offsite_sync", "host": "web3", "result": "ok"}]
    runs = br.unreachable_runs({("fs_backup", "web2"): "x", ("fs_backup", "web3"): "y"}, published)
    assert [(r["host"], r["details"]) for r in runs] == [("web3", "unreachable: y")]


def test_message_is_one_line_and_bounded():
    (run,) = br.unreachable_runs({("db_backup", "h"): "line one\n  line two " + "z" * 1000}, [])
    assert run["details"].startswith("unreachable: line one line two z")
    assert len(run["details"]) == len("unreachable: ") + br.UNREACHABLE_MESSAGE_MAX
    assert run["details"].endswith("...")
    (run,) = br.unreachable_runs({("db_backup", "h"): None}, [])
    assert run["details"] == "unreachable: host unreachable"


def test_message_of_a_loop_is_the_first_unreachable_item():
    result = {"msg": "All items completed", "unreachable": True,
              "results": [{"msg": "ok", "unreachable": False}, REFUSED]}
    assert br.unreachable_message(result) == REFUSED["msg"]
    assert br.unreachable_message(REFUSED) == REFUSED["msg"]
    assert br.unreachable_message(None) is None


@pytest.mark.parametrize("play_vars,expected", [
    ({"backup_report_strategy": "fs_backup"}, "fs_backup"),
    ({"backup_report_strategy": " db_backup "}, "db_backup"),
    ({}, None),
    (None, None),
    ({"backup_report_strategy": "{{ x }}"}, None),  # only a literal name: the callback does not template
    ({"backup_report_strategy": 3}, None),
])
def test_play_strategy(play_vars, expected):
    assert br.play_strategy(Play(play_vars)) == expected


def callback_after(events):
    cb = br.CallbackModule()
    for event in events:
        event(cb)
    return cb


def test_callback_records_only_hosts_lost_in_a_strategy_play():
    cb = callback_after([
        lambda cb: cb.v2_playbook_on_play_start(Play({})),  # run_backup's validation play
        lambda cb: cb.v2_runner_on_unreachable(Result("localhost", REFUSED)),
        lambda cb: cb.v2_playbook_on_play_start(Play({"backup_report_strategy": "fs_backup"})),
        lambda cb: cb.v2_runner_on_ok(Result("web1", {})),
        lambda cb: cb.v2_runner_on_ok(Result("web2", {})),  # a controller-side task, then lost
        lambda cb: cb.v2_runner_on_unreachable(Result("web2", REFUSED)),
        lambda cb: cb.v2_runner_on_unreachable(Result("web2", {"msg": "second"})),
        lambda cb: cb.v2_runner_on_unreachable(Result("web3", {"msg": "ignored"}, ignore_unreachable=True)),
        lambda cb: cb.v2_runner_on_failed(Result("web4", {"msg": "boom"}), ignore_errors=False),
    ])
    custom = {"_run": {"backup_runs": [{"strategy": "fs_backup", "host": "web1", "result": "ok"}]}}
    runs = cb.all_runs(custom)
    assert [(r["host"], r["result"]) for r in runs] == [("web1", "ok"), ("web2", "failed")]
    assert runs[1]["details"] == "unreachable: " + REFUSED["msg"]  # the first message, once
    assert cb._reached - set(cb._unreachable) == {("fs_backup", "web1"), ("fs_backup", "web4")}


def test_all_hosts_unreachable_still_gives_runs_to_report():
    cb = callback_after([
        lambda cb: cb.v2_playbook_on_play_start(Play({"backup_report_strategy": "seafile_backup_server"})),
        lambda cb: cb.v2_runner_on_unreachable(Result("db1", REFUSED)),
    ])
    runs = cb.all_runs({})
    assert br.count_results(runs) == {"ok": 0, "suspect": 0, "failed": 1}
    assert "seafile_backup_server  -     db1   FAILED" in br.render_table(runs)


def test_unreachable_run_joins_the_run_wide_stats_like_a_set_stats_run():
    """The run-wide custom stats are what ansible-runner writes as the job's artifact_data."""
    stats = AggregateStats()
    added = br.publish_unreachable_run(stats, "fs_backup", "web2", REFUSED["msg"])
    assert added == br.unreachable_runs({("fs_backup", "web2"): REFUSED["msg"]}, [])
    # a good host publishing afterwards (set_stats: aggregate, not per host) appends to the same list
    stats.update_custom_stats("backup_runs", [{"strategy": "fs_backup", "host": "web1", "result": "ok"}])
    assert [(r["host"], r["result"]) for r in stats.custom["_run"]["backup_runs"]] == [
        ("web2", "failed"), ("web1", "ok")]
    # a host that published a run of the strategy before it was lost gets none
    assert br.publish_unreachable_run(stats, "fs_backup", "web1", "refused") == []
    assert len(stats.custom["_run"]["backup_runs"]) == 2


DISPATCHED_BY_A_TASK_QUEUE_MANAGER = """
import importlib.util, json, sys
from types import SimpleNamespace as Obj
from ansible.executor.task_queue_manager import TaskQueueManager

spec = importlib.util.spec_from_file_location("backup_report_under_test", sys.argv[1])
br = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = br  # CallbackBase looks its module up there
spec.loader.exec_module(br)

def lost(host, msg):
    return Obj(_host=Obj(get_name=lambda: host), _task=Obj(ignore_unreachable=False),
               _result={"msg": msg, "unreachable": True})

tqm = TaskQueueManager(inventory=None, variable_manager=None, loader=None, passwords={})
try:
    cb = br.CallbackModule()
    cb._init_callback_methods()
    tqm._callback_plugins = [cb]
    tqm.send_callback("v2_playbook_on_play_start", Obj(vars={"backup_report_strategy": "db_backup"}))
    tqm.send_callback("v2_runner_on_unreachable", lost("db9", sys.argv[2]))
    tqm.send_callback("v2_runner_on_unreachable", lost("db9", "again"))
    print(json.dumps({"stats": tqm._stats.custom, "report": cb.all_runs(tqm._stats.custom)}))
finally:
    tqm.cleanup()
"""


def test_run_of_a_lost_host_is_in_the_stats_before_the_stdout_callback_sees_them():
    """Dispatched by a real TaskQueueManager, as ansible-playbook and ansible-runner do: the run is in
    the manager's stats at once, and the report at the end holds it once. In a child process: a
    TaskQueueManager changes the process (signal handlers, stdio inheritance) for the tests after."""
    proc = subprocess.run([sys.executable, "-c", DISPATCHED_BY_A_TASK_QUEUE_MANAGER,
                           os.path.join(TOP, "plugins", "callback", "backup_report.py"), REFUSED["msg"]],
                          cwd=TOP, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    (run,) = out["stats"]["_run"]["backup_runs"]
    assert (run["strategy"], run["host"], run["result"], run["unreachable"]) == (
        "db_backup", "db9", "failed", True)
    assert run["details"] == "unreachable: " + REFUSED["msg"]
    assert out["report"] == [run]


def test_outside_a_task_queue_manager_the_run_is_only_reported():
    assert br.dispatching_stats() is None
    cb = callback_after([
        lambda cb: cb.v2_playbook_on_play_start(Play({"backup_report_strategy": "fs_backup"})),
        lambda cb: cb.v2_runner_on_unreachable(Result("web2", REFUSED)),
    ])
    assert [(r["host"], r["result"]) for r in cb.all_runs({})] == [("web2", "failed")]


def test_every_playbook_that_publishes_backup_runs_names_its_strategy():
    """A strategy playbook without the play var would lose an unreachable host's record again."""
    checked = []
    for path in sorted(glob.glob(os.path.join(TOP, "playbooks", "*.yml"))):
        name = os.path.basename(path)[:-4]
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if "backup_runs" not in text or name == "run_backup":  # run_backup: imports the strategy's
            continue
        plays = yaml.safe_load(text)
        # every play names it (restore_drill has one play per drilled strategy)
        assert {play.get("vars", {}).get("backup_report_strategy") for play in plays} == {name}, path
        assert f"strategy: {name}" in text, path  # the name its own backup_runs carry
        checked.append(name)
    assert {"fs_backup", "db_backup", "offsite_sync", "fcrepo_backup", "lvm_snapshot_backup",
            "seafile_backup_server"} <= set(checked)


# -- metrics core -------------------------------------------------------------------------------

def unreachable_run(strategy="fs_backup", host="web2"):
    return {"strategy": strategy, "host": host, "result": "failed", "unreachable": True,
            "details": "unreachable: refused"}


def test_unreachable_run_sets_the_gauge_and_touches_no_result_series(tmp_path):
    bm.record(str(tmp_path), [{"strategy": "fs_backup", "set": "data", "host": "web2", "result": "ok",
                               "size_bytes": 5}], now=100)
    _, _, after, _ = bm.record(str(tmp_path), [unreachable_run()], now=200)
    state = bm.parse(after)
    assert state[("fs_backup", "web2")] == {"last_unreachable": 1}
    assert state[("fs_backup", "data")]["last_result"] == 1  # the set's series is not failed forever
    assert state[("fs_backup", "data")]["last_run_timestamp_seconds"] == 100
    assert 'backup_last_unreachable{strategy="fs_backup",set="web2"} 1' in after
    assert "# TYPE backup_last_unreachable gauge" in after


def test_reached_host_clears_the_gauge_and_creates_none(tmp_path):
    bm.record(str(tmp_path), [unreachable_run()], now=100)
    ok = {"strategy": "fs_backup", "set": "data", "host": "web2", "result": "ok"}
    _, _, after, _ = bm.record(str(tmp_path), [ok], now=200,
                               reached=[("fs_backup", "web2"), ("fs_backup", "web1")])
    state = bm.parse(after)
    assert state[("fs_backup", "web2")] == {"last_unreachable": 0}
    assert ("fs_backup", "web1") not in state


def test_unreachable_run_without_host_is_refused(tmp_path):
    with pytest.raises(bm.MetricsError, match="strategy and host"):
        bm.record(str(tmp_path), [dict(unreachable_run(), host="")])
