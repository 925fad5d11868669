"""Progress of long backup steps: a small JSON file a long-running core updates, and its reader.

A core doing long work (copy from a snapshot, dump/import, LevelDB copy, S3 sync) creates a
``ProgressFile`` and calls ``update(done_bytes)`` as it goes (cheap: the file is rewritten at most
every ``min_interval`` seconds, atomically). The play runs that module with ``async`` and polls
with roles/backup_progress/tasks/poll.yml, which reads the file through ``read_progress`` and
prints ``describe()`` at a steady interval: bytes done, total, rate, time left.
"""
import json
import os
import tempfile
import time

STATES = ("running", "done", "failed")


class ProgressError(Exception):
    """Unusable progress file or async job file; the message is meant for the operator."""


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
    """Writer side. ``clock`` is injectable for tests (monotonic seconds)."""

    def __init__(self, path, step, total_bytes=None, min_interval=1.0, clock=time.monotonic,
                 wall=time.time):
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
        self._write("done" if ok else "failed", force=True, message=message)

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
