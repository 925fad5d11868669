#!/usr/bin/python
"""Ansible module: retention of btw backups by count and age, never deleting unsynced files."""

DOCUMENTATION = r"""
---
module: btw_retention
short_description: Delete old btw backups by count and age, never one not yet synced off-site
description:
  - Works on whole backups of one set - a tar archive, or a whole rdiff-backup chain (a full backup
    with its increments). The newest backup is always kept.
  - A backup is deleted when it is beyond the newest O(keep_count) good backups, or when its newest
    state is older than O(max_age) - by the rule every strategy shares (C(retention_policy)) - the
    newest good backup and at least O(min_good) good ones are always kept, and suspect backups (the
    shrink guard of M(btw_fs_backup)) are not counted as good.
  - With O(require_synced) (default), a backup is kept while any of its files is not confirmed
    in every off-site journal under C(<root>/.btw-sync/) (content hash compared), and nothing is
    deleted when no journal exists.
  - A chain is renamed to a hidden name before removal, so a half-deleted chain never looks like a backup.
version_added: "1.0.0"
options:
  root:
    description: Absolute backup root.
    type: path
    required: true
  destination:
    description: The set's directory, relative to O(root).
    type: str
    required: true
  keep_count:
    description: Keep at most this many newest good backups (at least 1).
    type: int
  min_good:
    description: Never leave fewer than this many good (not suspect) backups, whatever O(keep_count)
      and O(max_age) say.
    type: int
    default: 2
  max_age:
    description: Delete backups whose newest state is older than this (C(30d), C(12w), C(36h)).
    type: str
  require_synced:
    description: Never delete a file the off-site journal has not confirmed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Keep 14 backups of /etc, none older than 90 days
  btw_retention:
    root: /srv/backups
    destination: fs/etc
    keep_count: 14
    max_age: 90d
"""

RETURN = r"""
deleted:
  description: Backups deleted (or that would be in check mode), with the reason.
  returned: always
  type: list
  elements: dict
suspect:
  description: Names of the suspect backups kept (the shrink guard's, not counted as good).
  returned: always
  type: list
  elements: str
held:
  description: Backups due for deletion but kept because they are not synced off-site yet.
  returned: always
  type: list
  elements: dict
kept:
  description: Names of the backups kept.
  returned: always
  type: list
  elements: str
freed_bytes:
  description: Bytes freed.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_module import ModuleRun
from ansible.module_utils.btw_retention import apply_retention


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            destination=dict(type="str", required=True),
            keep_count=dict(type="int"),
            max_age=dict(type="str"),
            require_synced=dict(type="bool", default=True),
            min_good=dict(type="int", default=2),
        ),
        required_one_of=[("keep_count", "max_age")],
        supports_check_mode=True,
    )
    p = module.params
    result = ModuleRun(module).call(
        apply_retention,
        p["root"],
        p["destination"],
        p["keep_count"],
        p["max_age"],
        p["require_synced"],
        check_mode=module.check_mode,
        min_good=p["min_good"],
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
