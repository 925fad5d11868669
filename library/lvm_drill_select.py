#!/usr/bin/python
"""Ansible module: choose the LVM snapshot backup an LVM restore drill restores (the newest complete one)."""

DOCUMENTATION = r"""
---
module: lvm_drill_select
short_description: Choose the newest LVM snapshot backup for a restore drill
description:
  - Finds the newest complete backup in O(dest) (a C(<UTC timestamp>) directory lvm_snapshot_copy
    published; C(.partial-*) copies are never taken), with its age (from its name, the time of the
    snapshot) and the row counts its verification recorded. No backup fails the module, naming the
    directory. Read-only.
version_added: "1.0.0"
options:
  strategies:
    description:
      - The strategies the drill rehearses (restore_drill_strategies); an unknown one, or C(seafile),
        is refused with the reason before anything is read.
    type: list
    elements: str
    default: [lvm]
  dest:
    description: The LVM backups directory (C(lvm_snapshot_backup_dest)).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    details: Read-only; the same answer in check mode.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Choose the newest LVM backup
  lvm_drill_select:
    dest: /srv/backup/lvm
  register: chosen
"""

RETURN = r"""
chosen:
  description:
    - The backup - C(backup) (its name), C(path), C(time) and C(date) of the snapshot, C(age_seconds),
      C(figures) (C(row_counts) its verification recorded).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.restore_drill import DrillError, check_strategies, lvm_candidate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            strategies=dict(type="list", elements="str", default=["lvm"]),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    try:
        check_strategies(module.params["strategies"])
        chosen = lvm_candidate(module.params["dest"])
    except (DrillError, OSError, ValueError) as exc:
        module.fail_json(msg=f"restore drill: {exc}")
    module.exit_json(changed=False, chosen=chosen)


if __name__ == "__main__":
    main()
