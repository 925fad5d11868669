#!/usr/bin/python
"""Ansible module: consistent, verified, incremental backup of a LevelDB directory."""

DOCUMENTATION = r"""
---
module: leveldb_backup
short_description: Consistent, verified, incremental backup of a LevelDB directory (fcrepo metadata)
description:
  - Copies a LevelDB directory (for fcrepo 4 the C(dataFedoraRepository) directory under
    C(fcrepo.ispn.repo.cache)) into C(dest/leveldb-<name>).
  - The copy is consistent when the SHA-256 of C(CURRENT) and of every C(MANIFEST-*) is the same
    before and after it (LevelDB rewrites the manifest at the end of every compaction and only then
    deletes obsolete files); otherwise it is retried, at most O(attempts) times.
  - The copy is written under a hidden C(dest/.tmp-<name>) (each file read once, hashed as it is
    written, two files at a time), made durable beside the verification (an fsync per file for up
    to 128 files and directories, else one syncfs of the destination's filesystem), and renamed
    into place only when it is consistent, verified and on disk, so previous backups are untouched
    by a failed or killed run.
  - Incremental mode hard-links table files identical (number, size, SHA-256) to those of the
    previous backup; each backup is complete and independently restorable, and removing one (see
    O(retain)) never breaks another.
  - Verification opens the copy with plyvel and reads every record with C(verify_checksums=True).
    A corrupt copy is repaired with RepairDB (the copy only, never the source), verified again, and
    the keys lost are reported, counted exactly against every key the copy's files hold (read past
    bad blocks).
  - Damage LevelDB itself opens without a complaint is refused before verification, with or without
    repair - a MANIFEST whose last record is cut off, a live table missing.
  - The record count is compared with the last good backup's (the shrink guard, see
    O(shrink_threshold)).
version_added: "1.0.0"
author: Backup toolkit team
options:
  src:
    description: The LevelDB directory (it holds C(CURRENT) and C(MANIFEST-*)).
    type: path
    required: true
  dest:
    description: Directory holding the backups (created, mode 0700). Must not be inside O(src).
    type: path
    required: true
  name:
    description: Backup name (directory C(leveldb-<name>)); defaults to the UTC time with microseconds.
    type: str
  attempts:
    description: Maximum copy attempts before giving up when the manifest keeps changing.
    type: int
    default: 10
  incremental:
    description: Hard-link unchanged table files from the newest previous backup.
    type: bool
    default: true
  rehash:
    description:
      - Always recompute the SHA-256 of source tables before linking them. By default a table whose
        number, size, inode and mtime are those recorded at the previous backup reuses the recorded
        SHA-256 (tables are immutable; like rsync's quick check).
    type: bool
    default: false
  keep_exact:
    description:
      - Also keep the exact, unmodified copy in C(exact/) (the original script's BACKUP_EXACT).
        Table files are hard links shared with C(data/), so it costs only the small mutable files.
    type: bool
    default: false
  verify:
    description:
      - V(full) reads every record with checksum verification and counts them.
      - V(changed) (incremental only) opens the whole copy (manifest, log, no missing file) and checksums
        only the table files no previous verified backup vouches for.
      - V(none) skips verification (not recommended).
    type: str
    choices: [full, changed, none]
    default: full
  repair:
    description: Repair a copy that fails verification with RepairDB and verify it again.
    type: bool
    default: true
  fail_on_data_loss:
    description: Reject a repaired copy when keys were lost or the loss cannot be counted.
    type: bool
    default: true
  rename_to_sst:
    description: Rename C(*.ldb) to C(*.sst) in the verified copy (Infinispan reads only C(*.sst)).
    type: bool
    default: true
  retain:
    description:
      - Keep this many newest good backups and delete older ones after a run (0 keeps all). Suspect
        backups are not counted; at least O(min_good) good backups are always kept.
    type: int
    default: 0
  min_good:
    description:
      - Retention never leaves fewer than this many good (verified, not suspect) backups and never
        deletes the newest good one, whatever O(retain) says.
    type: int
    default: 2
  shrink_threshold:
    description:
      - Shrink guard. A verified backup whose record count fell below the last good backup's by more
        than this fraction is B(suspect) - kept, but C(latest) stays on the last good backup,
        retention does not count it as good, and the module fails naming both counts.
      - The default 0.4 catches a source that lost half its records.
      - Needs O(verify=full), which counts the records; with V(changed) or V(none) the count is not
        known and nothing is compared.
    type: float
    default: 0.4
  accept_shrink:
    description:
      - Accept a drop caught by the shrink guard for this run (records deleted on purpose) - the
        backup is good and becomes C(latest). Give it once, with C(-e), not in the inventory.
    type: bool
    default: false
  count_source:
    description:
      - Compare the record count of the backup with that of the source (needs O(verify=full)). Only
        meaningful when the source is quiescent (service stopped or writes paused). The source is not
        opened; a hard-link snapshot beside it is, then removed.
    type: bool
    default: false
  skip_if_unchanged:
    description: Take no backup (changed=false) when CURRENT, MANIFEST-* and all file sizes are those of
      the newest backup.
    type: bool
    default: false
  wait_quiet_seconds:
    description: Before copying, wait until no file in O(src) changed for this many seconds (0 = no wait).
    type: float
    default: 0
  wait_timeout:
    description: Give up waiting for a quiet directory after this many seconds.
    type: float
    default: 300
  progress_file:
    description:
      - Write progress to this file (JSON, rewritten at most once a second) for
        C(roles/backup_progress) to poll while the module runs with C(async) and C(poll=0).
      - Phases, one after the other - waiting for a quiet directory (when O(wait_quiet_seconds) is set),
        C(LevelDB copy) (done - bytes copied, total - bytes of the files to copy, tables hard-linked
        from the previous backup excluded), C(LevelDB verification) (bytes of the records read, no
        total), then done or failed with the error message.
      - Holds no credentials. Put it in a private directory (for example one made by
        M(ansible.builtin.tempfile)) and remove it afterwards; its directory must exist. Not written in
        check mode.
    type: path
requirements:
  - plyvel (Debian python3-plyvel) on the managed host for verification and repair
notes:
  - Check mode validates the paths and reports how many bytes would be copied or linked
    (RV(bytes_to_copy), RV(bytes_to_link)); nothing is written.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Back up fcrepo's LevelDB (hot, verified, incremental, keep 7)
  leveldb_backup:
    src: /var/lib/tomcat9/fcrepo4-data/fcrepo.ispn.repo.cache/dataFedoraRepository
    dest: /backup/fcrepo/leveldb
    retain: 7
  register: leveldb_result

- name: Back up after the service was stopped, comparing record counts with the source
  leveldb_backup:
    src: /var/lib/tomcat9/fcrepo4-data/fcrepo.ispn.repo.cache/dataFedoraRepository
    dest: /backup/fcrepo/leveldb
    count_source: true
    keep_exact: true

- name: Back up as an async job, then follow it with progress lines (see roles/backup_progress)
  leveldb_backup:
    src: /var/lib/tomcat9/fcrepo4-data/fcrepo.ispn.repo.cache/dataFedoraRepository
    dest: /backup/fcrepo/leveldb
    progress_file: "{{ progress_dir.path }}/leveldb.progress"
  async: 21600
  poll: 0
  register: leveldb_job
"""

RETURN = r"""
bytes_to_copy:
  description: Check mode only, bytes that would be copied.
  returned: check mode
  type: int
bytes_to_link:
  description: Check mode only, bytes that would be hard-linked from the previous backup.
  returned: check mode
  type: int
backup_dir:
  description: The backup directory (its C(data/) is the verified LevelDB copy).
  returned: success
  type: str
  sample: /backup/fcrepo/leveldb/leveldb-20261122T013000.123456Z
skipped:
  description: True when O(skip_if_unchanged) found nothing new.
  returned: success
  type: bool
attempts:
  description: Copy attempts used.
  returned: success
  type: int
  sample: 1
files_copied:
  description: Files copied from the source.
  returned: success
  type: int
bytes_copied:
  description: Bytes copied from the source.
  returned: success
  type: int
files_linked:
  description: Table files hard-linked from the previous backup.
  returned: success
  type: int
bytes_linked:
  description: Bytes shared with the previous backup through hard links.
  returned: success
  type: int
size_bytes:
  description: Size of the copied LevelDB (copied plus linked).
  returned: success
  type: int
records:
  description: Records read with checksum verification (null with verify=changed or none).
  returned: success
  type: int
source_records:
  description: Records of the quiescent source when count_source is set.
  returned: success
  type: int
repaired:
  description: Whether the copy had to be repaired.
  returned: success
  type: bool
keys_lost:
  description: Keys lost by the repair (null when unknown or no repair).
  returned: success
  type: int
lost_keys_sample:
  description: Up to 20 of the lost keys.
  returned: success
  type: list
  elements: str
result:
  description:
    - C(good), or C(suspect) when the shrink guard kept the backup without making it C(latest) (the
      module then fails with the message, and returns these values too).
  returned: success or suspect
  type: str
  sample: good
figures:
  description: The size figures the shrink guard compared (C(records); null with verify=changed or none).
  returned: success or suspect
  type: dict
  sample: {"records": 100000}
shrink:
  description: The figures that fell by more than O(shrink_threshold) (figure, previous, current, drop).
  returned: success or suspect
  type: list
  elements: dict
latest:
  description: The backup C(latest) points to after the run (the newest good one).
  returned: success or suspect
  type: str
removed:
  description: Older backups deleted by retention.
  returned: success
  type: list
  elements: str
backups:
  description: Backups now present, oldest first.
  returned: success
  type: list
  elements: str
stale_removed:
  description: Temp directories of killed runs that were removed.
  returned: success
  type: list
  elements: str
copy_seconds:
  description: Duration of the consistent copy.
  returned: success
  type: float
verify_seconds:
  description: Duration of verification (and repair).
  returned: success
  type: float
quiet_wait_seconds:
  description: Time spent waiting for a quiet directory.
  returned: success
  type: float
duration_seconds:
  description: Total duration.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.leveldb_backup import (
    LevelDBBackupError,
    SuspectBackupError,
    backup,
    plan,
    wait_for_quiet,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            dest=dict(type="path", required=True),
            name=dict(type="str"),
            attempts=dict(type="int", default=10),
            incremental=dict(type="bool", default=True),
            keep_exact=dict(type="bool", default=False),
            rehash=dict(type="bool", default=False),
            verify=dict(type="str", default="full", choices=["full", "changed", "none"]),
            repair=dict(type="bool", default=True),
            fail_on_data_loss=dict(type="bool", default=True),
            rename_to_sst=dict(type="bool", default=True),
            retain=dict(type="int", default=0),
            min_good=dict(type="int", default=2),
            shrink_threshold=dict(type="float", default=0.4),
            accept_shrink=dict(type="bool", default=False),
            count_source=dict(type="bool", default=False),
            skip_if_unchanged=dict(type="bool", default=False),
            wait_quiet_seconds=dict(type="float", default=0),
            wait_timeout=dict(type="float", default=300),
            progress_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["retain"] < 0:
        module.fail_json(msg="retain must be 0 (keep all) or a positive number")
    if p["min_good"] < 1:
        module.fail_json(msg="min_good must be at least 1 (the newest good backup is always kept)")
    if not 0 <= p["shrink_threshold"] < 1:
        module.fail_json(msg="shrink_threshold must be a fraction >= 0 and < 1 (0.4 = a 40 % drop)")
    try:
        if module.check_mode:
            estimate = plan(p["src"], p["dest"], p["incremental"])
            module.exit_json(changed=True, backup_dir=None, bytes_to_copy=estimate["bytes_to_copy"],
                             bytes_to_link=estimate["bytes_to_link"], previous=estimate["previous"],
                             size_bytes=estimate["bytes_to_copy"] + estimate["bytes_to_link"], attempts=0,
                             bytes_copied=0, bytes_linked=0, records=None, repaired=False, keys_lost=None)
        waited = 0.0
        if p["wait_quiet_seconds"] > 0:
            waited = wait_for_quiet(p["src"], p["wait_quiet_seconds"], p["wait_timeout"], p["progress_file"])
        result = backup(
            p["src"], p["dest"], name=p["name"], attempts=p["attempts"], incremental=p["incremental"],
            keep_exact=p["keep_exact"], verify=p["verify"], repair=p["repair"],
            fail_on_data_loss=p["fail_on_data_loss"], rename_to_sst=p["rename_to_sst"], retain=p["retain"],
            count_source=p["count_source"], skip_if_unchanged=p["skip_if_unchanged"], rehash=p["rehash"],
            progress_file=p["progress_file"], shrink_threshold=p["shrink_threshold"], min_good=p["min_good"],
            accept_shrink=p["accept_shrink"],
        )
    except SuspectBackupError as exc:
        report = dict(exc.report)
        report["backup_dir"] = report.pop("path")
        module.fail_json(msg=str(exc), **report)
    except LevelDBBackupError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:  # a filesystem error outside the core's own handling (check mode, waiting)
        module.fail_json(msg=f"LevelDB backup failed: {exc}")
    result["quiet_wait_seconds"] = round(waited, 3)
    result["backup_dir"] = result.pop("path")  # "path" would make exit_json add that path's file attributes
    module.exit_json(**result)


if __name__ == "__main__":
    main()
