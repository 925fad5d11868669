#!/usr/bin/python
"""Run seaf-backup-cmd.sh status and return its counts and library lists as facts."""

DOCUMENTATION = r"""
---
module: seafile_backup_status
short_description: Read the state of the Seafile real-time backup server
description:
  - Runs C(seaf-backup-cmd.sh status) on the Seafile Pro backup server and parses the documented
    output (five counts, the list of syncing libraries, the list of libraries failed to sync).
  - Output it cannot parse fails the task with the offending line; it is never read as "all fine".
  - Read-only, so it also runs in check mode.
options:
  script:
    description: Path of C(seaf-backup-cmd.sh) on the backup server.
    type: path
    default: /opt/seafile/seafile-server-latest/seaf-backup-cmd.sh
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Read the backup status
  seafile_backup_status:
    script: /opt/seafile/seafile-server-latest/seaf-backup-cmd.sh
  register: seafile_status

- name: Show the libraries that failed to sync
  ansible.builtin.debug:
    var: seafile_status.status.failed_libraries
"""

RETURN = r"""
status:
  description: The parsed status.
  returned: success
  type: dict
  contains:
    total: {description: Total number of libraries., type: int}
    synchronized: {description: Number of synchronized libraries., type: int}
    waiting: {description: Number of libraries waiting for sync., type: int}
    syncing: {description: Number of libraries syncing., type: int}
    failed: {description: Number of libraries failed to sync., type: int}
    syncing_libraries: {description: Ids of the libraries syncing., type: list, elements: str}
    failed_libraries: {description: Ids of the libraries failed to sync., type: list, elements: str}
    warnings: {description: Counts that disagree with their lists., type: list, elements: str}
  sample:
    total: 3
    synchronized: 1
    waiting: 0
    syncing: 1
    failed: 1
    syncing_libraries: [e2df70b5-cd80-496f-98cf-c9f038cf1307]
    failed_libraries: [f690ea2c-fe4d-459a-ba1e-165cdc6df391]
    warnings: []
stdout:
  description: Raw output of the status command.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.seafile_backup import SeafileBackupError, parse_status

DEFAULT_SCRIPT = "/opt/seafile/seafile-server-latest/seaf-backup-cmd.sh"


def main():
    module = AnsibleModule(
        argument_spec=dict(script=dict(type="path", default=DEFAULT_SCRIPT)),
        supports_check_mode=True,
    )
    script = module.params["script"]
    rc, out, err = module.run_command([script, "status"])
    if rc != 0:
        module.fail_json(msg=f"{script} status exited with {rc}: {(err or out).strip()}", rc=rc, stdout=out,
                         stderr=err)
    try:
        status = parse_status(out)
    except SeafileBackupError as exc:
        module.fail_json(msg=str(exc), stdout=out, stderr=err)
    for warning in status["warnings"]:
        module.warn(f"seaf-backup-cmd.sh status: {warning}")
    module.exit_json(changed=False, status=status, stdout=out)


if __name__ == "__main__":
    main()
