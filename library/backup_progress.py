#!/usr/bin/python
"""Ansible module: wait a little for an async job and report its progress file, or cancel the job."""

DOCUMENTATION = r"""
---
module: backup_progress
short_description: Wait up to a few seconds for an async backup job and report its progress, or cancel it
description:
  - Waits at most O(wait_seconds) for the async job (given by its O(results_file)) to finish,
    then returns the progress the job's core last wrote to O(path) (bytes done, total, rate,
    time left) as one line in C(msg). Never changes anything.
  - Used in a loop by roles/backup_progress/tasks/poll.yml so the play prints progress at a steady
    interval instead of waiting silently; the job's own result is then collected with
    M(ansible.builtin.async_status).
  - "Fails at once, saying C(the job's process ended without a result: killed?), when the job can
    never deliver a result of its own: its async job file still says C(finished: false) (or is not
    JSON) while the async_wrapper process that would write the result runs no more (it was killed),
    or the wrapper recorded that the module process printed no result (it was killed with SIGKILL,
    e.g. by the OOM killer). Without this the poll went on until its timeout, or failed with
    async_wrapper's C(No start of json char found) traceback. A job killed at its C(async) limit is
    reported so too."
  - With O(state=cancelled), stops the job instead (roles/backup_progress/tasks/cancel.yml; poll.yml
    does it on timeout). The process is the one the progress file records (pid, start time and boot
    id, so a reused pid is never signalled); without a progress file, the module process of the
    async job found through Ansible's async_wrapper. It gets SIGTERM (and SIGCONT in case it is
    stopped); a core writing progress turns SIGTERM into an exception, so its cleanup runs (temp
    files, children, locks); after O(grace_seconds) it gets SIGKILL (no cleanup). Processes it
    started and that outlive it get SIGKILL. Nothing running (finished, never started, already
    cancelled) is C(ok) and not changed; in check mode it only reports what it would do.
version_added: "1.0.0"
options:
  state:
    description:
      - C(reported) waits up to O(wait_seconds) and reports progress; C(cancelled) stops the job.
    type: str
    choices: [reported, cancelled]
    default: reported
  results_file:
    description:
      - "The C(results_file) returned by the async task (C(poll: 0)) when it was registered."
      - Required with O(state=reported). With O(state=cancelled), O(results_file), O(path) or both.
    type: path
  path:
    description: Progress file the job's core writes (see plugins/module_utils/progress.py).
      Without it only the job state is reported.
    type: path
  wait_seconds:
    description: Return after this many seconds even if the job still runs (O(state=reported)).
    type: float
    default: 10
  grace_seconds:
    description: With O(state=cancelled), seconds the job has to run its cleanup and exit after
      SIGTERM before it gets SIGKILL.
    type: float
    default: 30
  collect:
    description:
      - With O(state=reported), once the job has ended well, return its result as RV(job_result) and
        remove its results file, as M(ansible.builtin.async_status) with C(mode=cleanup) does, so no
        further task is needed. A job that failed is left for M(ansible.builtin.async_status), whose
        failed task carries the job's whole result.
    type: bool
    default: false
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

- name: Cancel the copy (a rescue section, or after a timeout)
  backup_progress:
    state: cancelled
    results_file: "{{ copy_job.results_file }}"
    path: /run/backup-copy.progress
    grace_seconds: 30
  register: copy_cancel
"""

RETURN = r"""
finished:
  description: Whether the async job has finished (successfully or not); after a cancel, whether
    its process is gone.
  returned: always
  type: bool
job_state:
  description: C(running), C(finished), or C(dead) (the job file says unfinished and none of the
    job's processes runs).
  returned: when state=reported
  type: str
msg:
  description:
    - "One line of progress, e.g. C(copy: 1.2 GiB / 4.0 GiB (30%), 85.3 MiB/s, about 34s left)."
    - "With O(state=cancelled), what was done, e.g. C(cancelled LevelDB copy (pid 4242): SIGTERM,
      exited after 0.3 s, its cleanup ran; the job says: ...) or C(nothing to cancel: ...)."
  returned: always
  type: str
progress:
  description: The progress file's content (step, state, done_bytes, total_bytes,
    rate_bytes_per_second, eta_seconds, elapsed_seconds, pid, pid_start, boot_id, sigterm_handled),
    or null before the first report.
  returned: always
  type: dict
cancelled:
  description: Whether this call stopped a running job.
  returned: when state=cancelled
  type: bool
pid:
  description: Process that was (or in check mode would be) signalled; null when nothing ran.
  returned: when state=cancelled
  type: int
signals:
  description: Signals sent, in order (C(SIGTERM), then C(SIGKILL) when the grace ran out).
  returned: when state=cancelled
  type: list
  elements: str
waited_seconds:
  description: Time from SIGTERM to the process' exit.
  returned: when state=cancelled
  type: float
killed_children:
  description: Pids of processes the job had started that outlived it and got SIGKILL.
  returned: when state=cancelled
  type: list
  elements: int
job_result:
  description:
    - With O(state=cancelled), the async job's own result once it ended (e.g. its failure message),
      when available.
    - With O(state=reported) and O(collect), the result of the job that ended well (its results file
      is removed).
  returned: when state=cancelled, or state=reported with collect once the job ended well
  type: dict
job_result_file_exists:
  description: Whether the async job's results file exists (M(ansible.builtin.async_status) with
    C(mode=cleanup) needs it).
  returned: when state=cancelled
  type: bool
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.progress import (
    ProgressError,
    async_job_state,
    cancel_job,
    collect_result,
    describe,
    ended_without_result,
    read_progress,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["reported", "cancelled"], default="reported"),
            results_file=dict(type="path"),
            path=dict(type="path"),
            wait_seconds=dict(type="float", default=10),
            grace_seconds=dict(type="float", default=30),
            collect=dict(type="bool", default=False),
        ),
        required_if=[("state", "reported", ("results_file",))],
        required_one_of=[("results_file", "path")],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "cancelled":
        if p["grace_seconds"] < 0:
            module.fail_json(msg="grace_seconds must be 0 or more")
        try:
            result = cancel_job(p["path"], p["results_file"], p["grace_seconds"],
                                check_mode=module.check_mode)
        except ProgressError as exc:
            module.fail_json(msg=str(exc))
        result["finished"] = result["exited"]
        if not result["exited"] and not module.check_mode:
            module.fail_json(**result)
        module.exit_json(**result)
    deadline = time.monotonic() + max(p["wait_seconds"], 0)
    try:
        while True:
            state, job = async_job_state(p["results_file"])
            if state != "running" or time.monotonic() >= deadline:
                break
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
        data = read_progress(p["path"]) if p["path"] else None
    except ProgressError as exc:
        module.fail_json(msg=str(exc))
    finished = state != "running"
    problem = ended_without_result(state, job, p["results_file"], data)
    if problem:
        module.fail_json(msg=problem, finished=True, job_state=state, progress=data)
    msg = describe(data, now=time.time()) if p["path"] else ("finished" if finished else "running")
    result = dict(changed=False, finished=finished, job_state=state, progress=data, msg=msg)
    collected = collect_result(state, job, p["results_file"]) if p["collect"] else None
    if collected is not None:
        result["job_result"] = collected
    module.exit_json(**result)


if __name__ == "__main__":
    main()
