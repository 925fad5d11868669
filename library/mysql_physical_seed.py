#!/usr/bin/python
"""Ansible module: physical seed of a replica (mariadb-backup stream, prepare, swap in)."""

DOCUMENTATION = r"""
---
module: mysql_physical_seed
short_description: Seed a replica from a mariadb-backup stream of its source (large databases)
description:
  - Runs on the backup host, one O(step) per call, so the play stops and starts the replica's server
    between them.
  - O(step=stage) - reads the source's data and index size over the source_* admin login and refuses
    before anything is streamed when the backup host lacks the room (the size x1.25 plus
    O(reserve_bytes), on the datadir's filesystem) or a query on the source runs longer than
    O(max_query_seconds). Then runs O(stream_command) on this host (its standard output must be the
    C(mariadb-backup --backup --stream=xbstream) of the source, e.g. over ssh), extracts it with
    C(mbstream -x) into a new staging directory inside O(datadir) (same filesystem, so the swap is
    renames), prepares it (C(mariadb-backup --prepare)) and owns it like O(datadir). The binlog
    coordinates and GTID come from the backup's own record. A failure removes the staging directory;
    the replica is not touched.
  - O(step=swap) - the replica's server must be stopped (a process working in O(datadir) refuses the
    step); its entries are set aside inside O(datadir) and the staged copy moved in.
  - O(step=empty_ignored) - on the started replica (login_* options; start it with skip-slave-start),
    TRUNCATE each of O(ignore_tables) that holds rows, with sql_log_bin=0, before replication starts.
  - O(step=finish) - removes the set-aside entries, once the new copy is proven.
    O(step=rollback) - puts them back instead (server stopped).
  - The staging and set-aside directories are named after O(run); nothing else in O(datadir) is
    removed or overwritten.
version_added: "1.0.0"
author: Backup toolkit team
options:
  step:
    description: What to do.
    type: str
    required: true
    choices: [stage, swap, empty_ignored, finish, rollback]
  run:
    description: This seed's id, a UTC timestamp like C(20261203T041500Z); the same for every step.
    type: str
    required: true
  datadir:
    description: The replica's data directory.
    type: path
    default: /var/lib/mysql
  stream_command:
    description:
      - With O(step=stage), the command (argv) whose standard output is the source's xbstream, run on
        this host, for example
        C([ssh, -i, /root/.ssh/seed_ed25519, seed@db1, sudo, mariadb-backup, --backup, --stream=xbstream]).
      - It must not hold a password; mariadb-backup on the source logs in as root over the socket.
    type: list
    elements: str
  max_query_seconds:
    description: A query on the source running this long or longer refuses the seed (O(step=stage)).
    type: int
    default: 60
  reserve_bytes:
    description: Extra bytes that must stay free on the datadir's filesystem after the copy.
    type: int
    default: 0
  ignore_tables:
    description: Tables (db.table) emptied by O(step=empty_ignored).
    type: list
    elements: str
    default: []
  mbstream_binary:
    description: The C(mbstream) program on this host.
    type: str
    default: mbstream
  backup_binary:
    description: The C(mariadb-backup) program on this host (for C(--prepare)).
    type: str
    default: mariadb-backup
  login_user:
    description: User on the replica (O(step=empty_ignored)).
  source_user:
    description: Admin user on the source (O(step=stage); PROCESS and SELECT on information_schema).
extends_documentation_fragment:
  - mysql_connection
  - mysql_connection.source
notes:
  - Requires PyMySQL, C(mbstream) and C(mariadb-backup) on the host running the module.
"""

EXAMPLES = r"""
- name: Stream, extract and prepare the source's backup (refused first when there is no room)
  mysql_physical_seed:
    step: stage
    run: "{{ seed_run }}"
    source_host: db1.example.org
    source_user: repl_admin
    source_password: "{{ admin_password }}"
    stream_command: [ssh, -i, /root/.ssh/seed_ed25519, seed@db1.example.org, sudo, mariadb-backup,
                     --backup, --stream=xbstream]
  register: staged

- name: Swap the copy in (replica's server stopped)
  mysql_physical_seed:
    step: swap
    run: "{{ seed_run }}"
"""

RETURN = r"""
binlog_file:
  description: The source's binlog file at the backup (O(step=stage)).
  returned: step=stage
  type: str
binlog_position:
  description: The position in it.
  returned: step=stage
  type: int
gtid:
  description: The source's GTID position at the backup ('' when it has none).
  returned: step=stage
  type: str
estimated_bytes:
  description: Room required on the datadir's filesystem.
  returned: step=stage
  type: int
bytes:
  description: Size of the prepared copy.
  returned: step=stage, not in check mode
  type: int
seconds:
  description: Time of stream, extract and prepare.
  returned: step=stage, not in check mode
  type: float
aside:
  description: Where the replica's previous entries were set aside (O(step=swap)).
  returned: step=swap
  type: str
emptied:
  description: The ignored tables emptied, with their row counts before.
  returned: step=empty_ignored
  type: list
  elements: dict
"""

from ansible.module_utils import mysql_physical_seed as seed
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lvm_restore import RestoreError
from ansible.module_utils.mysql_connection import connection_argument_spec, connections


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            source=True,
            step=dict(type="str", required=True,
                      choices=["stage", "swap", "empty_ignored", "finish", "rollback"]),
            run=dict(type="str", required=True),
            datadir=dict(type="path", default="/var/lib/mysql"),
            stream_command=dict(type="list", elements="str"),
            max_query_seconds=dict(type="int", default=60),
            reserve_bytes=dict(type="int", default=0),
            ignore_tables=dict(type="list", elements="str", default=[]),
            mbstream_binary=dict(type="str", default="mbstream"),
            backup_binary=dict(type="str", default="mariadb-backup"),
        ),
        supports_check_mode=True,
        required_if=[("step", "stage", ("stream_command",))],
    )
    p = module.params
    errors = (seed.PhysicalSeedError, RestoreError)
    try:
        if p["step"] == "stage":
            with connections(module, "reading the source failed", errors, source="source") as (source,):
                result = seed.stage(
                    p["stream_command"], p["datadir"], p["run"], source,
                    max_query_seconds=p["max_query_seconds"], reserve_bytes=p["reserve_bytes"],
                    mbstream=p["mbstream_binary"], backup_binary=p["backup_binary"],
                    check_mode=module.check_mode)
        elif p["step"] == "empty_ignored":
            bad = [t for t in p["ignore_tables"] if t.count(".") != 1 or "`" in t]
            if bad:
                module.fail_json(msg=f"ignore_tables must be db.table: {bad}; nothing was changed")
            failure = "emptying the ignored tables failed"
            with connections(module, failure, errors, replica="login") as (replica,):
                result = seed.empty_ignored(replica, p["ignore_tables"], check_mode=module.check_mode)
        else:
            step = {"swap": seed.swap, "finish": seed.finish, "rollback": seed.rollback}[p["step"]]
            result = step(p["datadir"], p["run"], check_mode=module.check_mode)
    except errors as exc:
        module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
