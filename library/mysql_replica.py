#!/usr/bin/python
"""Ansible module: declarative replication state of a MySQL/MariaDB replica."""

DOCUMENTATION = r"""
---
module: mysql_replica
short_description: Declarative replica state (source, coordinates, running/stopped/absent)
description:
  - Manages the replication of the server given by the login_* options (the replica), that is its source
    (host, port, user, password, SSL), its start coordinates and whether replication runs.
  - Reads SHOW SLAVE STATUS / SHOW REPLICA STATUS, compares it with the wanted state and issues only
    the statements needed (CHANGE MASTER TO / CHANGE REPLICATION SOURCE TO, START/STOP, RESET ... ALL),
    in the dialect of the server's flavour and version. C(changed) is true only when a statement was
    issued; the diff shows the settings before and after (never the password).
  - B(Coordinates apply only when the replica has no source yet, or when source host, port or user
    changed.) A configured replica of the same source is never re-pointed, even when
    O(source_log_file)/O(source_log_pos) differ from its position, because it has moved past the seed. To
    reseed, run with O(state=absent) first (RESET REPLICA ALL), import the new seed, then apply again.
  - The replication password cannot be read back from the server, so it cannot be compared.
    O(update_password=on_create) sends it only when the source is (re)configured;
    O(update_password=always) sends it on every run (and so always reports changed).
  - With O(wait=true) and O(state=running), waits until both replication threads run and the lag is
    at most O(max_lag_seconds); fails at once with the server's Last_IO_Error / Last_SQL_Error text
    when an error appears (for example a wrong replication password), or after O(wait_timeout).
  - Values go through pymysql escaping (strings) and int() (numbers), never pasted raw into SQL.
  - On MariaDB, when coordinates are applied, C(MASTER_USE_GTID=no) is set so the file/position
    are the ones used; with O(source_use_gtid=true), C(MASTER_USE_GTID=slave_pos) instead.
version_added: "1.0.0"
author: Backup toolkit team
options:
  login_user:
    description: Admin user on the replica (SUPER or REPLICATION SLAVE ADMIN, REPLICATION CLIENT).
  source_host:
    description: Replication source host, as the replica reaches it. Required unless O(state=absent).
    type: str
  source_port:
    description: Replication source port.
    type: int
    default: 3306
  source_user:
    description: Replication user on the source (REPLICATION SLAVE only). Required unless O(state=absent).
    type: str
  source_password:
    description: Password of O(source_user). Required when the source is (re)configured.
    type: str
  source_log_file:
    description: Binlog file to start from (from mysql_consistent_seed). See the idempotence rule above.
    type: str
  source_log_pos:
    description: Position in O(source_log_file).
    type: int
  source_ssl:
    description: Replicate over TLS (MASTER_SSL). Compared only when set.
    type: bool
  source_ssl_ca:
    description: CA file on the replica host for the replication connection.
    type: str
  source_ssl_cert:
    description: Client certificate file on the replica host for the replication connection.
    type: str
  source_ssl_key:
    description: Client key file on the replica host for the replication connection.
    type: str
  source_ssl_verify_server_cert:
    description: Verify the source's certificate host name. Compared only when set.
    type: bool
  source_connect_retry:
    description: Seconds between reconnection attempts. Compared only when set.
    type: int
  source_use_gtid:
    description:
      - Start from the replica's GTID position instead of file/position (MariaDB C(MASTER_USE_GTID=slave_pos),
        MySQL C(SOURCE_AUTO_POSITION=1)). O(source_log_file)/O(source_log_pos) are then not used.
      - Compared only when set; switching it on a configured replica keeps its position.
    type: bool
  source_gtid_pos:
    description:
      - MariaDB GTID list to start from (the seed's C(gtid)), written to C(gtid_slave_pos) with the threads
        stopped, before START. Needs O(source_use_gtid=true). Same rule as coordinates (new source only).
      - Ignored on MySQL, where the seed's dump sets C(GTID_PURGED) itself.
    type: str
  state:
    description: C(running), C(stopped), or C(absent) (stop and RESET REPLICA ALL).
    type: str
    choices: [running, stopped, absent]
    default: running
  verify_source_login:
    description:
      - Before anything is changed (also in check mode), log in to the source from this host as O(source_user)
        with O(source_password) and the O(source_ssl_ca)/O(source_ssl_cert)/O(source_ssl_key) files, and fail,
        leaving the replica as it was, when the source refuses the login (wrong password, account bound to
        another host, REQUIRE SSL/X509 not met).
      - Needs O(source_password). Ignored with O(state=absent).
    type: bool
    default: false
  update_password:
    description: C(on_create) sends the password only when (re)configuring the source; C(always) on every run.
    type: str
    choices: [on_create, always]
    default: on_create
  wait:
    description: With O(state=running), wait for both threads running and lag <= O(max_lag_seconds).
    type: bool
    default: true
  max_lag_seconds:
    description: Lag bound for O(wait).
    type: int
    default: 30
  wait_timeout:
    description: Seconds O(wait) may take before failing.
    type: int
    default: 300
  flavor:
    description: Server flavour; C(auto) detects it from VERSION().
    type: str
    choices: [auto, mariadb, mysql]
    default: auto
extends_documentation_fragment:
  - mysql_connection
notes:
  - Requires PyMySQL on the host running the module. Check mode computes the statements without
    issuing them (and does not wait).
  - Only the default (unnamed) replication connection is managed; MariaDB multi-source connections are not.
seealso:
  - module: mysql_consistent_seed
  - module: mysql_replication_facts
"""

EXAMPLES = r"""
- name: Set the source coordinates and start replication
  mysql_replica:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    source_host: primary.example.org
    source_user: repl
    source_password: "{{ vault_replication_password }}"
    source_log_file: "{{ seed.binlog_file }}"
    source_log_pos: "{{ seed.binlog_position }}"
    state: running
    wait: true
    max_lag_seconds: 30

- name: Forget the source before a reseed
  mysql_replica:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    state: absent
"""

RETURN = r"""
status:
  description: Normalised replica status after the run (Master_*/Source_* columns mapped to one set of names).
  returned: always
  type: dict
  sample:
    configured: true
    io_running: "Yes"
    sql_running: "Yes"
    seconds_behind: 0
    source_host: primary.example.org
    source_port: 3306
    source_user: repl
    source_log_file: mysql-bin.000002
    read_source_log_pos: 368915
    exec_source_log_pos: 368915
    relay_log_file: relay-bin.000002
    relay_log_pos: 555
    last_io_error: ""
    last_sql_error: ""
    using_gtid: "No"
source_login:
  description: With O(verify_source_login), the login test (ok, account = CURRENT_USER(), error).
  returned: when verify_source_login is true
  type: dict
statements:
  description: SQL issued (or that would be issued in check mode), password masked.
  returned: always
  type: list
  elements: str
coordinates_applied:
  description: Whether source_log_file/source_log_pos were used.
  returned: always
  type: bool
coordinates_ignored_reason:
  description: >-
    Why given coordinates or GTID position were not applied (replica already configured for this
    source), else "".
  returned: always
  type: str
gtid_position_applied:
  description: Whether source_gtid_pos was written to gtid_slave_pos.
  returned: always
  type: bool
flavor:
  description: Server flavour (mariadb or mysql).
  returned: always
  type: str
version:
  description: Server version string.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_connection import (
    connection_argument_spec,
    connections,
)
from ansible.module_utils.mysql_replica import ReplicaError, ensure_replica


def main():
    argument_spec = connection_argument_spec(
        source_host=dict(type="str"),
        source_port=dict(type="int", default=3306),
        source_user=dict(type="str"),
        source_password=dict(type="str", no_log=True),
        source_log_file=dict(type="str"),
        source_log_pos=dict(type="int"),
        source_ssl=dict(type="bool"),
        source_ssl_ca=dict(type="str"),
        source_ssl_cert=dict(type="str"),
        source_ssl_key=dict(type="str", no_log=False),
        source_ssl_verify_server_cert=dict(type="bool"),
        source_connect_retry=dict(type="int"),
        source_use_gtid=dict(type="bool"),
        source_gtid_pos=dict(type="str"),
        state=dict(type="str", choices=["running", "stopped", "absent"], default="running"),
        verify_source_login=dict(type="bool", default=False),
        update_password=dict(type="str", choices=["on_create", "always"], default="on_create", no_log=False),
        wait=dict(type="bool", default=True),
        max_lag_seconds=dict(type="int", default=30),
        wait_timeout=dict(type="int", default=300),
        flavor=dict(type="str", choices=["auto", "mariadb", "mysql"], default="auto"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[
            ("state", "running", ("source_host", "source_user")),
            ("state", "stopped", ("source_host", "source_user")),
        ],
        required_together=[("source_log_file", "source_log_pos")],
    )
    with connections(
        module, "reading or changing the replica state failed", (ReplicaError,), replica="login"
    ) as (conn,):
        result = ensure_replica(conn, module.params, check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
