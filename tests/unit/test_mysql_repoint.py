"""Re-point decision: does the new source hold every transaction the replica has applied (GTID)?"""

import pytest
from ansible.module_utils.mysql_repoint import (
    RepointError,
    by_domain,
    check_mariadb,
    check_mysql,
    parse_gtid_list,
    refusal_message,
    replica_settings,
)


# -- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        (None, []),
        ("0-1-100", [(0, 1, 100)]),
        ("0-1-100,1-2-7", [(0, 1, 100), (1, 2, 7)]),
        (" 0-1-100 , 1-2-7 ", [(0, 1, 100), (1, 2, 7)]),
        ("0-1-5,\n0-2-9", [(0, 1, 5), (0, 2, 9)]),  # gtid_binlog_state lists several servers per domain
    ],
)
def test_parse_gtid_list(text, expected):
    assert parse_gtid_list(text) == expected


@pytest.mark.parametrize("text", ["0-1", "a-b-c", "0-1-2-3", "0-1-100;1-2-3", "-1-1-1"])
def test_parse_gtid_list_refuses_malformed(text):
    with pytest.raises(RepointError, match="not a MariaDB GTID list"):
        parse_gtid_list(text, "the replica's gtid_slave_pos")


def test_by_domain_keeps_the_highest_seqno():
    assert by_domain([(0, 1, 5), (0, 2, 9), (1, 1, 3)]) == {0: (2, 9), 1: (1, 3)}


# -- MariaDB decision ------------------------------------------------------------------------
def test_equal_positions_are_ok():
    d = check_mariadb("0-1-100", "0-1-100")
    assert d["ok"] and d["reasons"] == [] and d["behind"] == {0: 0}


def test_new_source_ahead_is_ok_and_reports_how_far():
    d = check_mariadb("0-1-100", "0-1-150")
    assert d["ok"] and d["behind"] == {0: 50}


def test_new_source_behind_is_refused_with_domain_and_seqno():
    d = check_mariadb("0-1-100", "0-1-90")
    assert not d["ok"]
    assert d["missing"] == [
        "domain 0: the replica has applied up to 0-1-100, the new source only up to 0-1-90 "
        "(10 transaction(s) of server 1 missing)"
    ]


def test_missing_domain_is_refused():
    d = check_mariadb("0-1-100,1-3-20", "0-1-100")
    assert not d["ok"]
    assert d["missing"] == [
        "domain 1: the replica has applied up to 1-3-20, the new source has no transaction of domain 1 "
        "in its binlog"
    ]


def test_empty_new_source_is_refused():
    d = check_mariadb("0-1-100", "")
    assert not d["ok"] and "domain 0" in d["missing"][0]


def test_empty_replica_position_is_refused():
    d = check_mariadb("", "0-1-100")
    assert not d["ok"] and "gtid_slave_pos is empty" in d["reasons"][0]


def test_galera_node_with_own_server_id_uses_binlog_state():
    # a node that replicates the old source with log_slave_updates keeps the original server id in its
    # binlog state; its own writes in the same domain come later with its own id
    d = check_mariadb("0-1-100", "0-2-120", "0-1-100,0-2-120")
    assert d["ok"] and d["behind"] == {0: 20}


def test_position_of_other_server_without_state_is_refused():
    # only gtid_binlog_pos known, and it names another server: the replica's GTID is not proven held
    d = check_mariadb("0-1-100", "0-2-120")
    assert not d["ok"]
    assert "no transaction of server 1 in domain 0 (it has 0-2-120)" in d["missing"][0]


def test_state_with_same_server_behind_is_refused_even_if_domain_is_ahead():
    # domain 0 is at 130 on the new source, but server 1's transactions stop at 95: a diverged history
    d = check_mariadb("0-1-100", "0-2-130", "0-1-95,0-2-130")
    assert not d["ok"] and "only up to 0-1-95 (5 transaction(s) of server 1 missing)" in d["missing"][0]


def test_several_domains_each_checked():
    d = check_mariadb("0-1-100,5-7-30", "0-1-110,5-7-29", "0-1-110,5-7-29")
    assert not d["ok"]
    assert len(d["missing"]) == 1 and d["missing"][0].startswith("domain 5:")


def test_several_domains_all_held():
    d = check_mariadb("0-1-100,5-7-30", "0-1-110,5-7-31,9-9-1")
    assert d["ok"] and d["behind"] == {0: 10, 5: 1}


def test_extra_domains_on_the_new_source_are_fine():
    assert check_mariadb("0-1-10", "0-1-10,1-4-500")["ok"]


def test_purged_binlogs_past_the_replica_are_refused():
    d = check_mariadb("0-1-100", "0-1-200", "0-1-200", source_purged="0-1-150")
    assert not d["ok"] and d["missing"] == []
    assert d["purged"] == [
        "domain 0: the new source has purged its binlogs up to 0-1-150, past the replica's 0-1-100: "
        "the transactions between are no longer available"
    ]


def test_purged_up_to_the_replica_position_is_fine():
    assert check_mariadb("0-1-100", "0-1-200", source_purged="0-1-100")["ok"]
    assert check_mariadb("0-1-100", "0-1-200", source_purged="0-1-40")["ok"]


def test_local_transactions_of_the_replica_are_reported_not_refused():
    # the replica's own binlog has writes (server 3) that are not replicated: gtid_current_pos shows them
    d = check_mariadb("0-1-100", "0-1-100", replica_current_pos="0-3-101")
    assert d["ok"] and d["local"] == ["0-3-101"]
    assert check_mariadb("0-1-100", "0-1-100", replica_current_pos="0-1-100")["local"] == []


def test_malformed_source_position_is_an_error():
    with pytest.raises(RepointError, match="new source's gtid_binlog_pos"):
        check_mariadb("0-1-1", "garbage")


def test_refusal_message_names_the_target_and_says_reseed():
    d = check_mariadb("0-1-100", "0-1-90")
    msg = refusal_message("db2:3306", d["reasons"])
    assert msg.startswith("re-point to db2:3306 refused, nothing was changed")
    assert "0-1-100" in msg and "0-1-90" in msg and "Re-seed" in msg


# -- MySQL decision --------------------------------------------------------------------------
def test_mysql_subset_ok():
    assert check_mysql("uuid-a:1-100", True, "", True)["ok"]


def test_mysql_missing_transactions_named():
    d = check_mysql("uuid-a:1-100", False, "uuid-a:91-100", True)
    assert not d["ok"] and "uuid-a:91-100" in d["reasons"][0]


def test_mysql_purged_refused():
    d = check_mysql("uuid-a:1-100", True, "", False, "uuid-a:101-120")
    assert not d["ok"] and "purged" in d["reasons"][0] and "uuid-a:101-120" in d["reasons"][0]


def test_mysql_empty_executed_refused():
    assert not check_mysql("", True, "", True)["ok"]


# -- module options -> replica settings ------------------------------------------------------
def test_replica_settings_default_to_the_admin_login_host_and_port():
    wanted = replica_settings(dict(source_host="db2", source_port=3307, source_user="admin",
                                   source_password="admin-pw", replication_user="repl",
                                   replication_password="pw", replication_ssl=None, max_lag_seconds=5))
    assert (wanted["source_host"], wanted["source_port"], wanted["source_user"]) == ("db2", 3307, "repl")
    assert wanted["source_password"] == "pw" and wanted["max_lag_seconds"] == 5
    assert "source_ssl" not in wanted and wanted["state"] == "running" and wanted["wait"]


def test_replica_settings_replication_address_and_tls():
    wanted = replica_settings(dict(source_host="db2-admin", source_port=3306, replication_host="10.0.0.12",
                                   replication_port=3310, replication_user="repl", replication_password="pw",
                                   replication_ssl=True, replication_ssl_ca="/etc/ca.pem",
                                   replication_ssl_verify_server_cert=True))
    assert (wanted["source_host"], wanted["source_port"]) == ("10.0.0.12", 3310)
    assert wanted["source_ssl"] and wanted["source_ssl_ca"] == "/etc/ca.pem"
    assert wanted["source_ssl_verify_server_cert"]
