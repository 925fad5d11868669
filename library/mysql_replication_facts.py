#!/usr/bin/python
"""Ansible module: preflight and health facts of a MySQL/MariaDB source/replica pair."""

DOCUMENTATION = r"""
---
module: mysql_replication_facts
short_description: Preflight and health checks of a replication source and its replica
description:
  - Runs on the backup host. The login_* options reach the replica (usually its local socket), the
    source_* options an admin login on the source.
  - Gathers facts on both servers and checks, each as C({name, ok, message}) in C(checks).
  - Checks are C(log_bin) (binary log on at the source), C(server_id) (set on both and different),
    C(binlog_retention) (>= O(min_binlog_retention_days); 0 = never purged counts as ok),
    C(galera_log_slave_updates) (a Galera source needs log_slave_updates),
    C(replicate_ignore_table) (the replica's list equals O(ignore_tables); skipped when
    O(ignore_tables) is not given),
    C(replication_user) (O(replication_user) has REPLICATION SLAVE and nothing more, is bound to
    O(replication_host) and has no C(%) account; skipped when O(replication_user) is not given),
    C(binlog_available) (the binlog file the replica needs next is still on the source),
    C(replication_login) (with O(replication_password), O(replication_user) logs in to the source at
    O(source_host):O(source_port) from this host with that password and the O(replication_ssl_ca),
    O(replication_ssl_cert), O(replication_ssl_key) files; a running IO thread keeps an old connection,
    so this is what finds a wrong stored password on a pair that still replicates).
  - C(replication_tls) with O(tls_required=true) - the replica uses MASTER_SSL with server
    certificate verification, the source has TLS, and (when the source's performance_schema is on
    and readable) the source sees the replica's Binlog Dump connection encrypted; fails when
    replication runs in plaintext. The cipher is reported in C(tls).
  - C(tls_certificate_expiry) - the source's server certificate (its C(Ssl_server_not_after) status,
    read over a TLS admin connection, see O(source_ssl_ca)) and the local files in
    O(tls_certificates) have not expired; those expiring within O(tls_expiry_warning_days) are
    listed in C(tls.expiring) and as a warning.
  - In O(mode=health) also C(replication_running) (both threads running, no error) and
    C(replication_lag) (Seconds_Behind <= O(max_lag_seconds)).
  - C(reseed_required) is true when the replica was never seeded (no source configured) or the
    binlog file it needs is gone from the source (error 1236 or not in SHOW BINARY LOGS).
  - With O(row_counts_state), the shrink guard of the replica (check C(row_counts)) - the rows of every
    table of O(databases) except O(row_counts_ignore_tables) are counted on the replica and compared with
    the last good counts kept in that JSON file on this host. A table whose last good count is at least
    O(shrink_min_rows) and whose count fell by more than O(shrink_threshold) makes the replica
    C(suspect) - the check fails naming the tables and both counts, and the file keeps the last good
    counts. Good counts replace them (file mode 0600, written atomically; not in check mode).
  - With O(fail_on_problems=true) the module fails, listing every problem, when a check fails; the
    facts are returned in both cases. Changes nothing on the servers; C(changed) is true only when
    the row count file is (or, in check mode, would be) written.
version_added: "1.0.0"
author: Backup toolkit team
options:
  login_user:
    description: User on the replica (REPLICATION CLIENT / SLAVE MONITOR and SELECT on information_schema).
  source_user:
    description: Admin user on the source (REPLICATION CLIENT, SELECT on mysql.user for the grant check).
  mode:
    description: C(preflight) (before/while seeding) or C(health) (replication must run).
    type: str
    choices: [preflight, health]
    default: preflight
  databases:
    description: Databases replicated (for the non-transactional table list).
    type: list
    elements: str
    default: []
  ignore_tables:
    description: The wanted replicate-ignore-table list (db.table), compared with the replica's setting.
    type: list
    elements: str
  replication_user:
    description: Replication user to check on the source.
    type: str
  replication_password:
    description: Password of O(replication_user) to test (check C(replication_login)); not tested when unset.
    type: str
  replica_stored_password:
    description:
      - Check C(replica_stored_password) - the host, user and password the replica itself holds (MariaDB
        C(master.info) in its datadir) log in to the source from this host, so a wrong password the replica
        holds shows while its IO thread still runs on an old connection. Needs read access to the datadir
        (root); an unreadable file fails the check. MariaDB default connection only.
    type: bool
    default: false
  replication_ssl_ca:
    description: CA file for the C(replication_login) test (the replica's, with TLS replication).
    type: path
  replication_ssl_cert:
    description: Client certificate file for the C(replication_login) test (REQUIRE X509).
    type: path
  replication_ssl_key:
    description: Client key file for the C(replication_login) test.
    type: path
  replication_host:
    description: Host part the replication user must be bound to (the backup server's address).
    type: str
  min_binlog_retention_days:
    description: Minimum binlog retention on the source, in days.
    type: float
    default: 7
  max_lag_seconds:
    description: Maximum acceptable lag in O(mode=health).
    type: int
    default: 30
  source_ssl_ca:
    description:
      - CA file (on this host) to verify the source's certificate with; the admin connection to the
        source then uses TLS (only that one, not the replica's). Needed to read the source's server
        certificate expiry (C(Ssl_server_not_after) is only shown to a TLS session).
    type: path
  tls_required:
    description: Replication must run over TLS with certificate verification (check C(replication_tls)).
    type: bool
    default: false
  tls_certificates:
    description: Certificate files on this host (the CA, the replica's client certificate) to check.
    type: list
    elements: path
    default: []
  tls_expiry_warning_days:
    description: Certificates expiring within this many days are reported in C(tls.expiring) and warned about.
    type: int
    default: 30
  skip_checks:
    description: Checks to leave out, for example C(replicate_ignore_table) before the replica is configured.
    type: list
    elements: str
    default: []
  row_counts_state:
    description:
      - Absolute path of the JSON file on this host holding the replica's last good row counts; the
        row count shrink guard runs only when it is set (needs O(databases)). Its directory is made
        (0700) when missing.
    type: path
  row_counts_ignore_tables:
    description: Tables (db.table) not counted; defaults to O(ignore_tables).
    type: list
    elements: str
  shrink_threshold:
    description:
      - A table whose row count fell below the last good count by more than this fraction makes the
        replica suspect (0.4 - a 50 % drop is caught).
    type: float
    default: 0.4
  shrink_min_rows:
    description: Tables whose last good count is under this many rows are not compared (tiny tables flap).
    type: int
    default: 1000
  accept_shrink:
    description: Accept a drop for this run - the counts are recorded as good and the check passes.
    type: bool
    default: false
  row_counts_exact_max_rows:
    description:
      - Tables whose information_schema estimate (TABLE_ROWS) is at most this are counted exactly with
        C(COUNT(*)); bigger ones use the estimate (listed in C(row_counts.estimated)).
    type: int
    default: 10000000
  fail_on_problems:
    description: Fail the task when a check fails.
    type: bool
    default: true
extends_documentation_fragment:
  - mysql_connection
  - mysql_connection.source
notes:
  - Requires PyMySQL on the host running the module. Read-only on the servers; in check mode the row
    count file is not written.
seealso:
  - module: mysql_replica
  - module: mysql_table_checksum
"""

EXAMPLES = r"""
- name: Preflight the source and the backup server
  mysql_replication_facts:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    source_host: primary.example.org
    source_user: backup_admin
    source_password: "{{ vault_primary_admin_password }}"
    mode: preflight
    databases: [ccnet_db, seafile_db, seahub_db]
    ignore_tables: "{{ seafile_replication_ignore_tables }}"
    replication_user: repl
    replication_host: 10.0.0.12
    skip_checks: [replicate_ignore_table]
  register: preflight

- name: Report replication health
  mysql_replication_facts:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    source_host: primary.example.org
    source_user: backup_admin
    source_password: "{{ vault_primary_admin_password }}"
    mode: health
    fail_on_problems: false
    databases: [ccnet_db, seafile_db, seahub_db]
    row_counts_ignore_tables: [seafile_db.Repo, seafile_db.Branch, seafile_db.RepoHead]
    row_counts_state: /var/lib/seafile-backup/replica-row-counts.json
    shrink_threshold: 0.4
    shrink_min_rows: 1000
  register: health
"""

RETURN = r"""
source:
  description: Source facts.
  returned: always
  type: dict
  sample: {flavor: mariadb, version: 10.11.6-MariaDB, log_bin: true, server_id: 1, binlog_format: ROW,
           binlog_retention_seconds: 0, galera: false, log_slave_updates: false,
           binary_logs: [{name: mysql-bin.000001, size: 1234}]}
replica:
  description: Replica facts (status as returned by mysql_replica).
  returned: always
  type: dict
  sample: {flavor: mariadb, version: 10.11.6-MariaDB, server_id: 2,
           replicate_ignore_table: [seafile.Repo], status: {}}
checks:
  description: Every check run, as {name, ok, message}.
  returned: always
  type: list
  elements: dict
problems:
  description: Messages of the failed checks.
  returned: always
  type: list
  elements: str
reseed_required:
  description: The replica was never seeded, or the binlog it needs is gone from the source.
  returned: always
  type: bool
replication_user_grants:
  description:
    - SHOW GRANTS of every account of O(replication_user), keyed by 'user'@'host'.
    - Every credential literal after C(IDENTIFIED) is masked as C('********') (C(BY PASSWORD), C(BY),
      C(AS), the C(USING) of every method of a multi-method MariaDB account).
  returned: when replication_user is given
  type: dict
non_transactional_tables:
  description: Tables of O(databases) (ignored tables excluded) whose engine is not transactional.
  returned: always
  type: list
  elements: str
tls:
  description:
    - The replication link's encryption and the certificates' expiry.
    - C(seen_by) is C(performance_schema) when the cipher was read from the source's Binlog Dump thread of
      the replication user, else C(replica_settings) (only the replica's MASTER_SSL setting is known).
  returned: always
  type: dict
  sample: {encrypted: true, cipher: TLS_AES_256_GCM_SHA384, version: TLSv1.3, seen_by: performance_schema,
           required: true, expired: [], expiring: [],
           certificates: [{name: source server certificate, path: "", not_after: "2029-03-06T17:26:51Z",
                           days_left: 824, expired: false, expiring: false}]}
healthy:
  description: No check failed.
  returned: always
  type: bool
io_running:
  description: Replica IO thread state (Yes/No/Connecting).
  returned: mode=health
  type: str
sql_running:
  description: Replica SQL thread state.
  returned: mode=health
  type: str
seconds_behind:
  description: Replica lag in seconds (null when not running).
  returned: mode=health
  type: int
last_io_error:
  description: Last IO thread error text.
  returned: mode=health
  type: str
last_sql_error:
  description: Last SQL thread error text.
  returned: mode=health
  type: str
suspect:
  description: The row count shrink guard found a table that shrank (C(row_counts.result=suspect)).
  returned: always
  type: bool
row_counts:
  description:
    - The shrink guard's report - C(result) good or suspect, C(counts) {db.table - rows} now,
      C(estimated) (tables counted by estimate), C(previous_at) (when the last good counts were
      recorded), C(compared) (tables compared), C(shrink) (each drop as {table, previous, current, drop}),
      C(shrink_accepted), C(message), C(state_file).
  returned: when row_counts_state is set
  type: dict
  sample: {result: suspect, counts: {seafile_db.RepoUserToken: 120}, estimated: [],
           previous_at: "2026-12-02T23:00:00Z", compared: 1,
           shrink: [{table: seafile_db.RepoUserToken, figure: seafile_db.RepoUserToken, previous: 5000,
                     current: 120, drop: 0.976}],
           shrink_accepted: false, state_file: /var/lib/seafile-backup/replica-row-counts.json,
           message: "the replica is suspect: ..."}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_connection import (
    connection_argument_spec,
    connections,
)
from ansible.module_utils.mysql_health import HealthError, gather_facts
from ansible.module_utils.mysql_row_counts import RowCountError, add_row_counts, row_count_guard


def main():
    argument_spec = connection_argument_spec(
        source=True,
        mode=dict(type="str", choices=["preflight", "health"], default="preflight"),
        databases=dict(type="list", elements="str", default=[]),
        ignore_tables=dict(type="list", elements="str"),
        replication_user=dict(type="str"),
        replication_host=dict(type="str"),
        replication_password=dict(type="str", no_log=True),
        replica_stored_password=dict(type="bool", default=False),
        replication_ssl_ca=dict(type="path"),
        replication_ssl_cert=dict(type="path"),
        replication_ssl_key=dict(type="path", no_log=False),
        min_binlog_retention_days=dict(type="float", default=7),
        max_lag_seconds=dict(type="int", default=30),
        skip_checks=dict(type="list", elements="str", default=[]),
        source_ssl_ca=dict(type="path"),
        tls_required=dict(type="bool", default=False),
        tls_certificates=dict(type="list", elements="path", default=[]),
        tls_expiry_warning_days=dict(type="int", default=30),
        row_counts_state=dict(type="path"),
        row_counts_ignore_tables=dict(type="list", elements="str"),
        shrink_threshold=dict(type="float", default=0.4),
        shrink_min_rows=dict(type="int", default=1000),
        accept_shrink=dict(type="bool", default=False),
        row_counts_exact_max_rows=dict(type="int", default=10000000),
        fail_on_problems=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("source_host", "source_unix_socket")],
    )
    params = module.params
    with connections(
        module, "reading replication facts failed", (HealthError, RowCountError),
        replica="login", source="source",
    ) as (replica, source):
        facts = gather_facts(replica, source, params)
        report = None
        if params["row_counts_state"]:
            ignored = params["row_counts_ignore_tables"]
            report = row_count_guard(
                replica, params["databases"], params["ignore_tables"] if ignored is None else ignored,
                params["row_counts_state"], params["shrink_threshold"], params["shrink_min_rows"],
                params["accept_shrink"], params["row_counts_exact_max_rows"], module.check_mode,
            )
        changed = add_row_counts(facts, report)
    if facts["tls"]["expiring"]:
        module.warn(
            f"certificates expire within {module.params['tls_expiry_warning_days']} days: "
            + ", ".join(facts["tls"]["expiring"])
        )
    if module.params["fail_on_problems"] and facts["problems"]:
        module.fail_json(
            msg="replication checks failed: " + "; ".join(facts["problems"]), changed=changed, **facts
        )
    module.exit_json(changed=changed, **facts)


if __name__ == "__main__":
    main()
