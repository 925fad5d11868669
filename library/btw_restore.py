#!/usr/bin/python
"""Ansible module: restore a btw backup (rdiff-backup at a time, a tar, or a dump into a database)."""

DOCUMENTATION = r"""
---
module: btw_restore
short_description: Restore a btw backup to a directory or a database
description:
  - For file-system sets, restores the rdiff-backup state at O(at) (the chain covering that time
    is chosen automatically) or a tar archive (the newest at or before O(at), or O(backup) by name)
    into O(target), which must not exist; the restore goes to a hidden sibling first and is renamed
    into place when complete.
  - For database sets (O(type) C(pg_dump), C(pg_globals), C(mysqldump)), restores the dump stored at
    O(at) from its chain and loads it into O(target_database) (C(pg_restore --no-owner
    --exit-on-error), C(psql -f) for globals, C(mysql) for MySQL/MariaDB).
version_added: "1.0.0"
options:
  root:
    description: Absolute backup root.
    type: path
    required: true
  destination:
    description: The set's directory, relative to O(root).
    type: str
    required: true
  type:
    description: C(fs) for tar and rdiff sets, otherwise the database backup type.
    type: str
    choices: [fs, pg_dump, pg_globals, mysqldump]
    default: fs
  name:
    description: The database set's name (its dump file name). Required for database types.
    type: str
  at:
    description:
      - When to restore - C(now) (default), an ISO time (C(2026-11-22T01:30:00Z)), epoch seconds,
        a backup stamp (C(20261122T013000Z)) or an age (C(36h), C(7d)).
    type: str
    default: now
  backup:
    description: A tar archive by file name (file-system sets), instead of O(at).
    type: str
  target:
    description: Directory to restore into (file-system sets). Must not exist; its parent must.
    type: path
  target_database:
    description: Database to load the dump into (database sets other than C(pg_globals)).
    type: str
  create_database:
    description: Create O(target_database) first (it must not exist).
    type: bool
    default: false
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
    details: Resolves which backup would be restored; restores nothing.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Restore /etc as it was 36 hours ago
  btw_restore:
    root: /srv/backups
    destination: fs/etc
    at: 36h
    target: /srv/restore/etc

- name: Restore the wiki database into wiki_restored
  btw_restore:
    root: /srv/backups
    destination: db/wiki
    type: pg_dump
    name: wiki
    target_database: wiki_restored
    create_database: true
    login_user: postgres
"""

RETURN = r"""
source:
  description: The tar archive or rdiff-backup chain restored from.
  returned: file-system sets
  type: str
chain:
  description: The chain the dump was restored from.
  returned: database sets
  type: str
session:
  description: Epoch time of the rdiff-backup session restored.
  returned: rdiff-backup sources
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_db import db_restore
from ansible.module_utils.btw_fs import fs_restore
from ansible.module_utils.btw_module import CONNECTION_SPEC, ModuleRun, connection_from


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            destination=dict(type="str", required=True),
            type=dict(type="str", choices=["fs", "pg_dump", "pg_globals", "mysqldump"], default="fs"),
            name=dict(type="str"),
            at=dict(type="str", default="now"),
            backup=dict(type="str"),
            target=dict(type="path"),
            target_database=dict(type="str"),
            create_database=dict(type="bool", default=False),
            **CONNECTION_SPEC,
        ),
        required_if=[
            ("type", "fs", ("target",)),
            ("type", "pg_dump", ("name", "target_database")),
            ("type", "mysqldump", ("name", "target_database")),
            ("type", "pg_globals", ("name",)),
        ],
        supports_check_mode=True,
    )
    p = module.params
    run = ModuleRun(module, "restore failed: ")
    if p["type"] == "fs":
        result = run.call(
            fs_restore,
            p["root"],
            p["destination"],
            p["target"],
            p["at"],
            p["backup"],
            check_mode=module.check_mode,
        )
    else:
        result = run.call(
            db_restore,
            p["name"],
            p["type"],
            p["root"],
            p["destination"],
            p["target_database"],
            p["at"],
            connection_from(p),
            p["pg_bin_dir"],
            p["create_database"],
            check_mode=module.check_mode,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
