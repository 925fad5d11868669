#!/usr/bin/python
"""Ansible module: wait a little for an async job and report its progress file."""

DOCUMENTATION = r"""
---
module: backup_progress
short_description: Wait up to a few seconds for an async backup job and report its progress
description:
  - Waits at most O(wait_seconds) for the async job (given by its O(results_file)) to finish,
    then returns the progress the job's core last wrote to O(path) (bytes done, total, rate,
    time left) as one line in C(msg). Never changes anything.
  - Used in a loop by roles/backup_progress/tasks/poll.yml so the play prints progress at a steady
    interval instead of waiting silently; the job's own result is then collected with
    M(ansible.builtin.async_status).
version_added: "1.0.0"
options:
  results_file:
    description: "The C(results_file) returned by the async task (C(poll: 0)) when it was registered."
    type: path
    required: true
  path:
    description: Progress file the job's core writes (see plugins/module_utils/progress.py).
      Without it only the job state is reported.
    type: path
  wait_seconds:
    description: Return after this many seconds even if the job still runs.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Copy from the snapshot (async)
  my_copy_module:
    src: /mnt/snap
    dest: /srv/backup/new
    progress_file: /run/backup-copy.progress
  async: 21600
  poll: 0
  register: copy_job

- name: Report progress of the copy every 10 s
  backup_progress:
    results_file: "{{ copy_job.results_file }}"
    path: /run/backup-copy.progress
    wait_seconds: 10
  loop: "{{ range(2160) | list }}"
  loop_control:
    label: "{{ copy_progress.msg | default('starting') }}"
    break_when:
      - copy_progress.finished or copy_progress is failed
  register: copy_progress
"""

RETURN = r"""
finished:
  description: Whether the async job has finished (successfully or not).
  returned: always
  type: bool
msg:
  description: "One line of progress, e.g. C(copy: 1.2 GiB / 4.0 GiB (30%), 85.3 MiB/s, about 34s left)."
  returned: always
  type: str
progress:
  description: The progress file's content (step, state, done_bytes, total_bytes,
    rate_bytes_per_second, eta_seconds, elapsed_seconds), or null before the first report.
  returned: always
  type: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.progress import ProgressError, async_job_finished, describe, read_progress


def main():
    module = AnsibleModule(
        argument_spec=dict(
            results_file=dict(type="path", required=True),
            path=dict(type="path"),
            wait_seconds=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    deadline = time.monotonic() + max(p["wait_seconds"], 0)
    try:
        while True:
            finished = async_job_finished(p["results_file"])
            if finished or time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
        data = read_progress(p["path"]) if p["path"] else None
    except ProgressError as exc:
        module.fail_json(msg=str(exc))
    msg = describe(data, now=time.time()) if p["path"] else ("finished" if finished else "running")
    module.exit_json(changed=False, finished=finished, progress=data, msg=msg)


if __name__ == "__main__":
    main()
