#!/usr/bin/python
"""Ansible module: file-system backup (tar or rdiff-backup) that stores nothing when nothing changed."""

DOCUMENTATION = r"""
---
module: btw_fs_backup
short_description: Back up a directory tree as tar or rdiff-backup, skipping unchanged trees
description:
  - Backs up O(source) into O(root)/O(destination) ("btw-backup fs").
  - Change detection needs no archive. A manifest of every path (type, mode, owner, size, mtime,
    symlink target and the sha256 of file content) is kept beside the backups in
    C(.btw-manifest.json). A cheap first pass compares C(lstat); content is hashed only for files
    whose stat (including ctime and inode) differs, so a rewrite with size and mtime restored is
    still found.
  - When nothing changed, nothing is stored and a note is appended to C(log.txt) in the
    destination (C(changed=false)).
  - C(tar) writes C(<name>-<YYYYmmddTHHMMSSZ>.tar[.gz|.zst]) under a hidden temporary name and
    renames it when complete. C(rdiff) runs rdiff-backup into C(chain-<stamp>/) repositories and
    starts a new chain (a new full backup) after O(max_incremental_count) increments or
    O(max_incremental_span) of time, or when a file changed with its size and mtime (to the
    second) kept, which rdiff-backup alone would miss.
  - A directory holding the O(exclude_tag) file is left out entirely.
  - Shrink guard - each run's regular files and bytes are compared with the last good run's
    (recorded in C(.btw-runs.json) beside the backups). When one fell by more than
    O(shrink_threshold) the backup is kept but B(suspect) - M(btw_retention) does not count it as
    good - and the module fails naming the figure, both values and how to accept the drop
    (O(accept_shrink)). A source that stays shrunk keeps failing, also when nothing new is stored.
version_added: "1.0.0"
options:
  name:
    description: Backup set name (letters, digits, C(.), C(_), C(-)); used in tar file names and notes.
    type: str
    required: true
  source:
    description: Absolute path of the directory to back up. Must not contain the destination.
    type: path
    required: true
  root:
    description: Absolute backup root; O(destination) is relative to it (btw-backup C(ROOT_PATH)).
    type: path
    required: true
  destination:
    description: Directory of this set's backups, relative to O(root).
    type: str
    required: true
  type:
    description: C(tar) (one archive per backup) or C(rdiff) (rdiff-backup reverse increments).
    type: str
    choices: [tar, rdiff]
    default: rdiff
  exclude_tag:
    description: A directory containing a file of this name is not backed up. Empty to disable.
    type: str
    default: .btw-nobackup
  max_incremental_count:
    description: C(rdiff) only. Increments allowed in a chain before a new full backup.
    type: int
    default: 10
  max_incremental_span:
    description: C(rdiff) only. Longest time a chain may cover, e.g. C(90m), C(36h), C(7d), C(1d12h).
    type: str
    default: 24h
  owner:
    description: C(user:group) (names or ids) given to the stored files; omit to keep root's.
    type: str
  compression:
    description: C(tar) only. Compression of the archive.
    type: str
    choices: [none, gzip, zstd]
    default: none
  hash_all:
    description: Hash every file instead of trusting unchanged stat results (slower, paranoid).
    type: bool
    default: false
  shrink_threshold:
    description: Fraction by which the files or bytes may fall below the last good run's before the
      backup is suspect (0.4 catches a source that lost half its files).
    type: float
    default: 0.4
  accept_shrink:
    description: Accept a drop caught by the shrink guard for this run (data deleted on purpose); the
      backup is recorded as good.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Scans and reports whether a backup would be stored; writes nothing.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Back up /etc as rdiff-backup increments, a new full backup every 7 days
  btw_fs_backup:
    name: etc
    source: /etc
    root: /srv/backups
    destination: fs/etc
    type: rdiff
    max_incremental_span: 7d
    owner: backup:backup

- name: Keep a tar of the web root only when it changed
  btw_fs_backup:
    name: www
    source: /var/www
    root: /srv/backups
    destination: fs/www
    type: tar
    compression: zstd
"""

RETURN = r"""
stored:
  description: Whether a backup was written (false when the source is unchanged, or in check mode).
  returned: always
  type: bool
reason:
  description: Why a backup was or was not stored.
  returned: always
  type: str
  sample: 0 added, 0 removed, 1 modified
location:
  description: The tar file or rdiff-backup chain written (or the previous one when unchanged).
  returned: always
  type: str
full:
  description: Whether the backup was a full one (a tar, or a new rdiff-backup chain).
  returned: when stored
  type: bool
chain_reason:
  description: C(rdiff) only. Why this chain was used or started.
  returned: when stored and type is rdiff
  type: str
changes:
  description: Counts of added, removed, modified files, stealth changes, and example paths.
  returned: always
  type: dict
scan:
  description: Files scanned, files hashed, bytes hashed.
  returned: always
  type: dict
figures:
  description: The source's regular C(files) and their C(bytes), compared by the shrink guard.
  returned: always
  type: dict
result_status:
  description: C(good), or C(suspect) when the shrink guard caught a drop (the module then fails).
  returned: always
  type: str
shrink:
  description: The figures that fell (figure, previous, current, drop).
  returned: always
  type: list
  elements: dict
backup_run:
  description: The run as the strategy playbooks publish it in C(backup_runs) (result C(ok),
    C(suspect) or C(failed)).
  returned: always, also on failure
  type: dict
  sample: {strategy: fs_backup, mode: rdiff, set: etc, result: ok,
           location: /srv/backups/fs/etc/chain-20261122T013000Z, size_bytes: 123456,
           duration_seconds: 1.2, details: "stored: 1 modified"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_fs import fs_backup
from ansible.module_utils.btw_module import ModuleRun
from ansible.module_utils.btw_retention import shrink_guard


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            source=dict(type="path", required=True),
            root=dict(type="path", required=True),
            destination=dict(type="str", required=True),
            type=dict(type="str", choices=["tar", "rdiff"], default="rdiff"),
            exclude_tag=dict(type="str", default=".btw-nobackup"),
            max_incremental_count=dict(type="int", default=10),
            max_incremental_span=dict(type="str", default="24h"),
            owner=dict(type="str"),
            compression=dict(type="str", choices=["none", "gzip", "zstd"], default="none"),
            hash_all=dict(type="bool", default=False),
            shrink_threshold=dict(type="float", default=0.4),
            accept_shrink=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    run = ModuleRun(
        module,
        f"file-system backup {p['name']} failed: ",
        {"strategy": "fs_backup", "mode": p["type"], "set": p["name"], "type": p["type"]},
    )
    result = run.call(
        fs_backup,
        p["name"],
        p["source"],
        p["root"],
        p["destination"],
        p["type"],
        p["exclude_tag"] or None,
        p["max_incremental_count"],
        p["max_incremental_span"],
        p["owner"],
        p["compression"],
        p["hash_all"],
        check_mode=module.check_mode,
    )
    verdict = run.call(
        shrink_guard,
        result["destination"],
        result.get("location"),
        result["figures"],
        result["stored"],
        p["shrink_threshold"],
        p["accept_shrink"],
        check_mode=module.check_mode,
    )
    result.update(
        result_status=verdict["status"], shrink=verdict["drops"], shrink_accepted=verdict["accepted"]
    )
    if verdict["status"] == "suspect":
        run.exit_suspect(result, verdict["message"])
    run.exit_stored(result)


if __name__ == "__main__":
    main()
