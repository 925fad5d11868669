#!/usr/bin/python
"""Ansible module: verify (and optionally repair) an existing LevelDB backup."""

DOCUMENTATION = r"""
---
module: leveldb_verify
short_description: Verify, and optionally repair, a LevelDB backup made by leveldb_backup
description:
  - Reads every record of the backup's C(data/) copy with C(verify_checksums=True) (on a throwaway
    hard-link copy, so the backup is not modified) and compares the count with the one recorded at
    backup time. Use it to check backups at rest (bit rot, truncated or deleted files).
  - Reports the backup's RV(result) - C(good), C(suspect) (kept by the shrink guard of
    M(leveldb_backup), not counted as good) or C(failed).
  - With O(repair=true), a failing backup is repaired in place with RepairDB (only directories
    carrying the backup metadata are accepted, never a live store), verified again, and the keys lost
    are reported.
version_added: "1.0.0"
author: Backup toolkit team
options:
  path:
    description: A backup directory (C(leveldb-<name>), or the C(latest) link) made by leveldb_backup.
    type: path
    required: true
  repair:
    description: Repair the backup's C(data/) copy when verification fails.
    type: bool
    default: false
  fail_on_data_loss:
    description: Fail when a repair lost keys or the loss cannot be counted.
    type: bool
    default: true
requirements:
  - plyvel (Debian python3-plyvel) on the managed host
notes:
  - Check mode verifies (read-only) and reports, but never repairs.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Verify the newest fcrepo LevelDB backup
  leveldb_verify:
    path: /backup/fcrepo/leveldb/latest

- name: Repair a backup found corrupt, accepting no data loss
  leveldb_verify:
    path: /backup/fcrepo/leveldb/leveldb-20261122T013000.123456Z
    repair: true
"""

RETURN = r"""
result:
  description:
    - C(good), C(suspect) (the data verifies, but the shrink guard kept this backup as suspect when
      it was taken - see RV(shrink)) or C(failed).
  returned: always
  type: str
  sample: good
shrink:
  description: For a suspect backup, the figures that fell (figure, previous, current, drop).
  returned: always
  type: list
  elements: dict
ok:
  description: Whether the backup verified (after repair, when repair ran).
  returned: always
  type: bool
records:
  description: Records read with checksum verification.
  returned: always
  type: int
expected_records:
  description: Records counted when the backup was taken (null with verify=changed).
  returned: always
  type: int
error:
  description: Why verification failed.
  returned: when verification failed
  type: str
repaired:
  description: Whether a repair ran and produced a readable copy.
  returned: always
  type: bool
keys_lost:
  description: Keys lost by the repair (null when unknown).
  returned: always
  type: int
lost_keys_sample:
  description: Up to 20 lost keys.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.leveldb_backup import LevelDBBackupError, verify_backup


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            repair=dict(type="bool", default=False),
            fail_on_data_loss=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        report = verify_backup(p["path"], repair=p["repair"] and not module.check_mode,
                               fail_on_data_loss=p["fail_on_data_loss"])
    except LevelDBBackupError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"verification of {p['path']} failed: {exc}")
    report["changed"] = bool(report.get("repaired"))
    if not report["ok"]:
        module.fail_json(msg=f"LevelDB backup {p['path']} failed verification: {report.get('error')}"
                         + (f"; repair: {report.get('repair_error')}" if report.get("repair_error") else "")
                         + (f"; keys lost: {report['keys_lost']}" if report.get("repaired") else ""),
                         **report)
    if report.get("result") == "suspect":
        fell = ", ".join(d["figure"] for d in report["shrink"])
        module.warn(f"{p['path']} verifies, but it is a suspect backup (kept by the shrink guard, not "
                    f"counted as good): {fell} fell below the last good backup")
    module.exit_json(**report)


if __name__ == "__main__":
    main()
