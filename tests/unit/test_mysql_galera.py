"""Galera node state: when a change to the cluster may go ahead, and the wait for a restarted node."""

from ansible.module_utils.mysql_galera import check, problems, state_from

SYNCED_STATUS = {
    "wsrep_cluster_status": "Primary",
    "wsrep_cluster_size": "3",
    "wsrep_local_state_comment": "Synced",
    "wsrep_ready": "ON",
    "wsrep_connected": "ON",
    "wsrep_cluster_state_uuid": "c0ffee00-0000-11ef-0000-000000000001",
    "wsrep_incoming_addresses": "10.88.0.2:3306,10.88.0.3:3306,10.88.0.4:3306",
}
VARIABLES = {
    "wsrep_on": "ON",
    "wsrep_node_name": "db1",
    "wsrep_gtid_mode": "ON",
    "wsrep_gtid_domain_id": "0",
    "gtid_domain_id": "2",
    "server_id": "1",
    "log_bin": "ON",
    "log_slave_updates": "ON",
    "binlog_format": "ROW",
}


def state(**status):
    return state_from(dict(SYNCED_STATUS, **status), VARIABLES)


def test_state_is_typed():
    s = state()
    assert s["galera"] and s["ready"] and s["gtid_mode"] and s["log_bin"] and s["log_slave_updates"]
    assert s["cluster_size"] == 3 and s["server_id"] == 1 and s["gtid_domain_id"] == 2
    assert s["incoming_addresses"] == ["10.88.0.2:3306", "10.88.0.3:3306", "10.88.0.4:3306"]


def test_a_whole_synced_primary_cluster_may_be_changed():
    assert problems(state(), expected_size=3) == []
    assert problems(state(wsrep_cluster_size="5")) == []  # size not checked without expected_size


def test_each_reason_to_refuse_is_named():
    assert problems(state_from({}, {"wsrep_on": "OFF"})) == [
        "wsrep_on is OFF: this server is not a Galera cluster node"]
    found = problems(state(wsrep_cluster_status="non-Primary", wsrep_local_state_comment="Initialized",
                           wsrep_ready="OFF", wsrep_cluster_size="1"), expected_size=3)
    assert found[0].startswith("the node is in a non-Primary component (wsrep_cluster_status non-Primary)")
    assert found[1] == "the node is not synced (wsrep_local_state_comment Initialized)"
    assert found[2] == "the node does not accept queries (wsrep_ready OFF)"
    assert found[3].startswith("the cluster has 1 node(s), 3 expected: a node is missing")
    assert problems(state(wsrep_local_state_comment="Donor/Desynced")) == [
        "the node is not synced (wsrep_local_state_comment Donor/Desynced)"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_the_wait_follows_a_restarting_node_until_it_is_back_and_synced():
    clock = Clock()
    answers = iter([
        (None, "cannot connect to the node root@/run/mysqld/mysqld.sock: (2002) no such file"),
        (state(wsrep_local_state_comment="Joining", wsrep_ready="OFF"), ""),
        (state(wsrep_cluster_size="2"), ""),
        (state(), ""),
    ])
    result = check({}, expected_size=3, wait_timeout=60, reader=lambda _p: next(answers), sleep=clock.sleep,
                   clock=clock)
    assert result["ok"] and result["problems"] == [] and result["waited_seconds"] == 6.0
    assert result["galera"]["local_state"] == "Synced"


def test_the_wait_gives_up_with_the_last_problems():
    clock = Clock()
    result = check({}, expected_size=3, wait_timeout=10, sleep=clock.sleep, clock=clock,
                   reader=lambda _p: (state(wsrep_cluster_size="2"), ""))
    assert not result["ok"] and result["waited_seconds"] == 10.0
    assert result["problems"][0].startswith("the cluster has 2 node(s), 3 expected")


def test_without_a_wait_one_read():
    calls = []

    def reader(params):
        calls.append(params)
        return None, "cannot connect"

    result = check({"unix_socket": "/x"}, reader=reader, sleep=lambda s: None)
    assert calls == [{"unix_socket": "/x"}]
    assert result["problems"] == ["cannot connect"] and result["galera"] == {}
