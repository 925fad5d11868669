#!/usr/bin/python
"""Ansible module: consistent dump of a MySQL/MariaDB replication source with its binlog coordinates."""

DOCUMENTATION = r"""
---
module: mysql_consistent_seed
short_description: Consistent dump of a replication source plus its binlog coordinates
description:
  - Dumps O(databases) of the SOURCE server (the login_* options) with C(mysqldump) / C(mariadb-dump)
    in one consistent view and returns the binary log coordinates (file, position and, on MariaDB,
    the GTID position) of that view, read back from the dump header as the stream passes.
  - O(consistency=auto) uses C(--single-transaction) (no lock held during the dump) when every dumped
    table is transactional (InnoDB), else C(--lock-all-tables) (FLUSH TABLES WITH READ LOCK for the
    whole dump). The lock lives in the dump client's session inside this module's process, so it is
    released when the module ends, fails or is killed; it never outlives the task.
  - Before dumping, refuses with a clear error (query id, user, time) when the source runs a query
    older than O(max_query_seconds), because FLUSH TABLES WITH READ LOCK would queue behind it while
    blocking every writer. While the dump waits for a global read lock or a table flush longer than
    O(lock_wait_timeout) seconds, the module kills the dump and fails.
  - O(mode=file) writes O(dest) through a 0600 temporary file in the same directory, renamed into
    place only when the dump completed. O(mode=import) streams the dump straight into the target
    server (target_* options) with the C(mysql) client, with no intermediate file; the normal use is
    the module running on the backup host, dumping over the network from the source into its own
    local server.
  - A failing dump (non-zero exit, killed, server gone) fails the module and removes the temporary
    file; in import mode the failure says the target holds partial data (return value
    C(target_partial)), and no replica must be pointed at it.
  - Credentials reach the clients through a 0600 option file passed as C(--defaults-file) (first
    argument), never argv. It is the only option file they read, so a C(~/.my.cnf) or
    C(/etc/mysql/my.cnf) on the backup host never redirects the dump or the import.
  - Check mode connects, validates the options and the source, and reports what would be dumped
    (consistency, non-transactional tables) without dumping.
version_added: "1.0.0"
author: Backup toolkit team
options:
  login_user:
    description:
      - Admin user on the source.
      - Needs SELECT, RELOAD, LOCK TABLES, REPLICATION CLIENT, SHOW VIEW, TRIGGER, PROCESS.
  databases:
    description: Databases to dump (C(--databases)); each must exist on the source.
    type: list
    elements: str
    required: true
  ignore_tables:
    description:
      - Tables left out of the dump, each exactly C(db.table). The same list must feed the replica's
        C(replicate-ignore-table) lines. A malformed entry fails before anything is dumped.
    type: list
    elements: str
    default: []
  mode:
    description: C(file) writes O(dest); C(import) streams into the target server.
    type: str
    choices: [file, import]
    default: file
  dest:
    description: Final dump path for O(mode=file). Its directory must exist. Written 0600.
    type: path
  compress:
    description: Compression of the dump file in O(mode=file).
    type: str
    choices: [gzip, zstd, none]
    default: gzip
  target_host:
    description: Target server host for O(mode=import).
    type: str
    default: localhost
  target_port:
    description: Target server port for O(mode=import).
    type: int
    default: 3306
  target_user:
    description: Admin user on the target server for O(mode=import).
    type: str
  target_password:
    description: Password of O(target_user).
    type: str
  target_unix_socket:
    description: Unix socket of the target server (the usual choice when it is local).
    type: str
  consistency:
    description:
      - C(auto) uses C(single_transaction) when every dumped table is transactional, else C(lock).
      - C(single_transaction) forces C(--single-transaction) (only consistent for InnoDB tables).
      - C(lock) forces C(--lock-all-tables), so writers are blocked for the whole dump.
    type: str
    choices: [auto, single_transaction, lock]
    default: auto
  lock_wait_timeout:
    description: Seconds the dump may wait for the global read lock / table flush before it is killed.
    type: int
    default: 60
  max_query_seconds:
    description: Refuse to start when the source runs a query older than this many seconds.
    type: int
    default: 300
  extra_dump_args:
    description: Extra arguments appended to the dump command (no credentials here).
    type: list
    elements: str
    default: []
  dump_binary:
    description: Dump client to run; default the first of C(mariadb-dump), C(mysqldump) found.
    type: str
  client_binary:
    description: Import client to run; default the first of C(mariadb), C(mysql) found.
    type: str
  progress_file:
    description:
      - Write the dump's progress to this file (JSON, rewritten at most once a second) for
        C(roles/backup_progress) to poll while the module runs with C(async) and C(poll=0).
      - Done is the bytes of the dump stream; the total is an B(estimate), the C(data_length +
        index_length) of the dumped tables (ignored ones excluded) in C(information_schema), so the
        dump can end above or below 100%.
      - Holds no credentials (step name, byte counts, times, the error message on failure). Put it
        in a private directory (for example one made by M(ansible.builtin.tempfile)) and remove it
        afterwards; its directory must exist. Not written in check mode.
    type: path
  replication_user:
    description:
      - Before anything is dumped (also in check mode), log in to the source (O(login_host):O(login_port),
        the address the replica will use) from this host as this user with O(replication_password) and the
        O(replication_ssl_ca)/O(replication_ssl_cert)/O(replication_ssl_key) files; fail when the source
        refuses it, so a wrong replication password shows before the dump, not after it and the import.
      - Not tested when unset.
    type: str
  replication_password:
    description: Password of O(replication_user).
    type: str
  replication_ssl_ca:
    description: CA file for the O(replication_user) login test (TLS replication).
    type: path
  replication_ssl_cert:
    description: Client certificate file for the O(replication_user) login test (REQUIRE X509).
    type: path
  replication_ssl_key:
    description: Client key file for the O(replication_user) login test.
    type: path
  snapshot_file:
    description:
      - A new file (0600, JSON C({snapshot_taken, time, seconds})) written as soon as the dump's consistent
        snapshot is taken - with C(single_transaction) when the coordinates are read (the view is fixed),
        with C(lock) when the dump client has read everything and released its locks - so an application
        stopped for the seed can start again while the rest of the import runs.
      - Written with C(snapshot_taken=false) when the seed ends without a snapshot (failure, cancel), so
        a waiter never waits for a seed that is gone. Must not exist before; its directory must. Not
        written in check mode. The caller removes it.
    type: path
extends_documentation_fragment:
  - mysql_connection
notes:
  - Requires PyMySQL and the mysqldump/mysql command-line clients on the host running the module.
  - The module always reports C(changed=true) when it dumps (check mode included), since it is an action.
seealso:
  - module: mysql_replica
  - module: mysql_replication_facts
"""

EXAMPLES = r"""
- name: Dump the Seafile databases from the primary straight into the backup server
  mysql_consistent_seed:
    login_host: primary.example.org
    login_user: backup_admin
    login_password: "{{ vault_primary_admin_password }}"
    databases: [ccnet_db, seafile_db, seahub_db]
    ignore_tables: "{{ seafile_replication_ignore_tables }}"
    mode: import
    target_unix_socket: /run/mysqld/mysqld.sock
    target_user: root
  register: seed
  no_log: false

- name: The same as an async job, followed with progress lines (bytes done, estimate, rate, time left)
  mysql_consistent_seed:
    login_host: primary.example.org
    login_user: backup_admin
    login_password: "{{ vault_primary_admin_password }}"
    databases: [ccnet_db, seafile_db, seahub_db]
    mode: import
    target_unix_socket: /run/mysqld/mysqld.sock
    target_user: root
    progress_file: "{{ progress_dir.path }}/seed.progress"
  async: 21600
  poll: 0
  register: seed_job

- name: Write a compressed seed file instead
  mysql_consistent_seed:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    databases: [ccnet_db, seafile_db, seahub_db]
    mode: file
    dest: /var/backups/mysql/seed.sql.zst
    compress: zstd
"""

RETURN = r"""
binlog_file:
  description: Binary log file of the consistent view (replication starts there).
  returned: success
  type: str
  sample: mysql-bin.000002
binlog_position:
  description: Position in O(binlog_file).
  returned: success
  type: int
  sample: 368915
gtid:
  description: GTID position of the view (MariaDB gtid_slave_pos value, MySQL GTID_PURGED), or "".
  returned: success
  type: str
  sample: 0-1-42
consistency:
  description: Consistency used (single_transaction or lock).
  returned: always
  type: str
non_transactional_tables:
  description: Dumped tables whose engine is not transactional (db.table).
  returned: always
  type: list
  elements: str
databases:
  description: Databases dumped.
  returned: always
  type: list
  elements: str
ignored_tables:
  description: Tables left out (db.table).
  returned: always
  type: list
  elements: str
dump_path:
  description: Final dump file (mode=file), else "".
  returned: always
  type: str
bytes:
  description: Uncompressed bytes of the dump stream.
  returned: success
  type: int
duration_seconds:
  description: Wall time of the dump.
  returned: success
  type: float
throughput_mb_s:
  description: Uncompressed MB (10^6 bytes) per second.
  returned: success
  type: float
target_partial:
  description: True when an import failed half way (the target holds partial data; do not replicate into it).
  returned: failure
  type: bool
estimated_bytes:
  description:
    - Estimated size of the dump (data_length + index_length of the dumped tables in
      information_schema), the progress total; only an estimate.
  returned: success
  type: int
snapshot_seconds:
  description: Seconds from the start of the dump until its consistent snapshot was taken (O(snapshot_file)).
  returned: success
  type: float
replication_login:
  description: With O(replication_user), the login test (ok, account = CURRENT_USER() on the source, error).
  returned: success
  type: dict
command:
  description: Dump command line (credentials are in the option file, not here).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.mysql_connection import (
    HAS_PYMYSQL,
    PYMYSQL_IMPORT_ERROR,
    connection_argument_spec,
)
from ansible.module_utils.mysql_seed import SeedError, run_seed


def main():
    argument_spec = connection_argument_spec(
        databases=dict(type="list", elements="str", required=True),
        ignore_tables=dict(type="list", elements="str", default=[]),
        mode=dict(type="str", choices=["file", "import"], default="file"),
        dest=dict(type="path"),
        compress=dict(type="str", choices=["gzip", "zstd", "none"], default="gzip"),
        target_host=dict(type="str", default="localhost"),
        target_port=dict(type="int", default=3306),
        target_user=dict(type="str"),
        target_password=dict(type="str", no_log=True),
        target_unix_socket=dict(type="str"),
        consistency=dict(type="str", choices=["auto", "single_transaction", "lock"], default="auto"),
        lock_wait_timeout=dict(type="int", default=60),
        max_query_seconds=dict(type="int", default=300),
        extra_dump_args=dict(type="list", elements="str", default=[]),
        dump_binary=dict(type="str"),
        client_binary=dict(type="str"),
        progress_file=dict(type="path"),
        replication_user=dict(type="str"),
        replication_password=dict(type="str", no_log=True),
        replication_ssl_ca=dict(type="path"),
        replication_ssl_cert=dict(type="path"),
        replication_ssl_key=dict(type="path", no_log=False),
        snapshot_file=dict(type="path"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("mode", "file", ("dest",))],
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("pymysql"), exception=str(PYMYSQL_IMPORT_ERROR))
    try:
        result = run_seed(module.params, check_mode=module.check_mode)
    except SeedError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
