#!/usr/bin/python
"""Ansible module: database dump backup, compared by content, stored with rdiff-backup."""

DOCUMENTATION = r"""
---
module: btw_db_backup
short_description: Dump a PostgreSQL or MySQL/MariaDB database and keep it with rdiff-backup when it changed
description:
  - C(pg_dump) dumps one database in custom format; C(pg_globals) runs C(pg_dumpall --globals-only);
    C(mysqldump) dumps one MySQL/MariaDB database with C(--single-transaction --skip-dump-date).
  - The new dump is compared with the dump held by the current rdiff-backup chain through its
    content (custom-format dumps are rendered by C(pg_restore -f -); lines that change from run to
    run such as C(\restrict) keys and "Dumped from/Started on" comments are ignored). Only a
    changed dump is stored (rdiff-backup, reverse increments, a new chain after
    O(max_incremental_count) increments or O(max_incremental_span)); otherwise a note goes to
    C(log.txt) and C(changed=false).
  - The dump is written into a hidden 0700 staging directory that is removed in every case, so no
    partial dump ever looks like a backup. Dump files are 0600.
  - Passwords never reach a command line; they go in C(PGPASSWORD) in the environment, or a 0600 MySQL
    option file passed as the first argument, C(--defaults-file). It is the only option file the
    clients read, so a C(~/.my.cnf) or C(/etc/mysql/my.cnf) on the host never changes the server or
    the user.
  - C(mysqldump) records the binlog file, position and GTID of the dump's snapshot where the server
    writes a binary log (O(record_coordinates); MariaDB C(--master-data=2 --gtid) read from the
    consistent snapshot without a lock, MySQL C(--source-data=2), which needs RELOAD and REPLICATION
    CLIENT). They go to C(<name>.meta.json) (0600) beside the dump in the chain and to
    C(.btw-coordinates.json) in the destination, which M(mysql_binlog_archive_retention) reads
    (full backup kind C(btw)). A server without a binary log gives a dump without coordinates
    (C(coordinates_note) says so), never a failure.
  - Shrink guard - the dump's tables (roles for C(pg_globals)) and bytes are compared with the last
    good dump's (C(.btw-runs.json)). When one fell by more than O(shrink_threshold) the dump is kept,
    in a chain of its own, but B(suspect) (M(btw_retention) does not count it as good) and the module
    fails naming the figure, both values and how to accept the drop (O(accept_shrink)).
version_added: "1.0.0"
options:
  name:
    description: Backup set name; the dump file is C(<name>.dump) or C(<name>.sql).
    type: str
    required: true
  type:
    description: Kind of dump.
    type: str
    choices: [pg_dump, pg_globals, mysqldump]
    required: true
  database:
    description: Database to dump. Required for C(pg_dump) and C(mysqldump); not allowed for C(pg_globals).
    type: str
  root:
    description: Absolute backup root; O(destination) is relative to it.
    type: path
    required: true
  destination:
    description: Directory of this set's chains, relative to O(root).
    type: str
    required: true
  login_host:
    description: Server host; omit to use the local socket.
    type: str
  login_port:
    description: Server port.
    type: int
  login_user:
    description: User to connect as.
    type: str
  login_password:
    description: Password (passed through the environment or a 0600 file, never on a command line).
    type: str
  login_unix_socket:
    description: MySQL/MariaDB socket path.
    type: path
  credentials_file:
    description:
      - A 0600 file with the credentials instead of O(login_password) - a C(.pgpass) file for
        PostgreSQL (C(PGPASSFILE)), a C([client]) option file for MySQL/MariaDB.
    type: path
  pg_bin_dir:
    description:
      - Directory of pg_dump, pg_dumpall and pg_restore.
      - Default the PATH, then the newest C(/usr/lib/postgresql/*/bin).
    type: path
  max_incremental_count:
    description: Increments allowed in a chain before a new full backup.
    type: int
    default: 10
  max_incremental_span:
    description: Longest time a chain may cover (C(90m), C(36h), C(7d)).
    type: str
    default: 24h
  owner:
    description: C(user:group) given to the stored files.
    type: str
  record_coordinates:
    description:
      - For C(mysqldump), record the binlog coordinates of the dump (nothing is recorded, and nothing
        fails, when the server has no binary log). False dumps without them, as before.
    type: bool
    default: true
  shrink_threshold:
    description:
      - Fraction (0 to <1) by which tables or bytes may fall below the last good dump's before the
        dump is suspect.
    type: float
    default: 0.4
  accept_shrink:
    description: Accept a drop beyond O(shrink_threshold) for this run (the dump is recorded as good).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Dumps into a temporary directory and reports whether the content changed; stores nothing.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Back up the wiki database
  btw_db_backup:
    name: wiki
    type: pg_dump
    database: wiki
    root: /srv/backups
    destination: db/wiki
    login_host: 127.0.0.1
    login_user: backup
    login_password: "{{ vault_pg_backup_password }}"
  no_log: true

- name: Back up the PostgreSQL globals (roles, tablespaces)
  btw_db_backup:
    name: globals
    type: pg_globals
    root: /srv/backups
    destination: db/globals
    login_user: postgres

- name: Back up a MariaDB database
  btw_db_backup:
    name: shop
    type: mysqldump
    database: shop
    root: /srv/backups
    destination: db/shop
    credentials_file: /root/.backup.cnf
"""

RETURN = r"""
stored:
  description: Whether the dump was stored (false when its content is unchanged, or in check mode).
  returned: always
  type: bool
reason:
  description: Why it was or was not stored.
  returned: always
  type: str
location:
  description: The rdiff-backup chain holding the dump.
  returned: always
  type: str
content_sha256:
  description: Hash of the dump's content as compared (volatile lines left out).
  returned: always
  type: str
dump_size_bytes:
  description: Size of the new dump.
  returned: always
  type: int
figures:
  description: The shrink guard's figures of the new dump, C(tables) (C(roles) for C(pg_globals)), C(bytes).
  returned: always
  type: dict
  sample: {tables: 12, bytes: 483920}
coordinates:
  description:
    - The binlog coordinates the new C(mysqldump) recorded (C(binlog_file), C(binlog_position), C(gtid)),
      null without them. When the dump is not stored, the chain keeps the previous dump's, consistent with it.
  returned: for mysqldump
  type: dict
coordinates_note:
  description: Why a C(mysqldump) has no coordinates (no binary log, O(record_coordinates) false), else null.
  returned: for mysqldump
  type: str
result_status:
  description: C(good), or C(suspect) when a figure fell by more than O(shrink_threshold).
  returned: when the dump was made
  type: str
shrink:
  description: The figures that fell by more than O(shrink_threshold) (figure, previous, current, drop).
  returned: when the dump was made
  type: list
  elements: dict
backup_run:
  description: The run as the playbooks publish it in C(backup_runs) (result C(ok), C(suspect), C(failed)).
  returned: always, also on failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_db import db_backup
from ansible.module_utils.btw_module import CONNECTION_SPEC, ModuleRun, connection_from


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", choices=["pg_dump", "pg_globals", "mysqldump"], required=True),
            database=dict(type="str"),
            root=dict(type="path", required=True),
            destination=dict(type="str", required=True),
            max_incremental_count=dict(type="int", default=10),
            max_incremental_span=dict(type="str", default="24h"),
            owner=dict(type="str"),
            record_coordinates=dict(type="bool", default=True),
            shrink_threshold=dict(type="float", default=0.4),
            accept_shrink=dict(type="bool", default=False),
            **CONNECTION_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    run = ModuleRun(
        module,
        f"database backup {p['name']} failed: ",
        {"strategy": "db_backup", "mode": p["type"], "set": p["name"], "type": p["type"],
         "database": p["database"]},
    )
    result = run.call(
        db_backup,
        p["name"],
        p["type"],
        p["root"],
        p["destination"],
        database=p["database"],
        connection=connection_from(p),
        pg_bin_dir=p["pg_bin_dir"],
        max_incremental_count=p["max_incremental_count"],
        max_incremental_span=p["max_incremental_span"],
        owner=p["owner"],
        check_mode=module.check_mode,
        record_coordinates=p["record_coordinates"],
        shrink_threshold=p["shrink_threshold"],
        accept_shrink=p["accept_shrink"],
    )
    verdict = result.pop("verdict")
    result.update(
        result_status=verdict["status"], shrink=verdict["drops"], shrink_accepted=verdict["accepted"]
    )
    if verdict["status"] == "suspect":
        run.exit_suspect(result, verdict["message"])
    run.exit_stored(result)


if __name__ == "__main__":
    main()
