#!/usr/bin/python
"""Ansible module: list btw backups with sizes and dates."""

DOCUMENTATION = r"""
---
module: btw_list
short_description: List the btw backups under a backup root, with sizes and dates
description:
  - Lists every backup set under O(root) (a directory holding tar archives
    C(<name>-<stamp>.tar[.gz|.zst]), rdiff-backup chains C(chain-<stamp>/) or a C(.btw-manifest.json)),
    or only O(destination).
  - Hidden temporary files of interrupted runs are never listed. Read-only.
version_added: "1.0.0"
options:
  root:
    description: Absolute backup root.
    type: path
    required: true
  destination:
    description: Only this set (relative to O(root)).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: List the backups
  btw_list:
    root: /srv/backups
  register: btw_backups
"""

RETURN = r"""
sets:
  description: Per destination (relative to root), its backups oldest first.
  returned: always
  type: dict
  sample:
    fs/etc:
      - {name: chain-20261122T013000Z, kind: rdiff-chain, date: "2026-11-22T01:30:00Z",
         last_date: "2026-11-22T09:30:00Z", backups: 3, size_bytes: 1048576,
         sessions: ["2026-11-22T01:30:00Z", "2026-11-22T05:30:00Z", "2026-11-22T09:30:00Z"]}
total_bytes:
  description: Sum of the sizes listed.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_fs import resolve_destination
from ansible.module_utils.btw_module import ModuleRun
from ansible.module_utils.btw_retention import list_backups, list_sets


def backup_sets(root, destination=None):
    if destination:
        return {destination: list_backups(resolve_destination(root, destination))}
    return list_sets(root)


def main():
    module = AnsibleModule(
        argument_spec=dict(root=dict(type="path", required=True), destination=dict(type="str")),
        supports_check_mode=True,
    )
    sets = ModuleRun(module).call(backup_sets, module.params["root"], module.params["destination"])
    for backups in sets.values():
        for backup in backups:
            for key in ("path", "time", "last"):
                backup.pop(key, None)
    total = sum(b["size_bytes"] for backups in sets.values() for b in backups)
    module.exit_json(changed=False, sets=sets, total_bytes=total)


if __name__ == "__main__":
    main()
