#!/usr/bin/python
"""Ansible module: compare table checksums between a replication source and its replica."""

DOCUMENTATION = r"""
---
module: mysql_table_checksum
short_description: Compare every replicated table between source and replica, table by table
description:
  - Lists the base tables of O(databases) on the source (O(ignore_tables) excluded), reads the
    source's binlog position, waits (MASTER_POS_WAIT / SOURCE_POS_WAIT, bounded by O(wait_timeout))
    until the replica has applied it, then runs CHECKSUM TABLE on both sides and compares.
  - A mismatching table is retried up to O(retries) times (fresh source position and wait each
    time), because writes may be in flight between the two reads.
  - A table missing on the replica is reported in C(missing_on_replica).
  - With O(fail_on_mismatch=true) any mismatch or missing table fails the task (results are returned).
  - Read-only (C(changed=false)); runs in check mode too. login_* reach the replica, source_* the source.
  - CHECKSUM TABLE values are comparable between servers of the same flavour and version (both
    MariaDB 10.11 in the lab); across versions use O(method=row_hash).
version_added: "1.0.0"
author: Backup toolkit team
options:
  login_user:
    description: User on the replica (SELECT on the databases).
  source_user:
    description: User on the source (SELECT, REPLICATION CLIENT / BINLOG MONITOR).
  databases:
    description: Databases to compare.
    type: list
    elements: str
    required: true
  ignore_tables:
    description: Tables (db.table) not replicated, left out of the comparison.
    type: list
    elements: str
    default: []
  method:
    description:
      - C(checksum_table) runs CHECKSUM TABLE (fast; comparable only between the same flavour and version).
      - C(row_hash) computes COUNT(*) and a BIT_XOR of MD5 over every row's values in SQL on both sides
        (portable between MariaDB and MySQL versions; same full scan).
    type: str
    choices: [checksum_table, row_hash]
    default: checksum_table
  wait_timeout:
    description: Seconds to wait for the replica to reach the source position (each wait).
    type: int
    default: 120
  retries:
    description: Extra attempts for a mismatching table.
    type: int
    default: 3
  fail_on_mismatch:
    description: Fail when a table differs or is missing on the replica.
    type: bool
    default: true
extends_documentation_fragment:
  - mysql_connection
  - mysql_connection.source
notes:
  - Requires PyMySQL on the host running the module.
seealso:
  - module: mysql_replication_facts
"""

EXAMPLES = r"""
- name: Compare the replicated tables
  mysql_table_checksum:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    source_host: primary.example.org
    source_user: backup_admin
    source_password: "{{ vault_primary_admin_password }}"
    databases: [ccnet_db, seafile_db, seahub_db]
    ignore_tables: "{{ seafile_replication_ignore_tables }}"
  register: compared
"""

RETURN = r"""
tables:
  description: One entry per compared table.
  returned: always
  type: list
  elements: dict
  sample: [{table: seafile_db.RepoOwner, source: 1234567, replica: 1234567, match: true, attempts: 1}]
compared:
  description: Number of tables compared.
  returned: always
  type: int
mismatched:
  description: Tables (db.table) whose checksums differ after the retries.
  returned: always
  type: list
  elements: str
missing_on_replica:
  description: Tables (db.table) that do not exist on the replica.
  returned: always
  type: list
  elements: str
method:
  description: Comparison method used.
  returned: always
  type: str
source_position:
  description: Source binlog position the replica was waited for at the start ({file, position}).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_checksum import ChecksumError, compare_tables
from ansible.module_utils.mysql_connection import (
    connection_argument_spec,
    connections,
)


def main():
    argument_spec = connection_argument_spec(
        source=True,
        databases=dict(type="list", elements="str", required=True),
        ignore_tables=dict(type="list", elements="str", default=[]),
        wait_timeout=dict(type="int", default=120),
        retries=dict(type="int", default=3),
        method=dict(type="str", choices=["checksum_table", "row_hash"], default="checksum_table"),
        fail_on_mismatch=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("source_host", "source_unix_socket")],
    )
    with connections(
        module, "comparing tables failed", (ChecksumError,), replica="login", source="source"
    ) as (replica, source):
        result = compare_tables(replica, source, module.params)
    bad = result["mismatched"] + result["missing_on_replica"]
    if module.params["fail_on_mismatch"] and bad:
        module.fail_json(
            msg="tables differ between source and replica: " + ", ".join(bad), changed=False, **result
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
