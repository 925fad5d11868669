"""The state of one MariaDB Galera node, and whether a change to the cluster may go ahead.

Read from the node's global status and variables (mysql_connection.status / variables). Used
before a replication source is configured on a Galera cluster (every node in the Primary component,
synced, the cluster at its full size) and around a rolling restart (the node is back, synced, and
the cluster whole again before the next node goes down).
"""

import time

from ansible.module_utils.mysql_connection import MySQLConnectionError, connect, status, variables

STATUS = (
    "wsrep_cluster_status",
    "wsrep_cluster_size",
    "wsrep_local_state_comment",
    "wsrep_ready",
    "wsrep_connected",
    "wsrep_cluster_state_uuid",
    "wsrep_incoming_addresses",
)
VARIABLES = (
    "wsrep_on",
    "wsrep_cluster_name",
    "wsrep_node_name",
    "wsrep_gtid_mode",
    "wsrep_gtid_domain_id",
    "gtid_domain_id",
    "server_id",
    "log_bin",
    "log_slave_updates",
    "binlog_format",
    "gtid_binlog_pos",
)


class GaleraError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def _on(value):
    return str(value or "").strip().upper() in ("ON", "1", "YES", "TRUE")


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def node_state(conn):
    """The node's Galera state as a dict; ``galera`` False when wsrep is off (not a cluster node)."""
    return state_from(status(conn, STATUS), variables(conn, VARIABLES))


def state_from(node_status, node_variables):
    """The state dict from {name: value} of the node's status and variables."""
    addresses = [a for a in (node_status.get("wsrep_incoming_addresses") or "").split(",") if a]
    return dict(
        galera=_on(node_variables.get("wsrep_on")),
        cluster_name=node_variables.get("wsrep_cluster_name", ""),
        node_name=node_variables.get("wsrep_node_name", ""),
        cluster_status=node_status.get("wsrep_cluster_status", ""),
        cluster_size=_int(node_status.get("wsrep_cluster_size")),
        local_state=node_status.get("wsrep_local_state_comment", ""),
        ready=_on(node_status.get("wsrep_ready")),
        connected=_on(node_status.get("wsrep_connected")),
        cluster_uuid=node_status.get("wsrep_cluster_state_uuid", ""),
        incoming_addresses=addresses,
        gtid_mode=_on(node_variables.get("wsrep_gtid_mode")),
        wsrep_gtid_domain_id=_int(node_variables.get("wsrep_gtid_domain_id")),
        gtid_domain_id=_int(node_variables.get("gtid_domain_id")),
        server_id=_int(node_variables.get("server_id")),
        log_bin=_on(node_variables.get("log_bin")),
        log_slave_updates=_on(node_variables.get("log_slave_updates")),
        binlog_format=node_variables.get("binlog_format", ""),
        gtid_binlog_pos=node_variables.get("gtid_binlog_pos", ""),
    )


def problems(state, expected_size=0):
    """Why this node's cluster must not be changed now ([] when it may): a node outside a Galera
    cluster, in a non-Primary component, not synced, not ready, or a cluster short of nodes."""
    if not state.get("galera"):
        return ["wsrep_on is OFF: this server is not a Galera cluster node"]
    found = []
    if state.get("cluster_status") != "Primary":
        found.append(
            "the node is in a non-Primary component (wsrep_cluster_status "
            f"{state.get('cluster_status') or '?'}): it has lost quorum, its data may be behind the cluster's"
        )
    if state.get("local_state") != "Synced":
        found.append(f"the node is not synced (wsrep_local_state_comment {state.get('local_state') or '?'})")
    if not state.get("ready"):
        found.append("the node does not accept queries (wsrep_ready OFF)")
    if expected_size and state.get("cluster_size") != expected_size:
        found.append(
            f"the cluster has {state.get('cluster_size')} node(s), {expected_size} expected: "
            "a node is missing (restart or rejoin it first)"
        )
    return found


def read(conn_params):
    """(state, problems-to-add) of the node behind conn_params; a node that cannot be reached is a
    problem, not an exception (it may be restarting)."""
    try:
        conn = connect(conn_params)
    except MySQLConnectionError as exc:
        return None, f"cannot connect to the node {exc.where}: {exc.error}"
    try:
        return node_state(conn), ""
    finally:
        conn.close()


def check(conn_params, expected_size=0, wait_timeout=0, poll=2.0, reader=read, sleep=time.sleep,
          clock=time.monotonic):
    """The node's state and problems; with wait_timeout, polls until there are none or the time is up
    (a node that restarts, rejoins and catches up by IST). Returns a result dict."""
    started = clock()
    while True:
        state, unreachable = reader(conn_params)
        found = [unreachable] if unreachable else problems(state, expected_size)
        if not found or clock() - started >= wait_timeout:
            return dict(
                galera=state or {},
                problems=found,
                ok=not found,
                waited_seconds=round(clock() - started, 1),
            )
        sleep(poll)
