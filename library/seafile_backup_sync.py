#!/usr/bin/python
"""Run seaf-backup-cmd.sh sync [--force] <library id> for each given library."""

DOCUMENTATION = r"""
---
module: seafile_backup_sync
short_description: Manually sync libraries on the Seafile real-time backup server
description:
  - Runs C(seaf-backup-cmd.sh sync <library id>) (or C(sync --force <library id>)) once per library,
    one after another; each call blocks until that library is backed up.
  - Every id is validated as a UUID before the first command runs; a bad id changes nothing.
  - A library that fails does not stop the others. The task fails afterwards when any library
    failed, with the outcome of each in C(libraries).
  - In check mode nothing runs; the commands that would run are returned.
options:
  script:
    description: Path of C(seaf-backup-cmd.sh) on the backup server.
    type: path
    default: /opt/seafile/seafile-server-latest/seaf-backup-cmd.sh
  library_ids:
    description: Library ids (UUIDs) to sync. An empty list does nothing.
    type: list
    elements: str
    required: true
  force:
    description:
      - Pass C(--force), which skips corrupted objects so a failing backup completes.
      - The documented procedure runs seaf-fsck on the primary for the library first.
    type: bool
    default: false
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Sync two libraries, skipping corrupted objects
  seafile_backup_sync:
    library_ids:
      - f690ea2c-fe4d-459a-ba1e-165cdc6df391
      - e2df70b5-cd80-496f-98cf-c9f038cf1307
    force: true
  register: seafile_sync
"""

RETURN = r"""
libraries:
  description: Outcome per library, in the order synced.
  returned: always
  type: list
  elements: dict
  contains:
    library_id: {description: The library id., type: str}
    result: {description: ok or failed (or would_run in check mode)., type: str}
    forced: {description: Whether --force was passed., type: bool}
    rc: {description: Exit code of the command., type: int}
    stdout: {description: Output of the command., type: str}
    stderr: {description: Error output of the command., type: str}
    cmd: {description: The argument list run., type: list, elements: str}
    duration_seconds: {description: Wall time of this library's sync., type: float}
synced:
  description: Ids synced successfully.
  returned: always
  type: list
  elements: str
failed_to_sync:
  description: Ids whose sync failed.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.seafile_backup import (
    SeafileBackupError,
    run_syncs,
    sync_command,
    validate_library_ids,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            script=dict(type="path", default="/opt/seafile/seafile-server-latest/seaf-backup-cmd.sh"),
            library_ids=dict(type="list", elements="str", required=True),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    script, force = module.params["script"], module.params["force"]
    try:
        ids = validate_library_ids(module.params["library_ids"])
    except SeafileBackupError as exc:
        module.fail_json(msg=str(exc), libraries=[], synced=[], failed_to_sync=[])

    if module.check_mode:
        planned = [{"library_id": i, "result": "would_run", "forced": force,
                    "cmd": sync_command(script, i, force)} for i in ids]
        module.exit_json(changed=bool(ids), libraries=planned, synced=[], failed_to_sync=[])

    def runner(argv):
        started = time.monotonic()
        rc, out, err = module.run_command(argv)
        durations.append(round(time.monotonic() - started, 3))
        return rc, out, err

    durations = []
    outcomes = run_syncs(runner, script, ids, force)
    for outcome, duration in zip(outcomes, durations):
        outcome["duration_seconds"] = duration
    synced = [o["library_id"] for o in outcomes if o["result"] == "ok"]
    failed = [o["library_id"] for o in outcomes if o["result"] != "ok"]
    result = dict(changed=bool(synced), libraries=outcomes, synced=synced, failed_to_sync=failed)
    if failed:
        module.fail_json(
            msg=f"{len(failed)} of {len(outcomes)} libraries failed to sync: {', '.join(failed)}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
