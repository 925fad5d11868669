"""Progress of long backup steps: a small JSON file a long-running core updates, and its reader.

A core doing long work (copy from a snapshot, dump/import, LevelDB copy, S3 sync) creates a
``ProgressFile`` and calls ``update(done_bytes)`` as it goes (cheap: the file is rewritten at most
every ``min_interval`` seconds, atomically). The play runs that module with ``async`` and polls
with roles/backup_progress/tasks/poll.yml, which reads the file through ``read_progress`` and
prints ``describe()`` at a steady interval: bytes done, total, rate, time left.

Cancelling: the file also records the writer's process (pid, its start time since boot and the boot
id, which together name one process even when the pid is reused). ``terminable()`` turns SIGTERM
into a ``Terminated`` exception in the main thread, so the core's ``finally`` blocks run (temp
files removed, children stopped, locks released); a ProgressFile arms it too when nothing else
handles SIGTERM. ``cancel_job()`` (module backup_progress, ``state: cancelled``) sends SIGTERM to
the recorded process, waits a bounded time for it to exit and sends SIGKILL after that.
"""
import contextlib
import json
import os
import signal
import tempfile
import threading
import time

STATES = ("running", "done", "failed")


class ProgressError(Exception):
    """Unusable progress file or async job file; the message is meant for the operator."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM inside ``terminable()`` (the job is being cancelled).

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` does not swallow it while
    ``finally`` blocks (and ``except BaseException: cleanup; raise``) still run."""


# -- the process behind a job ------------------------------------------------------------------
def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def proc_stat(pid):
    """(state, ppid, start ticks since boot) of a live process from /proc/<pid>/stat, None when gone."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            data = handle.read()
    except (OSError, ValueError):
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0].decode(), int(fields[1]), int(fields[19])


def process_identity(pid=None):
    """What the progress file records to find its writer again: pid, start time and boot id."""
    pid = os.getpid() if pid is None else pid
    stat = proc_stat(pid)
    return {"pid": pid, "pid_start": stat[2] if stat else None, "boot_id": _boot_id()}


def same_process(identity):
    """True when the process named by identity (pid, pid_start, boot_id) still runs (a zombie does
    not count: it has exited, its parent has not collected it yet)."""
    if not identity or not identity.get("pid") or identity.get("pid_start") is None:
        return False
    if identity.get("boot_id") and identity["boot_id"] != _boot_id():
        return False
    stat = proc_stat(identity["pid"])
    return stat is not None and stat[2] == identity["pid_start"] and stat[0] not in ("Z", "X", "x")


def _sigterm_handler():
    fired = []

    def handler(signum, frame):
        if fired:
            return  # a second SIGTERM does not interrupt the cleanup the first one started
        fired.append(signum)
        raise Terminated("received SIGTERM: the job was cancelled")

    handler.backup_toolkit_terminable = True
    return handler


def sigterm_handled():
    """True when SIGTERM raises Terminated in this process (terminable() or a ProgressFile armed it)."""
    return bool(getattr(signal.getsignal(signal.SIGTERM), "backup_toolkit_terminable", False))


@contextlib.contextmanager
def terminable():
    """Inside the block, SIGTERM raises Terminated in the main thread (so finally blocks run); the
    previous handler is restored after. Signal handlers can only be set from the main thread:
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm_handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def human_bytes(value):
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressFile:
    """Writer side. ``clock`` is injectable for tests (monotonic seconds).

    The file also records this process (pid, pid_start, boot_id) so that a cancel can find it, and
    whether SIGTERM raises Terminated here (``sigterm_handled``). When nothing handles SIGTERM yet
    (its default action, main thread) the constructor arms it (as ``terminable()`` does) and
    ``finish()`` puts the default back, so any core writing progress cleans up when cancelled;
    ``terminable=False`` leaves signals alone."""

    def __init__(self, path, step, total_bytes=None, min_interval=1.0, clock=time.monotonic,
                 wall=time.time, terminable=True):
        if not path:
            raise ProgressError("a progress file path is required")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ProgressError(f"directory of the progress file {path} does not exist")
        self.path = path
        self.step = step
        self.total = total_bytes
        self.min_interval = min_interval
        self._clock = clock
        self._wall = wall
        self._start = clock()
        self._started_at = wall()
        self._last_write = None
        self.done = 0
        self._identity = process_identity()
        self._armed = None
        if (terminable and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            self._armed = _sigterm_handler()
            signal.signal(signal.SIGTERM, self._armed)
        self._write("running", force=True)

    def update(self, done_bytes, total_bytes=None):
        """Record progress; writes the file only when min_interval has passed since the last write."""
        self.done = done_bytes
        if total_bytes is not None:
            self.total = total_bytes
        self._write("running")

    def advance(self, delta_bytes):
        self.update(self.done + delta_bytes)

    def finish(self, ok=True, message=None):
        try:
            self._write("done" if ok else "failed", force=True, message=message)
        finally:
            if self._armed is not None and signal.getsignal(signal.SIGTERM) is self._armed:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._armed = None

    def state(self, state="running", message=None):
        elapsed = max(self._clock() - self._start, 0.0)
        rate = self.done / elapsed if elapsed > 0 else None
        eta = None
        if state == "running" and rate and self.total is not None and self.total >= self.done:
            eta = (self.total - self.done) / rate
        return {
            "step": self.step, "state": state, "done_bytes": self.done, "total_bytes": self.total,
            "elapsed_seconds": round(elapsed, 3),
            "rate_bytes_per_second": round(rate, 1) if rate is not None else None,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "started_at": self._started_at, "updated_at": self._wall(), "message": message,
            **self._identity, "sigterm_handled": sigterm_handled(),
        }

    def _write(self, state, force=False, message=None):
        now = self._clock()
        if not force and self._last_write is not None and now - self._last_write < self.min_interval:
            return False
        data = self.state(state, message)
        fd, tmp = tempfile.mkstemp(prefix=".progress.", dir=os.path.dirname(os.path.abspath(self.path)))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, self.path)
            tmp = None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        self._last_write = now
        return True


class PhaseProgress:
    """Best-effort progress of a job in phases (copy, verification, ...): a ProgressFile per phase,
    written through ``factory``. Reporting is for the operator: a failing write (full /tmp) never
    fails the work. Without a path every call does nothing (``NO_PROGRESS``)."""

    def __init__(self, path=None, factory=ProgressFile):
        self.path = path
        self.factory = factory
        self.current = None

    def start(self, step, total=None):
        """The first phase. Unlike the later ones, a file that cannot be written is an error
        (ProgressError, to be raised before anything changes: a bad path is bad input)."""
        if self.path:
            try:
                self.current = self.factory(self.path, step, total_bytes=total)
            except OSError as exc:
                raise ProgressError(str(exc)) from exc

    def phase(self, step, total=None):
        if self.path:
            try:
                self.current = self.factory(self.path, step, total_bytes=total)
            except (ProgressError, OSError):
                self.current = None

    def update(self, done, total=None):
        if self.current is not None:
            try:
                self.current.update(done, total_bytes=total)
            except OSError:
                pass

    def advance(self, delta):
        if self.current is not None:
            self.update(self.current.done + delta)

    def finish(self, ok=True, message=None):
        if self.current is not None:
            try:
                self.current.finish(ok=ok, message=message)
            except OSError:
                pass


NO_PROGRESS = PhaseProgress()


def read_progress(path):
    """The last state written, or None when the file does not exist yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProgressError(f"cannot read progress file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("state") not in STATES:
        raise ProgressError(f"progress file {path} is not a progress file")
    return data


def describe(data, now=None):
    """One line for the operator: step, bytes done / total (percent), rate, time left."""
    if not data:
        return "waiting for the first progress report"
    parts = [str(data.get("step") or "work")]
    done = data.get("done_bytes") or 0
    total = data.get("total_bytes")
    if total:
        parts.append(f"{human_bytes(done)} / {human_bytes(total)} ({100.0 * done / total:.0f}%)")
    else:
        parts.append(f"{human_bytes(done)} done")
    if data.get("rate_bytes_per_second"):
        parts.append(f"{human_bytes(data['rate_bytes_per_second'])}/s")
    if data.get("state") == "running":
        if data.get("eta_seconds") is not None:
            parts.append(f"about {human_duration(data['eta_seconds'])} left")
        if now is not None and data.get("updated_at") and now - data["updated_at"] > 300:
            parts.append(f"no report for {human_duration(now - data['updated_at'])}")
    else:
        parts.append(data["state"] + (f": {data['message']}" if data.get("message") else ""))
    return ", ".join(parts)


def async_job_finished(results_file):
    """True when Ansible's async wrapper has written the job's final result, False while it runs.

    results_file is the ``results_file`` an async task (``poll: 0``) returns."""
    if not results_file:
        raise ProgressError("the async job's results_file is required (register the async task)")
    try:
        with open(os.path.expanduser(results_file), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ProgressError(f"async job file {results_file} not found "
                            "(job never started or cleaned up)") from None
    except ValueError:
        return False  # being written
    return "started" not in data or bool(data.get("finished"))


ENDED_WITHOUT_RESULT = "the job's process ended without a result: killed?"

# what async_wrapper writes when the module process printed no JSON (it was SIGKILLed or crashed)
_NO_JSON_MARKERS = ("No start of json char found", "No end of json char found")


def _job_file(results_file):
    """(data or None, valid): the async job file as async_wrapper last wrote it."""
    if not results_file:
        raise ProgressError("the async job's results_file is required (register the async task)")
    try:
        with open(os.path.expanduser(results_file), encoding="utf-8") as handle:
            return json.load(handle), True
    except FileNotFoundError:
        raise ProgressError(f"async job file {results_file} not found "
                            "(job never started or cleaned up)") from None
    except (OSError, ValueError):
        return None, False


def async_job_state(results_file, wrappers=None):
    """("running" | "finished" | "dead", the job file's content or None).

    "dead": the job file says finished: false (or is not JSON) and the job's async_wrapper process
    that would write the result runs no more, so no result will ever be written (the wrapper was
    killed, with or without the module, or the machine rebooted). async_wrapper writes the result
    before it exits, so the file is read again after looking at the processes: a job that just ended
    is "finished", not "dead".
    wrappers(results_file) -> pids of the job's result-writing async_wrapper process (default:
    async_job_writers, from /proc)."""
    wrappers = async_job_writers if wrappers is None else wrappers
    for attempt in (1, 2):
        data, valid = _job_file(results_file)
        if valid and isinstance(data, dict) and ("started" not in data or data.get("finished")):
            return "finished", data
        if attempt == 1 and wrappers(results_file):
            return "running", data
    return "dead", data


def ended_without_result(state, job, results_file, progress=None):
    """The operator's message when the job ended without a result of its own, else None.

    state and job from async_job_state; progress: the job's progress file content, if any."""
    name = os.path.basename(results_file or "")
    last = f"; last progress: {describe(progress)}" if progress else ""
    if state == "dead":
        writer = ""
        if progress and progress.get("state") == "running" and same_process(progress):
            writer = (f"; its module process (pid {progress['pid']}) still runs without its wrapper and "
                      "its result can never be collected: cancel it (roles/backup_progress cancel.yml)")
        what = ("is not valid JSON" if job is None
                else "still says finished: false")
        return (f"{ENDED_WITHOUT_RESULT} async job {name}: its job file {what} and the async_wrapper "
                f"process that would write its result runs no more (killed, e.g. kill -9 or the OOM "
                f"killer, or the machine restarted){writer}{last}")
    if state != "finished" or not isinstance(job, dict) or not job.get("failed"):
        return None
    msg = str(job.get("msg") or "")
    if any(marker in msg for marker in _NO_JSON_MARKERS):
        stderr = str(job.get("stderr") or "").strip()
        said = f"; it wrote on stderr: {stderr[-500:]}" if stderr else ""
        return (f"{ENDED_WITHOUT_RESULT} the module process of async job {name} exited without writing "
                f"its result (SIGKILL, e.g. kill -9 or the OOM killer, or a crash of the interpreter): "
                f"its cleanup did not run{said}{last}")
    if msg == "Timeout exceeded" and "child_pid" in job:
        return (f"the job was still running at its async limit and Ansible's async_wrapper killed it "
                f"(SIGKILL, async job {name}): its cleanup did not run; give the task a larger async "
                f"than the poll's timeout{last}")
    return None


# -- cancelling a job ----------------------------------------------------------------------------
def collect_result(state, job, results_file):
    """The result of a job that ended well, its job file removed as async_status mode=cleanup does,
    so the poll that saw it end is the last task that touches it; None, and nothing removed, while it
    runs, when it failed (async_status then fails the task with the whole result, which the callers'
    rescues read) or when it ended without a result. state and job from async_job_state."""
    if state != "finished" or not isinstance(job, dict) or job.get("failed"):
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(results_file)
    return dict(job, finished=True, ansible_job_id=os.path.basename(results_file))


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return []


def _all_processes():
    """{pid: (state, ppid, start)} of every process visible in /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(name)
            if stat is not None:
                table[int(name)] = stat
    return table


def descendants(pid, table=None):
    """Identities of the live descendants of pid (children, their children, ...)."""
    table = _all_processes() if table is None else table
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, (state, ppid, start) in table.items():
            if ppid == parent and state not in ("Z", "X", "x"):
                found.append({"pid": child, "pid_start": start, "boot_id": _boot_id()})
                todo.append(child)
    return found


def async_wrapper_pids(results_file, table=None):
    """Pids of the live async_wrapper processes of an Ansible async job (its supervisor and the
    process that runs the module and writes the result). The job id is ``<jid>.<pid>`` (the results
    file's name); async_wrapper runs as ``python .../AnsiballZ_async_wrapper.py <jid> <limit> ...``."""
    jid = os.path.basename(results_file or "").rsplit(".", 1)[0]
    if not jid:
        return set()
    table = _all_processes() if table is None else table
    wrappers = set()
    for pid, (state, _ppid, _start) in table.items():
        if state in ("Z", "X", "x"):
            continue
        argv = _cmdline(pid)
        for i, arg in enumerate(argv[:-1]):
            if "async_wrapper" in os.path.basename(arg) and argv[i + 1] == jid:
                wrappers.add(pid)
                break
    return wrappers


def async_job_writers(results_file, table=None):
    """Pids of the async_wrapper process that runs the job's module and writes its result (empty when
    it is gone). async_wrapper's supervisor, which only waits for it (checking every 5 s), does not
    count: the writer is the wrapper process leading its own process group (the supervisor makes it
    so), or, in the instant before, the wrapper child of a wrapper."""
    table = _all_processes() if table is None else table
    wrappers = async_wrapper_pids(results_file, table)
    writers = set()
    for pid in wrappers:
        try:
            leads = os.getpgid(pid) == pid
        except OSError:
            continue
        if leads or table[pid][1] in wrappers:
            writers.add(pid)
    return writers


def async_job_process(results_file):
    """The module process of a running Ansible async job, found through async_wrapper's processes.

    The job id is ``<jid>.<pid>`` (the results file's name); async_wrapper runs as
    ``python .../AnsiballZ_async_wrapper.py <jid> <limit> <module> ...`` and starts the module as its
    child. Returns an identity, or None when no such process runs."""
    table = _all_processes()
    wrappers = async_wrapper_pids(results_file, table)
    for pid, (state, ppid, start) in sorted(table.items()):
        if ppid in wrappers and pid not in wrappers and state not in ("Z", "X", "x"):
            return {"pid": pid, "pid_start": start, "boot_id": _boot_id()}
    return None


def _read_job(results_file):
    """(exists, finished, result) of an async job's results file."""
    if not results_file:
        return False, None, None
    try:
        with open(os.path.expanduser(results_file), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return False, None, None
    except (OSError, ValueError):
        return True, False, None
    finished = "started" not in data or bool(data.get("finished"))
    return True, finished, data if finished else None


def _signal(identity, signum):
    """Send signum to the process named by identity, only if it is still that process. With a
    pidfd (Linux 5.3+) the check and the signal name the same process, whatever happens to the pid."""
    pidfd = None
    try:
        if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
            try:
                pidfd = os.pidfd_open(identity["pid"])
            except ProcessLookupError:
                return False
            except OSError:
                pidfd = None
        if not same_process(identity):
            return False
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(identity["pid"], signum)
        except ProcessLookupError:
            return False
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _wait_gone(identities, timeout, sleep=time.sleep, clock=time.monotonic):
    deadline = clock() + timeout
    while True:
        alive = [i for i in identities if same_process(i)]
        if not alive or clock() >= deadline:
            return alive
        sleep(0.05)


def cancel_job(path=None, results_file=None, grace_seconds=30.0, check_mode=False, kill_wait=10.0,
               result_wait=10.0, sleep=time.sleep, clock=time.monotonic):
    """Stop a running async backup job, cleanly when it lets us. Returns a result dict (changed, msg...).

    The process is the one the progress file at path records (pid + start time + boot id: never a
    process that merely got the same pid), else, with results_file, the module process of the async
    job. It gets SIGTERM (and SIGCONT, should it be stopped), has grace_seconds to run its cleanup and
    exit, then gets SIGKILL. Processes it had started and that outlive it get SIGKILL too. Nothing
    running (finished, never started, already cancelled): changed False. check_mode only reports."""
    if not path and not results_file:
        raise ProgressError("give the progress file (path) and/or the async job's results_file")
    progress = read_progress(path) if path else None
    job_exists, job_finished, _ = _read_job(results_file)
    step = (progress or {}).get("step") or "the job"
    result = {"changed": False, "cancelled": False, "pid": None, "signals": [], "exited": True,
              "waited_seconds": 0.0, "killed_children": [], "job_result": None, "progress": progress}

    target, how = None, None
    if job_finished:
        result["msg"] = f"nothing to cancel: {step} has already finished"
    elif progress and progress.get("state") == "running" and progress.get("pid"):
        if same_process(progress):
            target, how = {k: progress.get(k) for k in ("pid", "pid_start", "boot_id")}, "progress file"
        else:
            result["msg"] = (f"nothing to cancel: the process of {step} (pid {progress['pid']}) is gone "
                             "(killed without writing its final state, or its pid was reused)")
    elif progress and progress.get("state") in ("done", "failed"):
        result["msg"] = f"nothing to cancel: {step} has already ended ({progress['state']})"
    if target is None and not result.get("msg") and job_exists and job_finished is False:
        target, how = async_job_process(results_file), "async job"
    if target is None:
        result.setdefault("msg", "nothing to cancel: no running job found"
                          + (f" for {results_file}" if results_file else f" writing {path}"))
        result["job_result_file_exists"] = job_exists
        return result

    result.update(pid=target["pid"], changed=True, exited=False, found_by=how)
    if check_mode:
        result["msg"] = (f"would send SIGTERM to {step} (pid {target['pid']}), "
                         f"then SIGKILL after {grace_seconds:g} s")
        result["job_result_file_exists"] = job_exists
        return result

    children = descendants(target["pid"])
    started = clock()
    handled = bool((progress or {}).get("sigterm_handled"))
    if _signal(target, signal.SIGTERM):
        result["signals"].append("SIGTERM")
        _signal(target, signal.SIGCONT)  # a stopped process handles SIGTERM only once continued
    alive = _wait_gone([target], grace_seconds, sleep, clock)
    if alive and _signal(target, signal.SIGKILL):
        result["signals"].append("SIGKILL")
        alive = _wait_gone([target], kill_wait, sleep, clock)
    result["waited_seconds"] = round(clock() - started, 3)
    result["exited"] = not alive
    result["cancelled"] = not alive
    orphans = [c for c in children if same_process(c)]
    for child in orphans:
        if _signal(child, signal.SIGKILL):
            result["killed_children"].append(child["pid"])
    _wait_gone(orphans, kill_wait, sleep, clock)

    # async_wrapper writes the job's result once the module process has exited
    deadline = clock() + (result_wait if results_file and not alive else 0)
    while True:
        job_exists, job_finished, job = _read_job(results_file)
        if job_finished or not job_exists or clock() >= deadline:
            break
        sleep(0.1)
    result["job_result_file_exists"] = job_exists
    result["job_result"] = job
    result["progress"] = read_progress(path) if path else None

    what = f"cancelled {step} (pid {target['pid']})"
    if alive:
        msg = f"could NOT stop {step} (pid {target['pid']}): still running after SIGTERM and SIGKILL"
    elif "SIGKILL" in result["signals"]:
        msg = (f"{what}: no exit within {grace_seconds:g} s of SIGTERM, SIGKILL sent: its cleanup did NOT "
               "run (look for its temp files and locks)")
    elif "SIGTERM" in result["signals"]:
        msg = f"{what}: SIGTERM, exited after {result['waited_seconds']:.1f} s" + (
            ", its cleanup ran" if handled else "")
    else:
        msg = f"{what}: it exited by itself"
    if result["killed_children"]:
        msg += f"; killed {len(result['killed_children'])} process(es) it had left running"
    final = (job or {}).get("msg") or ((result["progress"] or {}).get("message"))
    if final:
        msg += f"; the job says: {str(final).strip()[:500]}"
    result["msg"] = msg
    return result
