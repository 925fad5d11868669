"""A command runner whose running child another thread can stop (the read-lock watchdog stops a hung
lvcreate through it).

``runner(args) -> (rc, out, err)`` like the other cores' injected runners: an argument list, no shell,
LC_ALL=C. ``stop()`` (from any thread) interrupts the child that runs now, as an operator would:
SIGINT (LVM's tools stop cleanly at their next interruptible point and undo what they started),
then SIGTERM, then SIGKILL, each after a grace period; and marks the runner stopped, so that a caller
looping over several commands can tell (``stopped``) and not start the next one.
"""

import os
import signal
import subprocess
import threading
import time


class StoppableRunner:
    def __init__(self, env=None, grace=5.0, popen=subprocess.Popen):
        self.env = dict(os.environ, LC_ALL="C", **(env or {}))
        # LVM's tools live in sbin, which a non-login PATH may lack
        path = self.env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        self.env["PATH"] = os.pathsep.join(path + [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin")
                                                   if d not in path])
        self.grace = grace
        self.popen = popen
        self.stopped = False
        self.signals = []  # signals sent by stop(), for the report
        self._proc = None
        self._lock = threading.Lock()

    def __call__(self, args):
        with self._lock:
            proc = self.popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.env, start_new_session=True)
            self._proc = proc
        try:
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._proc = None
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def stop(self):
        """Stop the running child (if any) and every later command's caller sees ``stopped``.
        Returns the signals sent."""
        with self._lock:
            self.stopped = True
            proc = self._proc
        if proc is None:
            return []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                break
            self.signals.append(signal.Signals(signum).name)
            deadline = time.monotonic() + self.grace
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        return list(self.signals)
