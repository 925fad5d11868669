#!/usr/bin/python
"""Ansible module: the Galera state of one MariaDB node, checked before the cluster is changed."""

DOCUMENTATION = r"""
---
module: mysql_galera_facts
short_description: Galera state of one node, and whether the cluster may be changed now
description:
  - Reads the node's Galera status and settings (C(SHOW GLOBAL STATUS), C(SHOW GLOBAL VARIABLES)) over
    the login_* connection, usually the node's own socket.
  - The node passes when wsrep is on, it is in the Primary component (C(wsrep_cluster_status=Primary)),
    it is synced (C(wsrep_local_state_comment=Synced)), it accepts queries (C(wsrep_ready=ON)) and, with
    O(expected_size), the cluster has that many nodes. Each failed condition is a line of C(problems).
  - With O(wait_timeout), polls (every 2 s, a new connection each time) until the node passes or the
    time is up; a node that cannot be reached counts as a problem then, so this waits for a node that
    restarts, rejoins and catches up.
  - With O(fail_on_problems=true) (the default) the task fails listing the problems; the facts are
    returned in both cases. Changes nothing (C(changed=false)); runs in check mode.
version_added: "1.0.0"
author: Backup toolkit team
options:
  login_user:
    description: User on the node (no privilege is needed to read status and variables).
  expected_size:
    description: Number of nodes the cluster must have (C(wsrep_cluster_size)); 0 does not check it.
    type: int
    default: 0
  wait_timeout:
    description: Seconds to wait for the node to pass; 0 reads once.
    type: int
    default: 0
  fail_on_problems:
    description: Fail when a problem remains.
    type: bool
    default: true
extends_documentation_fragment:
  - mysql_connection
notes:
  - Requires PyMySQL on the host running the module.
"""

EXAMPLES = r"""
- name: Every node in the Primary component, synced, three nodes
  mysql_galera_facts:
    login_unix_socket: /run/mysqld/mysqld.sock
    expected_size: 3

- name: Wait for the restarted node to be back and synced
  mysql_galera_facts:
    login_unix_socket: /run/mysqld/mysqld.sock
    expected_size: 3
    wait_timeout: 600
"""

RETURN = r"""
galera:
  description: The node's state (empty when it could not be reached).
  returned: always
  type: dict
  contains:
    galera: {description: wsrep is on, type: bool}
    cluster_name: {description: wsrep_cluster_name, type: str}
    node_name: {description: wsrep_node_name, type: str}
    cluster_status: {description: "wsrep_cluster_status (Primary, non-Primary, Disconnected)", type: str}
    cluster_size: {description: wsrep_cluster_size, type: int}
    local_state: {description: "wsrep_local_state_comment (Synced, Donor/Desynced, Joining...)", type: str}
    ready: {description: wsrep_ready, type: bool}
    connected: {description: wsrep_connected, type: bool}
    cluster_uuid: {description: wsrep_cluster_state_uuid, type: str}
    incoming_addresses: {description: wsrep_incoming_addresses, type: list, elements: str}
    gtid_mode: {description: wsrep_gtid_mode, type: bool}
    wsrep_gtid_domain_id: {description: GTID domain of the cluster's write sets, type: int}
    gtid_domain_id: {description: GTID domain of the node's local (non-cluster) transactions, type: int}
    server_id: {description: server_id, type: int}
    log_bin: {description: binary log on, type: bool}
    log_slave_updates: {description: log_slave_updates on, type: bool}
    binlog_format: {description: binlog_format, type: str}
    gtid_binlog_pos: {description: gtid_binlog_pos, type: str}
  sample: {galera: true, cluster_status: Primary, cluster_size: 3, local_state: Synced, ready: true}
problems:
  description: Why the cluster must not be changed now ([] when it may).
  returned: always
  type: list
  elements: str
  sample: ["the node is not synced (wsrep_local_state_comment Donor/Desynced)"]
ok:
  description: No problem.
  returned: always
  type: bool
waited_seconds:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_connection import HAS_PYMYSQL, connection_argument_spec, login_params
from ansible.module_utils.mysql_galera import check


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            expected_size=dict(type="int", default=0),
            wait_timeout=dict(type="int", default=0),
            fail_on_problems=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib("pymysql"))
    p = module.params
    if p["expected_size"] < 0 or p["wait_timeout"] < 0:
        module.fail_json(msg="expected_size and wait_timeout must be 0 or more")
    result = check(login_params(p), expected_size=p["expected_size"], wait_timeout=p["wait_timeout"])
    result["changed"] = False
    if result["problems"] and p["fail_on_problems"]:
        node = result["galera"].get("node_name") or "the node"
        problems = "; ".join(result["problems"])
        module.fail_json(msg=f"Galera cluster not ready for a change ({node}): {problems}; "
                         "nothing was changed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
