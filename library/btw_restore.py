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
    --single-transaction), C(psql) for globals, C(mysql) for MySQL/MariaDB).
  - Guarded before anything changes, in check mode too - O(target_database) must exist unless
    O(create_database) is set, must not exist when it is set, and must be empty (no table, view,
    sequence, routine, event, or for PostgreSQL schema other than C(public)) unless O(force) is set.
    The dump replaces what it holds of the same name (mysqldump's C(DROP TABLE IF EXISTS),
    C(pg_restore --clean --if-exists)); other objects in the target are left in place.
  - PostgreSQL loads in one transaction, so a failure anywhere leaves the target as it was. MySQL
    and MariaDB cannot roll back DDL - after a failed load, a database created by this restore is
    dropped again, a target that was empty is emptied again (what the load created is dropped), and
    a non-empty target (O(force)) is reported as C(PARTIALLY restored) with how much of the dump is
    in it. A globals
    script is not one transaction (C(CREATE TABLESPACE) cannot run in one, and the connecting role
    always exists already) - its errors fail the restore, except a role or tablespace that already
    exists (listed in RV(notes)).
  - After the load, the tables, views and sequences the dump creates are looked up in the target
    (roles for globals); any missing fails the restore. RV(verified) says what was checked. Row
    counts are not compared - neither dump format records them, they would have to be counted from
    the data and every restored table scanned.
  - A O(credentials_file) is only read. The MySQL option file the module writes (0600) lives in a
    private temporary directory with the fetched dump, removed when the module ends.
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
    description:
      - Create O(target_database) for the restore; it must not exist. Dropped again if the load or
        the check after it fails.
    type: bool
    default: false
  force:
    description:
      - Load into a O(target_database) that already holds objects, replacing those the dump holds
        (tables, views, ...) and their data. Without it such a target is refused and nothing changes.
      - Database sets only.
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
    details:
      - Resolves which backup would be restored and, for databases, reads the target (exists, what it
        holds) and refuses what a run would refuse; restores nothing. RV(action) says what a run would do.
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

- name: Load last night's shop dump over the current shop database (replacing its tables)
  btw_restore:
    root: /srv/backups
    destination: db/shop
    type: mysqldump
    name: shop
    at: 1d
    target_database: shop
    force: true
    credentials_file: /root/.my.cnf
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
skipped_suspect:
  description:
    - Chains of suspect dumps (shrink guard) passed over when O(at) is C(now), newest first; the
      latest good dump is restored. A dump given by time is restored as it is.
  returned: database sets
  type: list
  elements: str
session:
  description: Epoch time of the rdiff-backup session restored.
  returned: rdiff-backup sources and database sets
  type: float
target_database:
  description: The database loaded.
  returned: database sets
  type: str
action:
  description: What the restore does (or would do in check mode) to the target.
  returned: database sets
  type: str
  sample: create shop_restored and load the dump
target_before:
  description: The target database before the restore - whether it existed and how many objects it held.
  returned: database sets other than pg_globals
  type: dict
  sample: {"exists": true, "objects": 3}
created:
  description: Whether this restore created O(target_database).
  returned: database sets
  type: bool
replaced:
  description: Whether the dump was loaded over objects already in the target (O(force)).
  returned: database sets
  type: bool
verified:
  description:
    - The check of the restored database against the dump - what was checked, how many objects the
      dump creates (expected), how many of them are in the target (found), the missing ones (the
      restore fails if any), the target's other objects (other), and ok.
  returned: database sets, when loaded
  type: dict
  sample:
    checked: tables, views and sequences the dump creates, looked up in the restored database
    expected: 2
    found: 2
    missing: []
    other: [table orders]
    ok: true
notes:
  description: Errors of a globals load that are expected (a role or tablespace that already exists).
  returned: pg_globals
  type: list
  elements: str
duration_seconds:
  description: Time the restore took.
  returned: always
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
            force=dict(type="bool", default=False),
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
        if p["force"]:
            module.fail_json(msg="force applies to database restores; a file-system target must not exist")
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
            force=p["force"],
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
