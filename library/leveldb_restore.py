#!/usr/bin/python
"""Ansible module: restore a LevelDB backup's data into a new directory, owned like the live store."""

DOCUMENTATION = r"""
---
module: leveldb_restore
short_description: Restore a LevelDB backup made by leveldb_backup into a new directory, checked as its owner
description:
  - Copies the backup's C(data/) into O(dest), which must not exist (its parent must), durably.
  - Every file gets O(owner), O(group) and O(mode) without its execute bits; O(dest) gets O(mode).
    The playbook passes the owner, group and mode of the live LevelDB directory, so the service
    that owns the store can open the restored one (backups are root-only, 0700/0600).
  - Then, in a process running as O(owner) (its uid, gid and groups), opens a throwaway hard-link
    copy of O(dest) and reads every record with checksum verification; the count must equal the
    one recorded at backup time. O(dest) itself is never opened, so it stays the backup's exact state.
  - A failed copy or check removes O(dest); nothing else is touched.
version_added: "1.0.0"
author: Backup toolkit team
options:
  path:
    description: A backup directory (C(leveldb-<name>), or the C(latest) link) made by leveldb_backup.
    type: path
    required: true
  dest:
    description: The directory to restore into; must not exist.
    type: path
    required: true
  owner:
    description: User (name or uid) the restored files are given to and the check runs as.
    type: str
    required: true
  group:
    description: Group (name or gid) of the restored files.
    type: str
    required: true
  mode:
    description: Octal mode of the restored directory (C(0750)); files get it without the execute bits.
    type: str
    default: "0700"
requirements:
  - plyvel (Debian python3-plyvel) on the managed host
  - root (become), to give the files away and to run the check as O(owner)
attributes:
  check_mode:
    support: full
    details: Checks the backup and the destination and reports what would be restored; copies nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Restore the newest fcrepo LevelDB backup into a scratch directory, owned like the live store
  leveldb_restore:
    path: /var/backups/fcrepo/leveldb/latest
    dest: /srv/fcrepo-rehearsal/fcrepo.ispn.repo.cache/dataFedoraRepository
    owner: tomcat
    group: tomcat
    mode: "0750"
"""

RETURN = r"""
dest:
  description: The restored LevelDB directory.
  returned: always
  type: str
records:
  description: Records the owner read from the restored LevelDB (null in check mode).
  returned: always
  type: int
expected_records:
  description: Records counted when the backup was taken (null when not recorded).
  returned: always
  type: int
files:
  description: Files copied.
  returned: always
  type: int
bytes:
  description: Bytes copied.
  returned: always
  type: int
uid:
  description: uid given to the restored files.
  returned: always
  type: int
gid:
  description: gid given to the restored files.
  returned: always
  type: int
dir_mode:
  description: Mode of the restored directory.
  returned: always
  type: str
file_mode:
  description: Mode of the restored files.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.fcrepo_restore import (
    FcrepoRestoreError,
    ownership_from,
    restore_argument_spec,
    restore_leveldb,
)


def main():
    module = AnsibleModule(
        argument_spec=restore_argument_spec(path=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    p = module.params
    try:
        own = ownership_from(p["owner"], p["group"], p["mode"])
        report = restore_leveldb(os.path.realpath(p["path"]), p["dest"], own, check_mode=module.check_mode)
    except FcrepoRestoreError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**report)


if __name__ == "__main__":
    main()
