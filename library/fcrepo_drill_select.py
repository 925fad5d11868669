#!/usr/bin/python
"""Ansible module: choose the LevelDB backup an fcrepo restore drill restores (the newest good one)."""

DOCUMENTATION = r"""
---
module: fcrepo_drill_select
short_description: Choose the newest good fcrepo LevelDB backup for a restore drill
description:
  - Finds the newest complete LevelDB backup in O(path) whose metadata says B(good) (a suspect backup,
    kept by the shrink guard, is passed over, as C(latest) passes it over), with its age and the
    record count it recorded. No good backup fails the module, naming the directory. Read-only.
version_added: "1.0.0"
options:
  strategies:
    description:
      - The strategies the drill rehearses (restore_drill_strategies); C(seafile) and an unknown one are
        refused with the reason, before anything is read.
    type: list
    elements: str
    default: [fcrepo]
  path:
    description: The LevelDB backups directory (C(<fcrepo_backup_dest>/leveldb)).
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
- name: Choose the newest good LevelDB backup
  fcrepo_drill_select:
    path: /var/backups/fcrepo/leveldb
  register: chosen
"""

RETURN = r"""
chosen:
  description:
    - The backup - C(backup) (its name), C(path), C(time) and C(date) it was made, C(age_seconds),
      C(figures) (C(records) it recorded), C(skipped_suspect) (newer suspect backups passed over).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.restore_drill import DrillError, check_strategies, fcrepo_candidate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            strategies=dict(type="list", elements="str", default=["fcrepo"]),
            path=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    try:
        check_strategies(module.params["strategies"])
        chosen = fcrepo_candidate(module.params["path"])
    except (DrillError, OSError) as exc:
        module.fail_json(msg=f"restore drill: {exc}")
    module.exit_json(changed=False, chosen=chosen)


if __name__ == "__main__":
    main()
