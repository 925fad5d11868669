#!/usr/bin/python
"""Test-only module: writes `size` bytes to `dest` in chunks, reporting through a ProgressFile."""
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.progress import ProgressFile


def main():
    module = AnsibleModule(argument_spec=dict(
        dest=dict(type="path", required=True), size=dict(type="int", required=True),
        chunk=dict(type="int", default=65536), pause=dict(type="float", default=0.1),
        progress_file=dict(type="path", required=True), fail_at=dict(type="int")))
    p = module.params
    progress = ProgressFile(p["progress_file"], "demo copy", total_bytes=p["size"], min_interval=0.2)
    done = 0
    with open(p["dest"], "wb") as handle:
        while done < p["size"]:
            if p["fail_at"] is not None and done >= p["fail_at"]:
                progress.finish(ok=False, message="disk full (simulated)")
                module.fail_json(msg=f"demo copy failed at {done} bytes")
            n = min(p["chunk"], p["size"] - done)
            handle.write(os.urandom(n))
            done += n
            progress.update(done)
            time.sleep(p["pause"])
    progress.finish()
    module.exit_json(changed=True, size=done)


if __name__ == "__main__":
    main()
