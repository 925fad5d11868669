#!/usr/bin/python
"""Ansible module: restore fcrepo binaries, owned like the live store, read back as its owner."""

DOCUMENTATION = r"""
---
module: fcrepo_binaries_restore
short_description: Add backed-up fcrepo binaries missing from a store, then read them all as its owner
description:
  - Copies every binary of the backup O(src) that O(dest) lacks (hidden temp name, SHA-1 recomputed
    and compared with the name, made durable, renamed into place), like fcrepo_binaries_backup.
  - The copied files get O(owner), O(group) and O(mode) without its execute bits; shard directories
    the restore creates (and O(dest) when it creates it) get O(mode). The playbook passes the owner,
    group and mode of the live binary directory.
  - Then, in a process running as O(owner) (its uid, gid and groups), opens and reads every binary
    of the backup in O(dest) and compares its SHA-1 with its name. A binary the owner cannot read,
    or whose content does not match, fails the task (RV(owner_check)).
version_added: "1.0.0"
author: Backup toolkit team
options:
  src:
    description: The binaries backup (C(<fcrepo_backup_dest>/binaries)).
    type: path
    required: true
  dest:
    description: The binary store to restore into (the live C(fcrepo.binary.directory), or a new directory).
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
    description: Octal mode of created directories (C(0750)); files get it without the execute bits.
    type: str
    default: "0700"
requirements:
  - root (become), to give the files away and to run the check as O(owner)
attributes:
  check_mode:
    support: full
    details: Counts what would be copied; copies and reads nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Add the binaries missing from the live store, owned like it (SHA-1 checked)
  fcrepo_binaries_restore:
    src: /var/backups/fcrepo/binaries
    dest: /var/lib/tomcat9/fcrepo4-data/fcrepo.binary.directory
    owner: tomcat
    group: tomcat
    mode: "0750"
"""

RETURN = r"""
binaries:
  description: Binaries in the backup.
  returned: always
  type: int
copied:
  description: Binaries copied (would be copied in check mode).
  returned: always
  type: int
bytes_copied:
  description: Bytes copied.
  returned: always
  type: int
already_present:
  description: Binaries of the backup already in O(dest).
  returned: always
  type: int
mismatches:
  description: Backup files whose content did not match their name (never installed).
  returned: always
  type: list
  elements: dict
owner_check:
  description: >-
    What the owner read back - how many binaries were checked, the unreadable ones (path and
    error) and the mismatches.
  returned: when not in check mode
  type: dict
  sample: {"checked": 5, "unreadable": [], "mismatches": []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.fcrepo_binaries import FcrepoBinariesError
from ansible.module_utils.fcrepo_restore import (
    FcrepoRestoreError,
    ownership_from,
    restore_argument_spec,
    restore_binaries,
)


def main():
    module = AnsibleModule(
        argument_spec=restore_argument_spec(src=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    p = module.params
    try:
        own = ownership_from(p["owner"], p["group"], p["mode"])
        report = restore_binaries(p["src"], p["dest"], own, check_mode=module.check_mode)
    except (FcrepoBinariesError, FcrepoRestoreError) as exc:
        module.fail_json(msg=str(exc))
    check = report.get("owner_check") or {"unreadable": [], "mismatches": []}
    if report["mismatches"] or report["size_changed"]:
        module.fail_json(msg=f"fixity check failed for {len(report['mismatches'])} backup file(s) and "
                         f"{len(report['size_changed'])} changed size: {report['mismatches'][:5]}", **report)
    if check["unreadable"] or check["mismatches"]:
        module.fail_json(msg=f"uid {own['uid']} cannot read {len(check['unreadable'])} restored binaries "
                         f"({check['unreadable'][:5]}) and {len(check['mismatches'])} do not match their "
                         f"SHA-1 ({check['mismatches'][:5]})", **report)
    module.exit_json(**report)


if __name__ == "__main__":
    main()
