#!/usr/bin/python
"""Ansible module: remove archived binlogs no retained full backup needs."""

DOCUMENTATION = r"""
---
module: mysql_binlog_archive_retention
short_description: Remove archived binlogs older than the oldest retained full backup needs
description:
  - Keeps every archived binlog file from the one the oldest retained full backup (listed in
    O(full_backups)) starts in, and removes the older ones.
  - Without any full backup with coordinates, removes nothing. Never removes the newest archived
    file, nor a file whose name is not a binlog name (nothing an operator put there).
version_added: "1.0.0"
options:
  directory:
    description: The source's archive directory.
    type: path
    required: true
  full_backups:
    description: As in M(mysql_binlog_archive_status) (dicts with C(kind) and C(path)).
    type: list
    elements: dict
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Keep the binlogs the oldest LVM backup needs
  mysql_binlog_archive_retention:
    directory: /srv/backup/binlog/db1
    full_backups:
      - kind: lvm
        path: /srv/backup/lvm
"""

RETURN = r"""
removed:
  description: Binlog files removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
kept_from:
  description: The oldest binlog file kept (the oldest full backup's), null when nothing is known.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.binlog_archive import ArchiveError, apply_retention
from ansible.module_utils.mysql_full_backups import oldest_needed_file


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type="path", required=True),
            full_backups=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        needed = oldest_needed_file(p["full_backups"])
        removed = apply_retention(p["directory"], needed, check_mode=module.check_mode)
    except (ArchiveError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(removed), removed=removed, kept_from=needed)


if __name__ == "__main__":
    main()
