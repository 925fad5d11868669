"""The primary and the backup server after converge + idempotence of
playbooks/seafile_backup_server.yml and verify's replicated write, read through the mariadb client
and the files the roles wrote: run by molecule/_shared/testinfra.yml. Expected values: the lab
inventory's group_vars (molecule.yml links them)."""
from pathlib import Path

import pytest
import testinfra
import yaml

HERE = Path(__file__).parents[1]
MOLECULE = yaml.safe_load((HERE / "molecule.yml").read_text())
GROUP_VARS = HERE / MOLECULE["provisioner"]["inventory"]["links"]["group_vars"]
ALL_VARS = yaml.safe_load((GROUP_VARS / "all.yml").read_text())
SOURCE_VARS = yaml.safe_load((GROUP_VARS / "mysql_primary.yml").read_text())
REPLICA_VARS = yaml.safe_load((GROUP_VARS / "mysql_backup.yml").read_text())
CONF_D = "/etc/mysql/mariadb.conf.d"


def _node(group):
    names = [p["name"] for p in MOLECULE["platforms"] if group in p["groups"]]
    assert len(names) == 1, (group, names)
    return testinfra.get_host(f"podman://{names[0]}")


@pytest.fixture(scope="module")
def primary():
    return _node("mysql_primary")


@pytest.fixture(scope="module")
def backup():
    return _node("mysql_backup")


def _sql(node, query):
    """Rows of a query run with the mariadb client as root, each a list of its columns."""
    return [row.split("\t") for row in node.check_output("mariadb -N -B -e %s", query).splitlines()]


def _address(node):
    return node.check_output("hostname -I").split()[0]


def _modes(node, *paths):
    return node.check_output("stat -c '%%a %%U:%%G' " + " ".join(["%s"] * len(paths)), *paths).splitlines()


def test_source_writes_row_binlogs_and_listens_for_the_replica(primary):
    assert _modes(primary, f"{CONF_D}/70-replication-source.cnf") == ["644 root:root"]
    [[server_id, log_bin, binlog_format, expire_days]] = _sql(
        primary, "SELECT @@server_id, @@log_bin, @@binlog_format, @@expire_logs_days")
    source_id = str(SOURCE_VARS["mysql_replication_source_server_id"])
    assert (server_id, log_bin, binlog_format) == (source_id, "1", "ROW")
    assert float(expire_days) == SOURCE_VARS["mysql_replication_source_binlog_retention_days"]
    # on the address the backup connects to (or on all of them), not on loopback only
    reachable = {"tcp://0.0.0.0:3306", "tcp://:::3306", f"tcp://{_address(primary)}:3306"}
    listening = primary.socket.get_listening_sockets()
    assert reachable & set(listening), listening


def test_replica_replicates_from_the_source_without_errors(primary, backup):
    assert _modes(backup, f"{CONF_D}/70-replication-replica.cnf") == ["644 root:root"]
    assert not backup.file(f"{CONF_D}/71-replication-seeding.cnf").exists, "the seeding hold was not released"
    assert _sql(backup, "SELECT @@server_id") == [[str(REPLICA_VARS["mysql_replication_replica_server_id"])]]
    # "   Key: value" lines under a "*** 1. row ***" header; the keys hold no colon
    rows = backup.check_output("mariadb -e 'SHOW SLAVE STATUS\\G'").splitlines()[1:]
    status = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in rows)}
    assert {key: status.get(key) for key in ("Slave_IO_Running", "Slave_SQL_Running", "Master_Host",
                                             "Master_User", "Last_IO_Errno", "Last_SQL_Errno")} == {
        "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Master_Host": _address(primary),
        "Master_User": ALL_VARS["mysql_replication_source_user"], "Last_IO_Errno": "0", "Last_SQL_Errno": "0"}


def test_replication_accounts_live_on_the_source_only_bound_to_the_backup(primary, backup):
    # written with sql_log_bin=0: not replicated to the backup
    assert _sql(backup, "SELECT COUNT(*) FROM mysql.user WHERE User IN ('repl', 'repl_admin')") == [["0"]]
    replica_address = _address(backup)
    accounts = _sql(primary, "SELECT User, Host FROM mysql.user"
                             " WHERE User IN ('repl', 'repl_admin') ORDER BY User")
    assert accounts == [["repl", replica_address], ["repl_admin", replica_address]]  # never '%'
    grants = _sql(primary, f"SHOW GRANTS FOR 'repl'@'{replica_address}'")
    assert len(grants) == 1, grants
    assert grants[0][0].startswith("GRANT REPLICATION SLAVE ON *.* TO `repl`@`"), grants
