#!/usr/bin/python
"""Ansible module: prove a restore drill's scratch copies and build its backup_runs record."""

DOCUMENTATION = r"""
---
module: restore_drill_prove
short_description: Prove the scratch copies of a restore drill and build its backup_runs record
description:
  - Compares each scratch copy a drill restored with what its backup recorded when it was made - a
    btw file-system set's regular files and bytes (counted in O(scratch_dir)/<set>), a database
    set's tables, views and sequences (the dump's own list, looked up in the scratch database by
    btw_restore); an fcrepo LevelDB's records against the count the backup recorded, its binaries
    read back by the store's owner with their SHA-1; an LVM backup's scratch copy (started and
    checked table by table by lvm_snapshot_restore) with the row counts the backup recorded - and a
    restore that failed is the check C(restore) (C(binaries restore)).
  - Returns the C(backup_runs) record (strategy C(restore_drill)) - the backups used, their age
    (RPO), the restore time (RTO), every check - and fails, with that record, naming the backup and
    the check that failed. Read-only.
version_added: "1.0.0"
options:
  strategy:
    description: The drilled strategy.
    type: str
    choices: [btw, fcrepo, lvm]
    default: btw
  host:
    description: The host the drill ran on (its inventory name), for the record.
    type: str
    required: true
  chosen:
    description:
      - The backups restored - btw_drill_select's RV(chosen) (btw), or a list holding
        fcrepo_drill_select's RV(chosen) (fcrepo) or lvm_drill_select's (lvm).
    type: list
    elements: dict
    required: true
  restored:
    description:
      - The restore results (the C(results) of a btw_restore loop over O(chosen), failed ones
        included); matched to O(chosen) by their C(item.set).
    type: list
    elements: dict
    default: []
  scratch_dir:
    description: The directory holding the file-system sets' scratch copies (one sub-directory per set; btw).
    type: path
  leveldb:
    description: The leveldb_restore result (fcrepo; a failed one included).
    type: dict
  lvm:
    description: The lvm_snapshot_restore C(step=scratch) result (lvm; a failed one included).
    type: dict
  binaries:
    description: The fcrepo_binaries_restore result (fcrepo; a failed one included; unset when there is none).
    type: dict
  restore_seconds:
    description: The time the fcrepo restores took (RTO; fcrepo - the btw restores report theirs).
    type: float
    default: 0
  skipped:
    description: Sets not drilled, with the reason (btw_drill_select's RV(skipped)), for the record.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: Read-only.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Prove each scratch copy against its backup's record
  restore_drill_prove:
    host: "{{ inventory_hostname }}"
    chosen: "{{ chosen.chosen }}"
    restored: "{{ fs_restored.results + db_restored.results }}"
    scratch_dir: /var/tmp/restore-drill/run
  register: proved
"""

RETURN = r"""
record:
  description:
    - The C(backup_runs) record - C(strategy) C(restore_drill), C(mode) the drilled strategy,
      C(host), C(set) (C(<strategy>/<host>)), C(result), C(location) (the backups), C(duration_seconds)
      and C(restore_seconds) (RTO), C(backup_age_seconds) (RPO), C(details) (backups, checked,
      skipped, failed). Also returned when the module fails.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.restore_drill import (
    FS_TYPES,
    drill_record,
    prove_btw,
    prove_fcrepo,
    prove_lvm,
    tree_figures,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            strategy=dict(type="str", choices=["btw", "fcrepo", "lvm"], default="btw"),
            host=dict(type="str", required=True),
            chosen=dict(type="list", elements="dict", required=True),
            restored=dict(type="list", elements="dict", default=[]),
            scratch_dir=dict(type="path"),
            skipped=dict(type="dict", default={}),
            leveldb=dict(type="dict"),
            binaries=dict(type="dict"),
            lvm=dict(type="dict"),
            restore_seconds=dict(type="float", default=0),
        ),
        required_if=[("strategy", "btw", ("scratch_dir",)), ("strategy", "fcrepo", ("leveldb",)),
                     ("strategy", "lvm", ("lvm",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["strategy"] == "lvm":
        finish(module, drill_record("lvm", p["host"], prove_lvm(p["chosen"][0], p["lvm"]), p["skipped"]))
    if p["strategy"] == "fcrepo":
        proofs = prove_fcrepo(p["chosen"][0], p["leveldb"], p["binaries"], p["restore_seconds"])
        finish(module, drill_record("fcrepo", p["host"], proofs, p["skipped"]))
    restored = {}
    for result in p["restored"]:
        item = result.get("item") or {}
        if item.get("set") is not None and not result.get("skipped"):
            restored[item["set"]] = result
    figures = {}
    for item in p["chosen"]:
        copy = os.path.join(p["scratch_dir"], item["set"])
        if item["type"] in FS_TYPES and os.path.isdir(copy):
            figures[item["set"]] = tree_figures(copy)
    finish(module, drill_record("btw", p["host"], prove_btw(p["chosen"], restored, figures), p["skipped"]))


def finish(module, record):
    if record["result"] != "ok":
        module.fail_json(msg=record["details"]["failed"], record=record)
    module.exit_json(changed=False, record=record)


if __name__ == "__main__":
    main()
