"""Pieces of the read-lock watchdog without a server: the runner that stops a hung child (real
processes), and the snapshot step removing what an interrupted lvcreate left. With a real MariaDB:
tests/integration/test_lvm_mysql_lock.py."""

import threading
import time

from ansible.module_utils import lvm_snapshot as L
from ansible.module_utils.stoppable_runner import StoppableRunner


def test_stop_interrupts_the_running_child_escalating_past_an_ignored_sigint():
    runner = StoppableRunner(grace=0.3)
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=runner(["sh", "-c", "trap '' INT; sleep 30"])))
    thread.start()
    deadline = time.monotonic() + 10
    while runner._proc is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the trap is set
    started = time.monotonic()
    assert runner.stop() == ["SIGINT", "SIGTERM"]
    thread.join(10)
    assert time.monotonic() - started < 5 and out["r"][0] == -15
    assert runner.stopped and runner(["true"])[0] == 0  # later commands (lvremove) still run


def test_stop_without_a_child_only_marks_the_runner_stopped():
    runner = StoppableRunner()
    assert runner(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    assert runner.stop() == [] and runner.stopped


PLANS = [{"vg": "vgdata", "origin": o, "name": f"{o}-backup-snap", "thin": False, "extents": 10}
         for o in ("mysql", "app", "logs")]


def test_an_interrupted_lvcreate_leaves_nothing_and_no_later_lvcreate_starts():
    calls = []

    def runner(args):
        calls.append(args)
        if args[0] == "lvcreate" and args[-1] == "vgdata/app":
            return -2, "", "Interrupted..."  # stopped half way: the LV may exist
        return 0, "", ""

    try:
        L.create_snapshots(runner, PLANS)
    except L.LvmError as exc:
        assert "creating snapshot vgdata/app-backup-snap failed" in str(exc)
    else:
        raise AssertionError("no error")
    removed = [c[-1] for c in calls if c[0] == "lvremove"]
    assert removed == ["vgdata/mysql-backup-snap", "vgdata/app-backup-snap"]
    assert not any(c[0] == "lvcreate" and c[-1] == "vgdata/logs" for c in calls)

    calls.clear()
    stop = []
    try:
        L.create_snapshots(lambda a: calls.append(a) or stop.append(1) or (0, "", ""), PLANS,
                           stopped=lambda: bool(stop))
    except L.LvmError as exc:
        assert "creating snapshot vgdata/app-backup-snap not started: stopped" in str(exc)
    else:
        raise AssertionError("no error")
    assert [c[0] for c in calls] == ["lvcreate", "lvremove"]


def test_with_a_cleanup_the_half_made_snapshots_are_handed_over_not_removed_here():
    """The module removes them itself once the application runs again: a hung LVM makes lvremove
    wait on the same lock the hung lvcreate waited on (seen in the lab VM)."""
    calls, handed = [], []

    def runner(args):
        calls.append(args)
        return (-2, "", "Interrupted...") if args[-1] == "vgdata/app" else (0, "", "")

    try:
        L.create_snapshots(runner, PLANS, cleanup=handed.extend)
    except L.LvmError as exc:
        assert "creating snapshot vgdata/app-backup-snap failed" in str(exc)
    else:
        raise AssertionError("no error")
    assert [p["name"] for p in handed] == ["mysql-backup-snap", "app-backup-snap"]
    assert [c[0] for c in calls] == ["lvcreate", "lvcreate"]  # no lvremove here
