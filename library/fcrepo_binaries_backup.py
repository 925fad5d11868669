#!/usr/bin/python
"""Ansible module: back up fcrepo's binary store with SHA-1 fixity checks."""

DOCUMENTATION = r"""
---
module: fcrepo_binaries_backup
short_description: Copy new fcrepo binaries to a backup and check their fixity (SHA-1 vs file name)
description:
  - fcrepo 4 stores each binary over 4 KB in C(fcrepo.binary.directory) under its SHA-1, sharded
    C(a1/b2/c3/a1b2c3...). Files never change, so the backup is a growing mirror and only files not
    yet in it are copied (temp name, a batch made durable, an fsync per file up to 128 files, else
    one syncfs, then renamed; a killed run leaves no file under a
    SHA-1 name), two top-level shard directories at a time.
  - The SHA-1 of every copied file, computed from the bytes written, is compared with its name; a
    mismatch is reported and the file is not installed in the backup.
  - Shrink guard - the store's files and bytes are recorded in C(dest/.fcrepo-binaries-runs.json) and
    compared with the last good run's. A drop of more than O(shrink_threshold) fails the run as
    C(suspect) (RV(result)), naming the figure and both values. The mirror never deletes a file, so
    nothing is lost from the backup; O(accept_shrink) accepts the drop for one run.
version_added: "1.0.0"
author: Backup toolkit team
options:
  src:
    description: The binary store directory (C(fcrepo.binary.directory)).
    type: path
    required: true
  dest:
    description: The backup directory of the binaries (created, mode 0700). Not inside O(src).
    type: path
    required: true
  verify_existing:
    description: Also recompute the SHA-1 of every file already in the backup (full fixity audit).
    type: bool
    default: false
  fail_on_mismatch:
    description: Fail when any file's content does not match its name.
    type: bool
    default: true
  shrink_threshold:
    description: Fraction by which files or bytes may fall below the last good run's before the run is
      suspect (0.4 catches a store that lost half its binaries).
    type: float
    default: 0.4
  accept_shrink:
    description: Accept a drop caught by the shrink guard for this run (binaries deleted on purpose).
    type: bool
    default: false
notes:
  - Check mode reports how many files and bytes would be copied and the shrink guard's verdict, and
    records nothing.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Back up fcrepo binaries
  fcrepo_binaries_backup:
    src: /var/lib/tomcat9/fcrepo4-data/fcrepo.binary.directory
    dest: /backup/fcrepo/binaries

- name: Monthly fixity audit of the whole binary backup
  fcrepo_binaries_backup:
    src: /var/lib/tomcat9/fcrepo4-data/fcrepo.binary.directory
    dest: /backup/fcrepo/binaries
    verify_existing: true
"""

RETURN = r"""
binaries:
  description: Binaries found in the store.
  returned: success
  type: int
copied:
  description: Files copied (or that would be, in check mode).
  returned: success
  type: int
bytes_copied:
  description: Bytes copied.
  returned: success
  type: int
already_present:
  description: Files already in the backup (not copied again).
  returned: success
  type: int
verified_existing:
  description: Files of the backup whose fixity was rechecked.
  returned: success
  type: int
mismatches:
  description: Files whose SHA-1 differs from their name (where is source or backup).
  returned: always
  type: list
  elements: dict
misplaced:
  description: SHA-1 named files not in their a1/b2/c3 shard (not copied).
  returned: success
  type: list
  elements: str
unrecognised:
  description: Files that are not named by a SHA-1 (not copied).
  returned: success
  type: list
  elements: str
result:
  description: C(good), or C(suspect) when files or bytes fell by more than O(shrink_threshold) (the
    module then fails and returns these values too).
  returned: success or suspect
  type: str
figures:
  description: The store's C(files) and C(bytes) recorded for the shrink guard.
  returned: success or suspect
  type: dict
shrink:
  description: The figures that fell (figure, previous, current, drop).
  returned: success or suspect
  type: list
  elements: dict
size_changed:
  description: Files present in both whose sizes differ (content-addressed files must not change).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.fcrepo_binaries import FcrepoBinariesError, backup


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            dest=dict(type="path", required=True),
            verify_existing=dict(type="bool", default=False),
            fail_on_mismatch=dict(type="bool", default=True),
            shrink_threshold=dict(type="float", default=0.4),
            accept_shrink=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        report = backup(p["src"], p["dest"], verify_existing=p["verify_existing"],
                        check_mode=module.check_mode, shrink_threshold=p["shrink_threshold"],
                        accept_shrink=p["accept_shrink"])
    except FcrepoBinariesError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"backup of the binary store failed: {exc}")
    if report["result"] == "suspect":
        module.fail_json(msg=report["shrink_message"], **report)
    if p["fail_on_mismatch"] and (report["mismatches"] or report["size_changed"]):
        module.fail_json(msg=f"fixity check failed for {len(report['mismatches'])} file(s) "
                         f"and {len(report['size_changed'])} changed size: {report['mismatches'][:5]}",
                         **report)
    module.exit_json(**report)


if __name__ == "__main__":
    main()
