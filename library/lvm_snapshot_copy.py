#!/usr/bin/python
"""Ansible module: copy LVM snapshots read-only into a timestamped backup, watching their fill."""

DOCUMENTATION = r"""
---
module: lvm_snapshot_copy
short_description: Mount LVM snapshots read-only and copy them into a new timestamped backup
description:
  - Steps 6 and 7 of the eXo Platform LVM snapshot procedure, while production runs.
  - Mounts each snapshot read-only without replaying its journal (ext4 C(ro,noload), XFS
    C(ro,nouuid,norecovery)) under O(mount_root), copies it with rsync (a tree per snapshot) or tar
    (an archive per snapshot) into C(<dest>/.partial-<timestamp>), and renames that to
    C(<dest>/<timestamp>) only when the copy is complete, verified (optional) and checksummed
    (C(MANIFEST.sha256), C(sha256sum -c) compatible) with a C(metadata.json).
  - A watcher thread polls the snapshots' Data% every O(poll_interval) seconds; past
    O(fill_threshold) it extends the snapshot by O(extend_percent) when the VG has room
    (O(fill_action=extend)) or stops the copy (O(fill_action=abort)). An invalid snapshot is never
    published as a backup.
  - Refuses a destination on one of the origin volumes being backed up.
  - Unmounts in a C(finally); on failure the partial directory is removed and earlier backups stay.
  - Shrink guard (the rule every strategy shares) - each backup records its size figures in
    C(metadata.json) (C(bytes) of the copy; with a verification C(datadir_bytes), C(tables) and
    C(rows:<db>.<table>), the exact row counts of the O(verify_biggest_tables) largest tables, of the
    tables the last good backup counted and of O(verify_count_tables)). A backup whose figures fell
    below the last good backup's by more than O(shrink_threshold) is kept but C(suspect) - never the
    C(latest) a restore or restore drill picks, not counted as good by retention - and the module
    fails naming the figure, both values and how to accept the drop (O(accept_shrink)).
  - Retention keeps the newest O(keep) good backups in O(dest) (0 keeps all) and never fewer than
    O(min_good) good ones; suspect backups newer than the oldest good backup kept stay.
  - Check mode validates the snapshots and the destination, copies nothing.
  - For a long copy, run it with C(async) and C(poll=0), write a O(progress_file) and follow it with
    C(roles/backup_progress) (tasks_from C(poll)), as C(roles/lvm_snapshot_backup/tasks/copy.yml) does.
version_added: "1.0.0"
author: Backup toolkit team
options:
  snapshots:
    description:
      - Snapshots as returned by lvm_snapshot_lock (vg, name, path, origin, label).
      - C(label) names the sub-directory (rsync) or archive (tar) in the backup; default the origin name.
    type: list
    elements: dict
    required: true
  dest:
    description: Backup destination directory (not on a volume being backed up).
    type: path
    required: true
  method:
    description: Copy tool.
    type: str
    choices: [rsync, tar]
    default: rsync
  mount_root:
    description: Where the snapshots are mounted (one sub-directory each).
    type: path
    default: /run/lvm-snapshot-backup
  fill_threshold:
    description: Snapshot Data% at which the watcher acts.
    type: float
    default: 80.0
  fill_action:
    description: What the watcher does past the threshold.
    type: str
    choices: [extend, abort]
    default: extend
  extend_percent:
    description: Growth per extension, in percent of the snapshot's current size.
    type: float
    default: 20.0
  poll_interval:
    description: Seconds between two fill polls.
    type: float
    default: 2.0
  keep:
    description:
      - Good backups to keep in O(dest) (older ones are removed after each run that published a
        backup); 0 keeps all. Suspect backups do not count.
    type: int
    default: 7
  min_good:
    description: Good backups retention never goes below, whatever O(keep) says.
    type: int
    default: 2
  shrink_threshold:
    description:
      - Fraction by which a size figure may fall below the last good backup's before the new
        backup is suspect (0.4 - a drop of more than 40 %).
    type: float
    default: 0.4
  accept_shrink:
    description: Accept a drop of the figures for this run (data deleted on purpose); the backup is good.
    type: bool
    default: false
  metadata:
    description: Extra facts stored in metadata.json (coordinates, lock time from lvm_snapshot_lock...).
    type: dict
    default: {}
  verify_mysql_label:
    description:
      - Label of the snapshot holding the MySQL data directory. When set (rsync method only), a
        throwaway mariadbd/mysqld is started on the copy (crash recovery), every user table is
        checked with CHECK TABLE and the server stopped, before the backup is published.
    type: str
  verify_mysql_subdir:
    description: Data directory inside that snapshot (C(.) when the LV is the datadir).
    type: str
    default: .
  verify_count_tables:
    description:
      - Tables (C(db.table)) whose rows are counted during verification (reported in metadata and
        compared by the shrink guard). A table that is not in the copy fails the backup.
    type: list
    elements: str
    default: []
  verify_biggest_tables:
    description:
      - How many of the largest tables (data and index size) have their rows counted exactly during
        verification, as shrink guard figures. 0 counts none.
    type: int
    default: 5
  progress_file:
    description:
      - Write progress to this file (JSON, rewritten at most once a second) for
        C(roles/backup_progress) to poll while the module runs with C(async) and C(poll=0).
      - Phases, one after the other - C(copy from the snapshots) (done - bytes in the new backup so far,
        total - what the copy writes, measured on the mounted snapshots before the copy starts - the
        regular files' sizes for rsync, the archive size GNU tar writes for tar), C(verification of the
        copy) (with O(verify_mysql_label); no bytes), C(checksums of the copy) (bytes hashed of the
        bytes in the backup), then done, or failed with the error message.
      - Holds no credentials. Put it in a private directory (for example one made by
        M(ansible.builtin.tempfile)) and remove it afterwards; its directory must exist (else the
        module fails before anything is mounted). Not written in check mode.
    type: path
  timeout:
    description:
      - Seconds the whole run (mount, copy, verification, checksums) may take; past it the copy is
        stopped, the snapshots unmounted, the partial copy removed and the module fails. 0 - no limit.
      - When the module runs with C(async), make the C(async) limit a little longer, so that this
        clean stop comes first. The async limit SIGKILLs the module without cleanup, and the copy
        child (rsync or tar, in a process group of its own so that a stop reaches the processes rsync
        forks) then runs on to its end; the playbook's cleanup step cannot unmount under it.
      - SIGTERM to the module (M(backup_progress) with C(state=cancelled)) stops the copy the same
        clean way.
    type: int
    default: 0
requirements:
  - rsync or tar, util-linux (mount, blkid), lvm2
"""

EXAMPLES = r"""
- name: Mount read-only and copy while production runs
  lvm_snapshot_copy:
    snapshots: "{{ lock.snapshots }}"
    dest: /srv/backup/lvm
    method: rsync
    keep: 7
    verify_mysql_label: mysql
    verify_mysql_subdir: data
    metadata:
      coordinates: "{{ lock.coordinates }}"
      lock_seconds: "{{ lock.lock_seconds }}"

- name: The same as an async job with progress (the role's tasks/copy.yml does this)
  lvm_snapshot_copy:
    snapshots: "{{ lock.snapshots }}"
    dest: /srv/backup/lvm
    progress_file: "{{ progress_dir.path }}/copy.progress"
    timeout: 21600
  async: 21720
  poll: 0
  register: copy_job
"""

RETURN = r"""
path:
  description: The published backup directory.
  returned: success
  type: str
  sample: /srv/backup/lvm/20261122T013000Z
name:
  description: The backup's name (UTC timestamp).
  returned: success
  type: str
size_bytes:
  description: Bytes of data in the backup.
  returned: success
  type: int
copy_seconds:
  description: Time to mount, copy and unmount all snapshots.
  returned: success
  type: float
files:
  description: Files in the manifest.
  returned: success
  type: int
snapshot_max_fill_percent:
  description: Highest Data% seen per snapshot.
  returned: success
  type: dict
watcher_events:
  description: Extensions and aborts done by the watcher.
  returned: always
  type: list
verification:
  description: Result of the throwaway-server check (tables checked, row counts) or null.
  returned: success
  type: dict
retention_removed:
  description: Older backups removed by retention.
  returned: success
  type: list
result:
  description: C(ok), or C(suspect) (the module failed; the backup was kept, see RV(shrink)).
  returned: success or suspect
  type: str
status:
  description: The backup's status as recorded, C(good) or C(suspect).
  returned: success or suspect
  type: str
figures:
  description: The size figures the shrink guard compared.
  returned: success or suspect
  type: dict
  sample: {"bytes": 104857600, "datadir_bytes": 104857600, "tables": 12, "rows:app.items": 250000}
shrink:
  description: The figures that fell by more than the threshold (figure, previous, current, drop).
  returned: success or suspect
  type: list
last_good:
  description: The last good backup the figures were compared with (null for the first backup).
  returned: success or suspect
  type: str
latest:
  description: The newest good backup after this run (what a restore of C(latest) takes).
  returned: success or suspect
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lvm_snapshot import LvmError
from ansible.module_utils.lvm_snapshot_copy import (
    CopyError,
    SnapshotCopy,
    SuspectBackupError,
    check_destination,
    du_bytes,
)
from ansible.module_utils.mysql_datadir_verify import VerifyError, verify_datadir


def main():
    module = AnsibleModule(
        argument_spec=dict(
            snapshots=dict(type="list", elements="dict", required=True),
            dest=dict(type="path", required=True),
            method=dict(type="str", choices=["rsync", "tar"], default="rsync"),
            mount_root=dict(type="path", default="/run/lvm-snapshot-backup"),
            fill_threshold=dict(type="float", default=80.0),
            fill_action=dict(type="str", choices=["extend", "abort"], default="extend"),
            extend_percent=dict(type="float", default=20.0),
            poll_interval=dict(type="float", default=2.0),
            keep=dict(type="int", default=7),
            min_good=dict(type="int", default=2),
            shrink_threshold=dict(type="float", default=0.4),
            accept_shrink=dict(type="bool", default=False),
            metadata=dict(type="dict", default={}),
            verify_mysql_label=dict(type="str"),
            verify_mysql_subdir=dict(type="str", default="."),
            verify_count_tables=dict(type="list", elements="str", default=[]),
            verify_biggest_tables=dict(type="int", default=5),
            progress_file=dict(type="path"),
            timeout=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] < 0:
        module.fail_json(msg=f"timeout must be 0 (no limit) or a number of seconds, not {p['timeout']}")
    if p["verify_mysql_label"] and p["method"] != "rsync":
        module.fail_json(msg="verify_mysql_label needs method=rsync (a tree to start the server on)")
    snapshots = []
    for snap in p["snapshots"]:
        missing = [k for k in ("vg", "name", "path", "origin") if not snap.get(k)]
        if missing:
            module.fail_json(
                msg=f"snapshot entry {snap!r} lacks {missing}: pass lvm_snapshot_lock's snapshots"
            )
        entry = dict(snap)
        entry["label"] = snap.get("label") or snap["origin"]
        entry.setdefault("origin_path", f"/dev/{snap['vg']}/{snap['origin']}")
        snapshots.append(entry)

    def runner(args):
        return module.run_command(args, environ_update={"LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"})

    verify = None
    if p["verify_mysql_label"]:
        if p["verify_mysql_label"] not in [s["label"] for s in snapshots]:
            module.fail_json(
                msg=f"verify_mysql_label {p['verify_mysql_label']!r} is not one of the snapshot labels"
            )

        def verify(partial, recount=()):
            datadir = os.path.normpath(
                os.path.join(partial, p["verify_mysql_label"], p["verify_mysql_subdir"])
            )
            try:
                checked = verify_datadir(datadir, p["verify_count_tables"],
                                         biggest=max(0, p["verify_biggest_tables"]), recount=recount)
                return dict(checked, datadir_bytes=du_bytes(datadir))
            except VerifyError as exc:
                raise CopyError(f"verification of the copied data directory failed: {exc}") from exc

    job = SnapshotCopy(
        runner,
        snapshots,
        p["dest"],
        method=p["method"],
        mount_root=p["mount_root"],
        fill_threshold=p["fill_threshold"],
        fill_action=p["fill_action"],
        extend_percent=p["extend_percent"],
        poll_interval=p["poll_interval"],
        keep=p["keep"],
        metadata=p["metadata"],
        verify=verify,
        progress_file=None if module.check_mode else p["progress_file"],
        timeout=p["timeout"],
        shrink_threshold=p["shrink_threshold"],
        min_good=p["min_good"],
        accept_shrink=p["accept_shrink"],
    )
    try:
        if module.check_mode:
            check_destination(p["dest"], [s["origin_path"] for s in snapshots])
            job.preflight()
            module.exit_json(changed=True, name=job.name, path=os.path.join(p["dest"], job.name))
        result = job.run()
    except SuspectBackupError as exc:
        # kept, not good: the job fails with the figures (roles/lvm_snapshot_backup records "suspect")
        module.fail_json(msg=f"backup kept as SUSPECT: {exc}", changed=True, **exc.result)
    except (CopyError, LvmError) as exc:
        module.fail_json(msg=f"backup NOT published: {exc}")
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
