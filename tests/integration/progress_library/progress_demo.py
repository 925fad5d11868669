#!/usr/bin/python
"""Test-only module: writes `size` bytes to `dest` in chunks, reporting through a ProgressFile.

Like a core: writes `dest`.part and renames it when complete; the part file is removed in finally, so
a cancel (SIGTERM, see roles/backup_progress/tasks/cancel.yml) leaves nothing. Without progress_file
it uses terminable() directly; with ignore_sigterm it ignores SIGTERM (only SIGKILL stops it);
with child it starts a `sleep` it never stops (a process the cancel must not leave behind)."""
import contextlib
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.progress import ProgressFile, Terminated, terminable


def main():
    module = AnsibleModule(argument_spec=dict(
        dest=dict(type="path", required=True), size=dict(type="int", required=True),
        chunk=dict(type="int", default=65536), pause=dict(type="float", default=0.1),
        progress_file=dict(type="path"), fail_at=dict(type="int"),
        ignore_sigterm=dict(type="bool", default=False), child=dict(type="bool", default=False)))
    p = module.params
    if p["ignore_sigterm"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if p["child"]:
        with open(p["dest"] + ".child", "w", encoding="ascii") as handle:
            handle.write(str(subprocess.Popen(["sleep", "600"]).pid))
    part = p["dest"] + ".part"
    progress = None
    done = 0
    try:
        with terminable() if not p["progress_file"] else contextlib.nullcontext():
            if p["progress_file"]:
                progress = ProgressFile(p["progress_file"], "demo copy", total_bytes=p["size"],
                                        min_interval=0.2)
            with open(part, "wb") as handle:
                while done < p["size"]:
                    if p["fail_at"] is not None and done >= p["fail_at"]:
                        progress.finish(ok=False, message="disk full (simulated)")
                        module.fail_json(msg=f"demo copy failed at {done} bytes")
                    n = min(p["chunk"], p["size"] - done)
                    handle.write(os.urandom(n))
                    done += n
                    if progress:
                        progress.update(done)
                    time.sleep(p["pause"])
            os.rename(part, p["dest"])
    except Terminated:
        if progress:
            progress.finish(ok=False, message="cancelled")
        module.fail_json(msg=f"demo copy cancelled at {done} bytes, partial file removed")
    finally:
        if os.path.exists(part):
            os.unlink(part)
    if progress:
        progress.finish()
    module.exit_json(changed=True, size=done)


if __name__ == "__main__":
    main()
