#!/usr/bin/python
"""Ansible module: remove the mounts, snapshots and partial copies of a backup run (or of a crashed one)."""

DOCUMENTATION = r"""
---
module: lvm_snapshot_cleanup
short_description: Unmount and remove backup snapshots and partial copies, current or left by a crashed run
description:
  - Step 8 of the eXo Platform LVM snapshot procedure (unmount & remove the snapshot), and the
    detection of what an earlier crashed run left behind, run before a new backup.
  - Unmounts the toolkit's own snapshot mounts (with retries), that is a mount on
    C(<mount_root>/<vg>-<snapshot>) whose device is that snapshot, for every snapshot LV whose name
    ends with O(snapshot_suffix) in O(vgs) (all VGs when empty). Never O(mount_root) itself nor any
    other mount below it (listed in RV(left_mounted)). Then removes those snapshot LVs with
    C(lvremove) and retries, and deletes C(.partial-*) directories in O(dest). Complete backups are
    never touched.
  - O(mount_root) must be an absolute normalized path and a directory of the toolkit's own;
    system directories such as C(/), C(/run), C(/mnt), C(/var), C(/home), C(/srv), and anything
    under C(/proc), C(/sys), C(/dev), are refused before anything is looked at.
  - Changed only when something was found. In check mode, or with O(report_only=true), only reports.
version_added: "1.0.0"
author: Backup toolkit team
options:
  vgs:
    description: Volume groups to look in; empty means all.
    type: list
    elements: str
    default: []
  snapshot_suffix:
    description: Suffix that marks the toolkit's snapshots (as in lvm_snapshot_lock).
    type: str
    default: -backup-snap
  mount_root:
    description: Directory under which the toolkit mounts snapshots (one of its own, see above).
    type: str
    default: /run/lvm-snapshot-backup
  dest:
    description: Backup destination whose stale C(.partial-*) directories are removed.
    type: path
  retries:
    description: Extra attempts for umount and lvremove.
    type: int
    default: 3
  delay:
    description: Seconds between attempts.
    type: float
    default: 2.0
  report_only:
    description: Only report what would be removed.
    type: bool
    default: false
requirements:
  - lvm2
"""

EXAMPLES = r"""
- name: Detect and clean what an earlier crashed run left
  lvm_snapshot_cleanup:
    vgs: [vgdata]
    dest: /srv/backup/lvm
  register: stale
"""

RETURN = r"""
unmounted:
  description: Mount points unmounted (in check mode, to unmount).
  returned: always
  type: list
  elements: str
left_mounted:
  description: Mounts at or below O(mount_root) that are not the toolkit's snapshot mounts, left alone.
  returned: always
  type: list
  elements: str
removed_snapshots:
  description: Snapshots removed (C(vg/name)).
  returned: always
  type: list
  elements: str
removed_partials:
  description: Partial backup directories removed.
  returned: always
  type: list
  elements: str
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lvm_snapshot import LvmError, is_snapshot, read_lvs, remove_lv
from ansible.module_utils.lvm_snapshot_copy import stale_partials
from ansible.module_utils.lvm_snapshot_mounts import MountRootError, check_mount_root, toolkit_mounts, unmount


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vgs=dict(type="list", elements="str", default=[]),
            snapshot_suffix=dict(type="str", default="-backup-snap"),
            mount_root=dict(type="str", default="/run/lvm-snapshot-backup"),
            dest=dict(type="path"),
            retries=dict(type="int", default=3),
            delay=dict(type="float", default=2.0),
            report_only=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["snapshot_suffix"]:
        module.fail_json(msg="snapshot_suffix must not be empty (it would match every LV)")
    try:
        check_mount_root(p["mount_root"])
    except MountRootError as exc:
        module.fail_json(msg=f"{exc}; nothing was unmounted or removed")
    dry = module.check_mode or p["report_only"]

    def runner(args):
        return module.run_command(args, environ_update={"LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"})

    try:
        lvs = read_lvs(runner)
    except LvmError as exc:
        module.fail_json(msg=str(exc))
    snaps = [
        lv
        for lv in lvs
        if lv["lv_name"].endswith(p["snapshot_suffix"])
        and (not p["vgs"] or lv["vg_name"] in p["vgs"])
        and is_snapshot(lv)
    ]
    mounts, others = toolkit_mounts(p["mount_root"], snaps)
    partials = stale_partials(p["dest"]) if p["dest"] else []
    result = dict(
        changed=bool(mounts or snaps or partials),
        unmounted=mounts,
        left_mounted=others,
        removed_snapshots=[f"{lv['vg_name']}/{lv['lv_name']}" for lv in snaps],
        removed_partials=partials,
    )
    if dry:
        module.exit_json(**result)

    errors = unmount(runner, mounts, retries=p["retries"], delay=p["delay"])
    for lv in snaps:
        try:
            remove_lv(runner, lv["vg_name"], lv["lv_name"], retries=p["retries"], delay=p["delay"])
        except LvmError as exc:
            errors.append(str(exc))
    for name in partials:
        shutil.rmtree(os.path.join(p["dest"], name), ignore_errors=True)
    if errors:
        module.fail_json(msg="cleanup incomplete: " + "; ".join(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
