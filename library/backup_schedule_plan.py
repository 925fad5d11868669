#!/usr/bin/python
"""Ansible module: validate backup schedules and render the files that install them."""

DOCUMENTATION = r"""
---
module: backup_schedule_plan
short_description: Validate backup job schedules and render their wrapper, timer or cron files
description:
  - Checks every job of the role backup_schedule (name, strategy, schedule) and returns the
    content of the files that install it; changes nothing (the role writes the files).
  - A job's O(jobs[].schedule) is a 5-field cron expression or a shortcut (C(@daily) ...). With
    systemd it becomes an C(OnCalendar) expression with the same meaning (or the job's
    O(jobs[].on_calendar) is used), checked with C(systemd-analyze calendar) when that exists.
  - A schedule that does not parse fails the task with a message naming the job and the field.
  - Every value written into a unit, a cron line or the wrapper is checked before anything is
    returned; a control character (a newline would add a directive or a root cron line) anywhere
    is refused. O(user) must be an account name, O(jobs[].description) holds no backslash (C(%) is
    written as C(%%)), and O(jobs[].on_calendar) is read by C(systemd-analyze calendar) when the
    target has it, otherwise it must match a strict pattern (a shorthand such as C(daily), or
    C([weekdays] [date] [time] [timezone])).
version_added: "1.0.0"
options:
  jobs:
    description: The jobs (the role's C(backup_schedule_jobs)).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Job name (a-z, 0-9, _ and -); names the wrapper, unit and cron files.
        type: str
        required: true
      strategy:
        description: The C(backup_strategy) playbooks/run_backup.yml runs.
        type: str
      schedule:
        description: Cron expression (minute hour day-of-month month day-of-week) or shortcut.
        type: str
      on_calendar:
        description:
          - systemd C(OnCalendar) expression (systemd only), instead of O(jobs[].schedule).
          - Checked with C(systemd-analyze calendar), or without it against a strict pattern.
        type: str
      extra_vars:
        description:
          - Extra variables of the job. Only checked here (never returned, may hold secrets); the
            role writes them to a 0600 file, never to a command line.
        type: dict
      inventory:
        description: Inventory of this job (default O(inventory)).
        type: str
      playbook:
        description: Playbook of this job, relative to O(project_dir) (default O(playbook)).
        type: str
      description:
        description:
          - Description of the systemd service (at most 200 characters, no control characters or
            backslashes).
        type: str
      randomized_delay_seconds:
        description: systemd C(RandomizedDelaySec) of the timer.
        type: int
      state:
        description: C(absent) removes the job's files.
        type: str
        choices: [present, absent]
        default: present
  method:
    description: C(systemd) timers, C(cron) (/etc/cron.d), or C(auto) (systemd when it runs).
    type: str
    choices: [auto, systemd, cron]
    default: auto
  project_dir:
    description: Checkout of the toolkit on the control host (holds ansible.cfg).
    type: path
    required: true
  inventory:
    description: Default inventory of the jobs.
    type: path
    required: true
  ansible_playbook:
    description: The ansible-playbook to run.
    type: path
    required: true
  playbook:
    description: Default playbook, relative to O(project_dir).
    type: str
    default: playbooks/run_backup.yml
  bin_dir:
    description: Where the job wrappers go.
    type: path
    default: /usr/local/sbin
  config_dir:
    description: Where the jobs' extra-vars files go.
    type: path
    default: /etc/backup-toolkit/jobs
  lock_dir:
    description: Where the jobs' flock files go.
    type: path
    default: /run/lock/backup-toolkit
  log_dir:
    description: Where the jobs' logs go.
    type: path
    default: /var/log/backup-toolkit
  user:
    description: User the jobs run as (an account name, a-z 0-9 _ -).
    type: str
    default: root
  vault_password_file:
    description: Vault password file passed to ansible-playbook (a path, not the password).
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Plan the schedules
  backup_schedule_plan:
    project_dir: /opt/backup-toolkit
    inventory: /opt/backup-toolkit/inventories/site/hosts.yml
    ansible_playbook: /opt/backup-toolkit/.venv/bin/ansible-playbook
    jobs:
      - name: nightly-files
        strategy: fs_backup
        schedule: "30 2 * * *"
      - name: weekday-dumps
        strategy: db_backup
        schedule: "15 1 * * mon-fri"
  register: plan
"""

RETURN = r"""
method:
  description: The method used (C(systemd) or C(cron)).
  returned: always
  type: str
jobs:
  description: One entry per job with name, state, unit, the paths (wrapper_path, vars_path,
    service_path, timer_path, cron_path, lock_path, log_path) and, for present jobs, the contents
    (strategy, wrapper, and service + timer + on_calendar, or cron_text + cron). Never the
    extra variables.
  returned: always
  type: list
  elements: dict
"""

import os
import shutil

from ansible.module_utils.backup_schedule import ScheduleError, plan_jobs, systemd_analyze_validator
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jobs=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                strategy=dict(type="str"),
                schedule=dict(type="str"),
                on_calendar=dict(type="str"),
                extra_vars=dict(type="dict", no_log=True),
                inventory=dict(type="str"),
                playbook=dict(type="str"),
                description=dict(type="str"),
                randomized_delay_seconds=dict(type="int"),
                state=dict(type="str", choices=["present", "absent"], default="present"),
            )),
            method=dict(type="str", choices=["auto", "systemd", "cron"], default="auto"),
            project_dir=dict(type="path", required=True),
            inventory=dict(type="path", required=True),
            ansible_playbook=dict(type="path", required=True),
            playbook=dict(type="str", default="playbooks/run_backup.yml"),
            bin_dir=dict(type="path", default="/usr/local/sbin"),
            config_dir=dict(type="path", default="/etc/backup-toolkit/jobs"),
            lock_dir=dict(type="path", default="/run/lock/backup-toolkit"),
            log_dir=dict(type="path", default="/var/log/backup-toolkit"),
            user=dict(type="str", default="root"),
            vault_password_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    method = p["method"]
    if method == "auto":
        method = "systemd" if os.path.isdir("/run/systemd/system") else "cron"
    binary = shutil.which("systemd-analyze")
    validator = None
    if binary:
        def run(argv):
            return module.run_command(argv)
        validator = systemd_analyze_validator(run, binary)
    settings = {key: p[key] for key in ("project_dir", "inventory", "ansible_playbook", "playbook", "bin_dir",
                                        "config_dir", "lock_dir", "log_dir", "user", "vault_password_file")}
    try:
        plans = plan_jobs(p["jobs"], settings, method, validator)
    except ScheduleError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, method=method, jobs=plans,
                     calendar_checked_with=binary or "the strict OnCalendar pattern")


if __name__ == "__main__":
    main()
