#!/usr/bin/python
"""Ansible module: choose the backup a restore drill restores for each btw set (the newest good one)."""

DOCUMENTATION = r"""
---
module: btw_drill_select
short_description: Choose the newest good backup of each btw set for a restore drill
description:
  - For each set of O(sets), finds the newest B(good) backup state - a tar archive, or an
    rdiff-backup chain's session - from the set's runs file (C(.btw-runs.json), written by the
    shrink guard). Suspect backups are passed over (listed in RV(chosen[].skipped_suspect)), the way
    retention never lets a suspect backup become the latest.
  - C(pg_globals) sets are not drilled (their roles and tablespaces load into the cluster itself,
    there is no scratch place); they are listed in RV(skipped).
  - A set without a good backup fails the module, naming the set, and so does a host with no set to
    drill. Read-only.
version_added: "1.0.0"
options:
  strategies:
    description:
      - The strategies the drill rehearses (restore_drill_strategies); C(seafile) and an unknown one are
        refused with the reason, before anything is read.
    type: list
    elements: str
    default: [btw]
  root:
    description: Absolute backup root (btw_backup_root).
    type: path
    required: true
  sets:
    description: The sets to drill, each with C(name), C(type) and C(destination) (btw_backup_sets).
    type: list
    elements: dict
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
- name: Choose the newest good backup of each set
  btw_drill_select:
    root: /srv/backups
    sets:
      - {name: etc, type: rdiff, destination: fs/etc}
      - {name: shop, type: mysqldump, destination: db/shop}
  register: chosen
"""

RETURN = r"""
chosen:
  description:
    - One entry per drilled set - C(set), C(type), C(destination), C(backup) (tar or chain name),
      C(kind), C(path), C(at) (what btw_restore is given - the tar name or the session's epoch),
      C(time) and C(date) of the state, C(age_seconds) (its age now), C(figures) the backup
      recorded (files/bytes, tables/bytes), C(skipped_suspect).
  returned: success
  type: list
  elements: dict
skipped:
  description: Sets not drilled, with the reason.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_module import ERRORS
from ansible.module_utils.restore_drill import DrillError, btw_candidates, check_strategies


def main():
    module = AnsibleModule(
        argument_spec=dict(
            strategies=dict(type="list", elements="str", default=["btw"]),
            root=dict(type="path", required=True),
            sets=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    sets = [{k: s.get(k) for k in ("name", "type", "destination")} for s in module.params["sets"]]
    try:
        check_strategies(module.params["strategies"])
        chosen, skipped = btw_candidates(module.params["root"], sets)
    except (DrillError,) + ERRORS as exc:
        module.fail_json(msg=f"restore drill: {exc}")
    module.exit_json(changed=False, chosen=chosen, skipped=skipped)


if __name__ == "__main__":
    main()
