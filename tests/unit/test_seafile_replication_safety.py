"""Issue 15 items 17, 18, 20: the replication login test (core), the seed's snapshot marker, and
how playbooks/seafile_backup_server.yml wires them (one password, login before CHANGE MASTER and
the seed, Seafile started at the snapshot, downtime measured stop-to-start)."""

import json
import os

import pytest
import yaml
from ansible.module_utils import mysql_replica, mysql_replication_login
from ansible.module_utils.mysql_connection import MySQLConnectionError
from ansible.module_utils.mysql_health import replication_login_check
from ansible.module_utils.mysql_replica import ReplicaError
from ansible.module_utils.mysql_seed import SeedError, SnapshotMarker, verify_replication_login

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DENIED = "(1045, \"Access denied for user 'repl'@'10.0.0.2' (using password: YES)\")"


def refusing(conn_params):
    raise MySQLConnectionError("cannot connect", "repl@10.0.0.1:3306", DENIED)


# -- the login test ----------------------------------------------------------------------------
def test_check_login_reports_the_servers_error_never_the_password():
    params = mysql_replication_login.login_params("10.0.0.1", 3306, "repl", "s3cret-pw", ssl_ca="/ca.pem")
    outcome = mysql_replication_login.check_login(params, connector=refusing)
    assert outcome == dict(ok=False, account="", error=DENIED)
    message = mysql_replication_login.describe_failure(params, outcome)
    assert "'repl' cannot log in to the source 10.0.0.1:3306" in message and "over TLS" in message
    assert "s3cret-pw" not in message
    assert params["config_file"] is None  # only the given credentials, never ~/.my.cnf's


def test_check_login_without_a_password_fails_without_connecting():
    def never(conn_params):
        raise AssertionError("must not connect")

    for password in (None, ""):
        params = mysql_replication_login.login_params("h", 3306, "repl", password)
        assert mysql_replication_login.check_login(params, connector=never)["ok"] is False


def test_health_check_replication_login_fails_and_is_skippable():
    params = dict(source_host="10.0.0.1", source_port=3306, replication_user="repl",
                  replication_password="pw")
    failed = replication_login_check(params, check_login=lambda p: dict(ok=False, account="", error=DENIED))
    assert failed["name"] == "replication_login" and not failed["ok"] and "1045" in failed["message"]
    ok = replication_login_check(params, check_login=lambda p: dict(ok=True, account="repl@10.0.0.2",
                                                                    error=""))
    assert ok["ok"] and "repl@10.0.0.2" in ok["message"]
    assert replication_login_check(dict(params, replication_password=None)) is None
    assert replication_login_check(dict(params, skip_checks=["replication_login"])) is None


def test_seed_refuses_a_replication_login_the_source_rejects(monkeypatch):
    monkeypatch.setattr(mysql_replication_login, "connect", refusing)
    monkeypatch.setattr(mysql_replication_login.check_login, "__defaults__", (refusing,))
    with pytest.raises(SeedError, match="nothing was dumped"):
        verify_replication_login(dict(login_host="10.0.0.1", login_port=3306, replication_user="repl",
                                      replication_password="pw"))
    assert verify_replication_login(dict(login_host="10.0.0.1")) is None  # not asked for


def test_replica_refuses_before_any_statement(monkeypatch):
    monkeypatch.setattr(mysql_replication_login.check_login, "__defaults__", (refusing,))
    with pytest.raises(ReplicaError, match="the replica was not changed"):
        mysql_replica._verify_source_login(
            dict(source_host="10.0.0.1", source_port=3306, source_user="repl", source_password="pw"), {}
        )


def test_read_master_info_takes_host_user_password_port(tmp_path):
    path = tmp_path / "master.info"
    path.write_text("33\nmysql-bin.000001\n4\n10.0.0.1\nrepl\npw'x\n3307\n60\n0\n")
    assert mysql_replication_login.read_master_info(str(path)) == dict(
        host="10.0.0.1", user="repl", password="pw'x", port=3307)
    path.write_text("not a master.info\n")
    with pytest.raises(ValueError):
        mysql_replication_login.read_master_info(str(path))


# -- the snapshot marker -----------------------------------------------------------------------
def test_snapshot_marker_is_written_once_private_and_never_over_a_file(tmp_path):
    path = tmp_path / "seed.snapshot"
    ticks = iter([12.5, 99.0])
    marker = SnapshotMarker(str(path), 10.0, clock=lambda: next(ticks), now=lambda: 1700000000.0)
    marker.write(True)
    marker.write(False)  # the end of the seed does not rewrite it
    assert json.loads(path.read_text()) == dict(snapshot_taken=True, time=1700000000.0, seconds=2.5)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SeedError, match="already exists"):
        SnapshotMarker.validate(str(path))
    with pytest.raises(SeedError, match="does not exist"):
        SnapshotMarker.validate(str(tmp_path / "missing" / "seed.snapshot"))
    SnapshotMarker(None, 0.0).write(True)  # no file asked for (check mode): nothing written


# -- the playbook ------------------------------------------------------------------------------
def _tasks(tasks):
    for task in tasks:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key) or [])


def _playbook():
    """The tasks of seafile_backup_server.yml's main play (the one after the Galera plays)."""
    with open(os.path.join(TOP, "playbooks", "seafile_backup_server.yml")) as f:
        plays = yaml.safe_load(f)
    main = [p for p in plays if p["name"].endswith("| MySQL replication from a consistent seed")]
    return list(_tasks(main[0]["tasks"]))


def test_playbook_takes_the_replication_password_from_one_place_and_proves_it_first():
    tasks = _playbook()
    names = [t.get("name", "") for t in tasks]
    text = yaml.safe_dump(tasks)
    assert "mysql_replication_source_password }}" not in text.replace(
        "['mysql_replication_source_password']", ""
    )  # only through seafile_replication_password (the source host's value)
    conflict = names.index("Preflight | One replication password for the pair (the source host's "
                           "mysql_replication_source_password)")
    changing = ("tls.yml", "configure.yml", "users.yml")
    assert conflict < min(i for i, t in enumerate(tasks)
                          if (t.get("ansible.builtin.import_role") or {}).get("tasks_from") in changing)
    login = names.index("Preflight | The replication user logs in to the source from the backup server")
    first_change = min(i for i, t in enumerate(tasks) if "mysql_replica" in t or "mysql_consistent_seed" in t
                       or (t.get("ansible.builtin.service") or {}).get("state") == "stopped")
    assert login < first_change
    replica_tasks = [t["mysql_replica"] for t in tasks
                     if "mysql_replica" in t and "source_password" in t["mysql_replica"]]
    assert len(replica_tasks) == 2
    assert all(t["source_password"] == "{{ seafile_replication_password }}" for t in replica_tasks)
    assert all("seafile_replication_login_testable" in str(t["verify_source_login"]) for t in replica_tasks)
    seed = next(t["mysql_consistent_seed"] for t in tasks if "mysql_consistent_seed" in t)
    assert seed["replication_password"] == "{{ seafile_replication_password }}"
    health = [t["mysql_replication_facts"] for t in tasks if "mysql_replication_facts" in t]
    assert all(h["replication_password"] == "{{ seafile_replication_password }}" for h in health)
    assert [h["mode"] for h in health if "replica_stored_password" in h] == ["health"]


def test_playbook_starts_seafile_at_the_snapshot_and_reports_stop_to_start():
    tasks = _playbook()
    names = [t.get("name", "") for t in tasks]
    wait = names.index("Seed | Wait for the dump's consistent snapshot (Seafile may start then)")
    start = names.index("Seed | Start Seafile on the primary as soon as the snapshot is taken")
    follow = names.index("Seed | Follow the dump (bytes done, estimated total, rate, time left)")
    change_master = names.index("Seed | Set the source coordinates and start replication")
    assert wait < start < follow < change_master
    seed = next(t["mysql_consistent_seed"] for t in tasks if "mysql_consistent_seed" in t)
    assert tasks[wait]["ansible.builtin.wait_for"]["path"] == seed["snapshot_file"]
    publish = next(t for t in tasks if t.get("name") == "Publish the outcome")
    downtime = publish["ansible.builtin.set_stats"]["data"]["backup_runs"][0]["downtime_seconds"]
    assert "seafile_replication_app_start_time" in downtime
    assert "seafile_replication_app_stop_time" in downtime
    assert "duration_seconds" not in downtime
