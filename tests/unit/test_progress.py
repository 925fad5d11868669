"""Progress file core: throttled atomic writes, rate and ETA, the operator's line, async job state;
SIGTERM turned into an exception (finally blocks run) and cancel of a job, with real processes."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from ansible.module_utils import progress as pg


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_eta_and_throttled_writes(tmp_path):
    clock = FakeClock()
    path = tmp_path / "p.json"
    prog = pg.ProgressFile(str(path), "copy", total_bytes=1000, min_interval=5, clock=clock, wall=lambda: 1e9)
    assert pg.read_progress(str(path))["done_bytes"] == 0
    clock.now += 2
    prog.update(100)  # within min_interval: not written
    assert pg.read_progress(str(path))["done_bytes"] == 0
    clock.now += 8
    prog.update(250)  # 250 bytes in 10 s
    data = pg.read_progress(str(path))
    assert data["done_bytes"] == 250 and data["rate_bytes_per_second"] == 25.0
    assert data["eta_seconds"] == 30.0 and data["state"] == "running"
    assert pg.describe(data) == "copy, 250 B / 1000 B (25%), 25 B/s, about 30s left"
    prog.finish()
    data = pg.read_progress(str(path))
    assert data["state"] == "done" and data["eta_seconds"] is None
    assert pg.describe(data).endswith("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_unknown_total_and_failure_message(tmp_path):
    clock = FakeClock()
    prog = pg.ProgressFile(str(tmp_path / "p"), "s3 sync", clock=clock)
    clock.now += 4
    prog.advance(3 * 1024 * 1024)
    prog.finish(ok=False, message="403 Forbidden")
    line = pg.describe(pg.read_progress(str(tmp_path / "p")))
    assert line == "s3 sync, 3.0 MiB done, 768.0 KiB/s, failed: 403 Forbidden"


def test_stale_report_is_flagged():
    data = {"step": "dump", "state": "running", "done_bytes": 10, "total_bytes": None,
            "rate_bytes_per_second": None, "eta_seconds": None, "updated_at": 1000.0}
    assert "no report for 10m00s" in pg.describe(data, now=1600.0)
    assert pg.describe(None) == "waiting for the first progress report"


def test_reader_errors(tmp_path):
    assert pg.read_progress(str(tmp_path / "missing")) is None
    (tmp_path / "bad").write_text("{not json")
    with pytest.raises(pg.ProgressError, match="cannot read progress file"):
        pg.read_progress(str(tmp_path / "bad"))
    (tmp_path / "other").write_text(json.dumps({"state": "weird"}))
    with pytest.raises(pg.ProgressError, match="not a progress file"):
        pg.read_progress(str(tmp_path / "other"))
    with pytest.raises(pg.ProgressError, match="does not exist"):
        pg.ProgressFile(str(tmp_path / "no" / "dir"), "x")


def test_async_job_states(tmp_path):
    job = tmp_path / "j1"
    job.write_text(json.dumps({"started": 1, "finished": 0, "ansible_job_id": "j1"}))
    assert pg.async_job_finished(str(job)) is False
    job.write_text('{"started": 1, "fini')  # being rewritten
    assert pg.async_job_finished(str(job)) is False
    job.write_text(json.dumps({"changed": True, "rc": 0}))  # the module's final result
    assert pg.async_job_finished(str(job)) is True
    with pytest.raises(pg.ProgressError, match="not found"):
        pg.async_job_finished(str(tmp_path / "nope"))


def test_collect_takes_the_result_of_a_job_that_ended_well_and_only_that(tmp_path):
    results = tmp_path / "123.456"
    results.write_text(json.dumps({"changed": True, "path": "/srv/backup/x"}))
    assert pg.collect_result("running", None, str(results)) is None
    assert results.exists()
    failed = {"failed": True, "msg": "copy failed", "result": "suspect"}
    # a failed job is left for async_status, whose failed task carries its whole result
    assert pg.collect_result("finished", failed, str(results)) is None
    assert pg.collect_result("dead", None, str(results)) is None
    assert results.exists()
    job = json.loads(results.read_text())
    assert pg.collect_result("finished", job, str(results)) == {
        "changed": True, "path": "/srv/backup/x", "finished": True, "ansible_job_id": "123.456"}
    assert not results.exists()  # cleaned up as async_status mode=cleanup does
    # a second look at a job already collected changes nothing
    assert pg.collect_result("finished", job, str(results))["finished"] is True


def test_progress_file_is_private(tmp_path):
    from ansible.module_utils.progress import ProgressFile

    path = tmp_path / "progress.json"
    progress = ProgressFile(str(path), "copy", total_bytes=10)
    progress.finish()
    assert (path.stat().st_mode & 0o777) == 0o600


# -- SIGTERM and cancel, with real processes ------------------------------------------------------
MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "plugins", "module_utils")

# A stand-in for a core: writes a progress file, works in a loop, cleans up in finally.
WORKER = r"""
import os, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import progress as pg
work, mode = sys.argv[2], sys.argv[3]
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = None
try:
    ctx = pg.terminable() if mode == "terminable" else open(os.devnull)
    with ctx:
        p = pg.ProgressFile(os.path.join(work, "p"), "work", total_bytes=100, min_interval=0)
        part = os.path.join(work, "out.part")
        open(part, "w").close()
        if mode == "orphan":
            child = subprocess.Popen(["sleep", "300"])
            open(os.path.join(work, "child"), "w").write(str(child.pid))
        open(os.path.join(work, "ready"), "w").close()
        try:
            for i in range(600):
                p.update(i)
                time.sleep(0.1)
        except pg.Terminated as exc:
            p.finish(ok=False, message="cancelled: " + str(exc))
            raise
        finally:
            os.unlink(part)
            open(os.path.join(work, "finally-ran"), "w").close()
except pg.Terminated:
    sys.exit(3)
"""


def start_worker(tmp_path, mode):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen([sys.executable, str(script), MODULE_UTILS, str(tmp_path), mode])
    deadline = time.monotonic() + 30
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "worker did not start"
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("mode", ["progress", "terminable"])
def test_sigterm_becomes_an_exception_and_the_finally_runs(tmp_path, mode):
    proc = start_worker(tmp_path, mode)
    data = pg.read_progress(str(tmp_path / "p"))
    assert data["pid"] == proc.pid and data["sigterm_handled"] is True
    assert pg.same_process(data)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 3  # Terminated reached the top: exit 3, not killed by the signal
    assert (tmp_path / "finally-ran").exists() and not (tmp_path / "out.part").exists()
    data = pg.read_progress(str(tmp_path / "p"))
    assert data["state"] == "failed"
    assert data["message"] == "cancelled: received SIGTERM: the job was cancelled"
    assert not pg.same_process(data)


def test_terminable_restores_the_previous_handler_and_progress_disarms_on_finish(tmp_path):
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with pg.terminable():
            assert pg.sigterm_handled()
            pg.ProgressFile(str(tmp_path / "a"), "x").finish()  # someone handles SIGTERM: left alone
            assert pg.sigterm_handled()
        assert signal.getsignal(signal.SIGTERM) is mine
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        prog = pg.ProgressFile(str(tmp_path / "b"), "x")
        assert pg.sigterm_handled() and pg.read_progress(str(tmp_path / "b"))["sigterm_handled"]
        prog.finish()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        pg.ProgressFile(str(tmp_path / "c"), "x", terminable=False)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_cancel_stops_the_job_its_cleanup_runs_and_a_second_cancel_is_a_no_op(tmp_path):
    proc = start_worker(tmp_path, "progress")
    path = str(tmp_path / "p")
    preview = pg.cancel_job(path, check_mode=True)
    assert preview["changed"] and preview["pid"] == proc.pid and preview["signals"] == []
    assert "would send SIGTERM to work (pid" in preview["msg"]
    assert proc.poll() is None  # check mode sent nothing
    result = pg.cancel_job(path, grace_seconds=20)
    assert proc.wait(5) == 3
    assert result["changed"] and result["cancelled"] and result["signals"] == ["SIGTERM"]
    assert result["msg"].startswith(f"cancelled work (pid {proc.pid}): SIGTERM, exited after ")
    assert ", its cleanup ran; the job says: cancelled: received SIGTERM" in result["msg"]
    assert result["progress"]["state"] == "failed" and not (tmp_path / "out.part").exists()
    again = pg.cancel_job(path)
    assert not again["changed"] and again["msg"] == "nothing to cancel: work has already ended (failed)"


def test_cancel_sigkills_a_job_that_ignores_sigterm_and_says_its_cleanup_did_not_run(tmp_path):
    proc = start_worker(tmp_path, "ignore")
    assert pg.read_progress(str(tmp_path / "p"))["sigterm_handled"] is False
    result = pg.cancel_job(str(tmp_path / "p"), grace_seconds=0.5)
    assert proc.wait(5) == -signal.SIGKILL
    assert result["signals"] == ["SIGTERM", "SIGKILL"] and result["cancelled"]
    assert "SIGKILL sent: its cleanup did NOT run" in result["msg"]
    assert (tmp_path / "out.part").exists()  # what a SIGKILL leaves: the reason for the grace period
    # the progress file still says running, but its process is gone: nothing more to cancel
    again = pg.cancel_job(str(tmp_path / "p"))
    assert not again["changed"] and "is gone" in again["msg"]


def test_cancel_resumes_a_stopped_job_so_it_can_clean_up(tmp_path):
    proc = start_worker(tmp_path, "progress")
    proc.send_signal(signal.SIGSTOP)
    try:
        result = pg.cancel_job(str(tmp_path / "p"), grace_seconds=20)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(5) == 3 and result["signals"] == ["SIGTERM"]
    assert not (tmp_path / "out.part").exists()


def test_cancel_kills_children_the_job_left_running(tmp_path):
    proc = start_worker(tmp_path, "orphan")
    child = int((tmp_path / "child").read_text())
    child_identity = pg.process_identity(child)
    result = pg.cancel_job(str(tmp_path / "p"), grace_seconds=20)
    assert proc.wait(5) == 3
    assert result["killed_children"] == [child]
    assert "killed 1 process(es) it had left running" in result["msg"]
    assert not pg.same_process(child_identity)


def test_a_reused_pid_is_never_signalled(tmp_path):
    # A progress file left by a dead job whose pid now belongs to another process (here: pytest)
    me = pg.process_identity()
    stale = dict(me, pid_start=me["pid_start"] - 1)
    data = {"step": "copy", "state": "running", "done_bytes": 1, "total_bytes": None, **stale}
    (tmp_path / "p").write_text(json.dumps(data))
    result = pg.cancel_job(str(tmp_path / "p"))
    assert not result["changed"] and "is gone" in result["msg"]
    other_boot = dict(data, pid_start=me["pid_start"], boot_id="00000000-0000-0000-0000-000000000000")
    (tmp_path / "p").write_text(json.dumps(other_boot))
    assert not pg.cancel_job(str(tmp_path / "p"))["changed"]


def test_cancel_of_a_finished_or_unknown_job_changes_nothing(tmp_path):
    job = tmp_path / "j1.123"
    job.write_text(json.dumps({"rc": 0, "changed": True}))
    assert pg.cancel_job(results_file=str(job))["msg"] == "nothing to cancel: the job has already finished"
    result = pg.cancel_job(path=str(tmp_path / "missing"), results_file=str(tmp_path / "j2.1"))
    assert not result["changed"] and not result["job_result_file_exists"]
    with pytest.raises(pg.ProgressError, match="give the progress file"):
        pg.cancel_job()


def test_proc_stat_parses_names_with_spaces_and_parentheses(tmp_path):
    exe = tmp_path / "a b) (c"
    os.symlink("/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "30"])
    try:
        time.sleep(0.2)
        state, ppid, start = pg.proc_stat(proc.pid)
        assert ppid == os.getpid() and start > 0 and state in "RSD"
    finally:
        proc.kill()
        proc.wait()
    assert pg.proc_stat(proc.pid) is None


# -- a job that ends without a result: Ansible's real async_wrapper, killed with -9 ---------------
FAKE_MODULE = """#!{python}
import os, sys, time
open(os.path.join({work!r}, "module.pid"), "w").write(str(os.getpid()))
time.sleep(120)
print('{{"changed": false}}')
"""


def start_async_job(tmp_path):
    """Ansible's own async_wrapper.py running a module (a sleeping script), as `async: 600, poll: 0`
    starts it; returns (results_file, module pid, wrapper pid: the process that writes the result)."""
    import ansible.modules

    module = tmp_path / "module-dir" / "fake_module.py"
    module.parent.mkdir()
    module.write_text(FAKE_MODULE.format(python=sys.executable, work=str(tmp_path)))
    module.chmod(0o700)
    # copied out of ansible/modules, as Ansible ships it to the host (AnsiballZ_async_wrapper.py): run
    # from its own directory, its sibling modules would shadow the standard library (tempfile)
    wrapper = tmp_path / "AnsiballZ_async_wrapper.py"
    shutil.copy(os.path.join(os.path.dirname(ansible.modules.__file__), "async_wrapper.py"), wrapper)
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    started = subprocess.run([sys.executable, str(wrapper), "4242", "600", str(module), "_"], env=env,
                             capture_output=True, text=True, timeout=60, check=True)
    results_file = json.loads(started.stdout)["results_file"]
    deadline = time.monotonic() + 30
    while not (tmp_path / "module.pid").exists():
        assert time.monotonic() < deadline, "the module did not start"
        time.sleep(0.02)
    pid = int((tmp_path / "module.pid").read_text())
    return results_file, pid, pg.proc_stat(pid)[1]


def kill_job(results_file):
    module = pg.async_job_process(results_file)
    for pid in pg.async_wrapper_pids(results_file) | ({module["pid"]} if module else set()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_state(results_file, want, seconds=15):
    deadline = time.monotonic() + seconds
    while True:
        state, job = pg.async_job_state(results_file)
        if state == want or time.monotonic() >= deadline:
            return state, job
        time.sleep(0.1)


def test_a_running_job_is_running_and_a_module_killed_with_sigkill_ended_without_a_result(tmp_path):
    results_file, module, wrapper = start_async_job(tmp_path)
    try:
        assert wrapper in pg.async_wrapper_pids(results_file)
        state, job = pg.async_job_state(results_file)
        assert state == "running" and job["finished"] is False
        assert pg.ended_without_result(state, job, results_file) is None
        os.kill(module, signal.SIGKILL)
        state, job = wait_state(results_file, "finished")
        # async_wrapper's own words
        assert state == "finished" and "No start of json char found" in job["msg"]
        progress = {"state": "running", "step": "copy", "done_bytes": 5, "total_bytes": 10}
        msg = pg.ended_without_result(state, job, results_file, progress)
        assert msg.startswith("the job's process ended without a result: killed? the module process of "
                              f"async job {os.path.basename(results_file)} exited without writing its "
                              "result (SIGKILL")
        assert "Traceback" not in msg and msg.endswith("last progress: copy, 5 B / 10 B (50%)")
    finally:
        kill_job(results_file)


def test_a_job_whose_wrapper_is_killed_is_dead_at_once(tmp_path):
    results_file, module, wrapper = start_async_job(tmp_path)
    try:
        assert pg.async_job_writers(results_file) == {wrapper}  # not its supervisor
        os.kill(wrapper, signal.SIGKILL)  # the process that would write the result; the module runs on
        state, job = wait_state(results_file, "dead", seconds=2)  # its supervisor still runs: not a writer
        assert state == "dead" and job == {"started": True, "finished": False,
                                           "ansible_job_id": os.path.basename(results_file)}
        progress = pg.process_identity(module)
        progress.update(state="running", step="copy")
        msg = pg.ended_without_result(state, job, results_file, progress)
        assert msg.startswith("the job's process ended without a result: killed? async job "
                              f"{os.path.basename(results_file)}: its job file still says finished: false "
                              "and the async_wrapper process that would write its result runs no more")
        assert f"its module process (pid {module}) still runs without its wrapper" in msg
        # a job file that is not JSON (written by hand, a full disk): the same, said so
        with open(results_file, "w") as handle:
            handle.write('{"started": 1, "fini')
        state, job = pg.async_job_state(results_file)
        assert state == "dead" and job is None
        assert "its job file is not valid JSON" in pg.ended_without_result(state, job, results_file)
    finally:
        try:
            os.kill(module, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_job_that_just_finished_is_never_taken_for_dead(tmp_path):
    job = tmp_path / "j1.1"
    job.write_text(json.dumps({"started": True, "finished": False, "ansible_job_id": "j1.1"}))

    def wrappers_gone_after_writing(_results_file):
        # async_wrapper writes the result, then exits: between our two reads of the job file
        job.write_text(json.dumps({"changed": True, "rc": 0}))
        return set()

    assert pg.async_job_state(str(job), wrappers=wrappers_gone_after_writing) == ("finished",
                                                                                   {"changed": True, "rc": 0})
    assert pg.ended_without_result("finished", {"changed": True, "rc": 0}, str(job)) is None
    timeout = {"msg": "Timeout exceeded", "failed": True, "child_pid": 7}
    assert "Ansible's async_wrapper killed it" in pg.ended_without_result("finished", timeout, str(job))
    assert pg.ended_without_result("finished", {"failed": True, "msg": "disk full"}, str(job)) is None
