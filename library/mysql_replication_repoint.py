#!/usr/bin/python
"""Ansible module: move a replica to another source by GTID, after proving the new source holds its data."""

DOCUMENTATION = r"""
---
module: mysql_replication_repoint
short_description: Re-point a replica to another source by GTID, without a re-seed
description:
  - Moves the replica (the server given by the login_* options) to a new source (a Galera node, or a
    server that replicates the old source with C(log_slave_updates)) by GTID, keeping the replica's
    data and position. No dump, no re-seed.
  - B(First it checks that the new source holds every transaction the replica has applied), and
    refuses with a message naming the domain and GTIDs missing when it does not (then the replica must
    be re-seeded from the new source). On MariaDB, for every domain of the replica's C(gtid_slave_pos)
    the new source's C(gtid_binlog_state) must hold the same server's transactions up to at least the
    same seqno, and its oldest binlog must not start after that position (purged). On MySQL the
    replica's C(gtid_executed) must be a subset of the new source's (C(GTID_SUBSET)), and the new
    source must not have purged what the replica lacks.
  - The check runs twice, before anything changes and again with the replica's threads stopped (its
    position then settled). A refusal after the stop starts the replica again, still on its old source.
  - Then STOP, CHANGE MASTER TO the new source with C(MASTER_USE_GTID=slave_pos) (MySQL
    C(SOURCE_AUTO_POSITION=1)), START, and waits until both threads run with a lag of at most
    O(max_lag_seconds). Statements are those of M(mysql_replica), in the server's dialect.
  - C(changed) is true only when the source changed. A replica already replicating from the new
    source by GTID is left as it is (C(already_pointing)). Check mode runs the check and shows the
    statements without issuing them.
version_added: "1.0.0"
author: Backup toolkit team
options:
  login_user:
    description: Admin user on the replica (SUPER or REPLICATION SLAVE ADMIN, REPLICATION CLIENT).
  source_host:
    description:
      - The new source, as this host reaches it for the admin connection that reads its GTID state.
      - Also the host the replica connects to, unless O(replication_host) is set.
  source_user:
    description: Admin user on the new source (reads C(gtid_binlog_state), SHOW BINARY LOGS; BINLOG MONITOR).
  source_ssl_ca:
    description: CA file (on this host) for a verified TLS admin connection to the new source.
    type: path
  replication_host:
    description: The new source's host as the replica connects to it (C(MASTER_HOST)); default O(source_host).
    type: str
  replication_port:
    description: The new source's port for replication; default O(source_port).
    type: int
  replication_user:
    description: Replication user on the new source (REPLICATION SLAVE).
    type: str
    required: true
  replication_password:
    description: Password of O(replication_user).
    type: str
    required: true
  replication_ssl:
    description: Replicate over TLS (MASTER_SSL).
    type: bool
  replication_ssl_ca:
    description: CA file on the replica host for the replication connection.
    type: str
  replication_ssl_cert:
    description: Client certificate file on the replica host for the replication connection.
    type: str
  replication_ssl_key:
    description: Client key file on the replica host for the replication connection.
    type: str
  replication_ssl_verify_server_cert:
    description: Verify the new source's certificate host name.
    type: bool
  max_lag_seconds:
    description: After the re-point, wait until both threads run and the lag is at most this.
    type: int
    default: 30
  wait_timeout:
    description: Seconds the wait may take before failing.
    type: int
    default: 300
  flavor:
    description: Server flavour; C(auto) detects it from VERSION().
    type: str
    choices: [auto, mariadb, mysql]
    default: auto
extends_documentation_fragment:
  - mysql_connection
  - mysql_connection.source
notes:
  - Requires PyMySQL on the host running the module.
  - Only the default (unnamed) replication connection is managed.
  - The new source needs the replication user (on Galera it is replicated to every node) and, when it
    is itself a replica, C(log_slave_updates) (and on Galera C(wsrep_gtid_mode) with a common
    C(wsrep_gtid_domain_id)), otherwise its binlog lacks the transactions and the re-point is refused.
seealso:
  - module: mysql_replica
  - module: mysql_table_checksum
"""

EXAMPLES = r"""
- name: Move the backup server to another Galera node by GTID (refused if the node lacks transactions)
  mysql_replication_repoint:
    login_unix_socket: /run/mysqld/mysqld.sock
    source_host: galera2.example.org
    source_user: backup_admin
    source_password: "{{ vault_primary_admin_password }}"
    replication_user: repl
    replication_password: "{{ vault_replication_password }}"
    max_lag_seconds: 60
  register: repointed
"""

RETURN = r"""
previous_source:
  description: host:port the replica replicated from before the run.
  returned: always
  type: str
  sample: 10.0.0.11:3306
source:
  description: host:port the replica replicates from after the run (the new source).
  returned: always
  type: str
  sample: 10.0.0.12:3306
already_pointing:
  description: The replica already replicated from the new source by GTID (nothing to re-point).
  returned: always
  type: bool
check:
  description:
    - The decision (C(ok), C(reasons), C(missing), C(purged); MariaDB also C(behind), the transactions per
      domain the replica will fetch, and C(local), GTIDs of the replica's own local writes) with the
      positions read on both servers. Empty when O(already_pointing).
  returned: always
  type: dict
statements:
  description: SQL issued (or that would be issued in check mode), password masked.
  returned: always
  type: list
  elements: str
status:
  description: Normalised replica status after the run (as M(mysql_replica) returns it).
  returned: success
  type: dict
flavor:
  description: Server flavour (mariadb or mysql).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_connection import (
    connection_argument_spec,
    connections,
)
from ansible.module_utils.mysql_repoint import RepointError, replica_settings, repoint


def main():
    argument_spec = connection_argument_spec(
        source=True,
        source_ssl_ca=dict(type="path"),
        replication_host=dict(type="str"),
        replication_port=dict(type="int"),
        replication_user=dict(type="str", required=True),
        replication_password=dict(type="str", required=True, no_log=True),
        replication_ssl=dict(type="bool"),
        replication_ssl_ca=dict(type="str"),
        replication_ssl_cert=dict(type="str"),
        replication_ssl_key=dict(type="str", no_log=False),
        replication_ssl_verify_server_cert=dict(type="bool"),
        max_lag_seconds=dict(type="int", default=30),
        wait_timeout=dict(type="int", default=300),
        flavor=dict(type="str", choices=["auto", "mariadb", "mysql"], default="auto"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("source_host", "source_unix_socket")],
    )
    with connections(
        module, "re-pointing the replica failed", (RepointError,), replica="login", source="source"
    ) as (replica, source):
        result = repoint(replica, source, replica_settings(module.params), check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
