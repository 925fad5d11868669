#!/usr/bin/python
"""Ansible module: drop the scratch database a restore drill loaded a dump into."""

DOCUMENTATION = r"""
---
module: btw_scratch_database
short_description: Drop a restore drill's scratch database
description:
  - Drops O(name) (PostgreSQL or MySQL/MariaDB) if it exists. Only a name starting with
    C(restore_drill_) is accepted, so a live database is never dropped by a drill's cleanup.
  - The connection options are btw_restore's; a O(credentials_file) is only read.
version_added: "1.0.0"
options:
  type:
    description: The dump type of the set the scratch database was restored from.
    type: str
    choices: [pg_dump, mysqldump]
    required: true
  name:
    description: The scratch database (C(restore_drill_<set>)).
    type: str
    required: true
  state:
    description: Only C(absent).
    type: str
    choices: [absent]
    default: absent
  login_host:
    description: Server host.
    type: str
  login_port:
    description: Server port.
    type: int
  login_user:
    description: User to connect as.
    type: str
  login_password:
    description: Password (environment or 0600 file, never the command line).
    type: str
  login_unix_socket:
    description: MySQL/MariaDB socket.
    type: path
  credentials_file:
    description: A 0600 C(.pgpass) or MySQL option file instead of O(login_password).
    type: path
  pg_bin_dir:
    description: Directory of the PostgreSQL client programs.
    type: path
attributes:
  check_mode:
    support: full
    details: Says whether the database would be dropped.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Drop the scratch database of the shop drill
  btw_scratch_database:
    type: mysqldump
    name: restore_drill_shop
    credentials_file: /root/.my.cnf
"""

RETURN = r"""
existed:
  description: Whether the database existed (and was dropped, unless in check mode).
  returned: always
  type: bool
database:
  description: The database.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_db import drop_scratch_database
from ansible.module_utils.btw_module import CONNECTION_SPEC, ModuleRun, connection_from


def main():
    module = AnsibleModule(
        argument_spec=dict(
            type=dict(type="str", choices=["pg_dump", "mysqldump"], required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["absent"], default="absent"),
            **CONNECTION_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    run = ModuleRun(module, "dropping the scratch database failed: ")
    result = run.call(drop_scratch_database, p["type"], p["name"], connection_from(p), p["pg_bin_dir"],
                      check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
