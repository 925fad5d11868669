"""playbooks/seafile_backup_status.yml, seafile_backup_sync.yml and seafile_failover.yml run for
real (ansible-playbook, local connection) against a real MariaDB source/replica pair started by the
tests, with a seafile database holding the library tables and RepoUserToken. seaf-backup-cmd.sh is
the stand-in in tests/standins (Seafile Pro cannot be installed here)."""
import json
import os
import stat
import subprocess
import time

import pytest

from tests.integration.seafile_common import (
    ID1,
    ID2,
    ID3,
    STANDIN,
    run_playbook,
    write_inventory,
    write_state,
)
from tests.lib.mariadb import ROOT_PASSWORD

IGNORED = ["seafile_db.Repo", "seafile_db.Branch", "seafile_db.RepoHead"]
SCHEMA = [
    "CREATE DATABASE seafile_db",
    "CREATE TABLE seafile_db.Repo (repo_id CHAR(37) PRIMARY KEY) ENGINE=InnoDB",
    "CREATE TABLE seafile_db.Branch (name VARCHAR(10), repo_id CHAR(41), commit_id CHAR(41),"
    " PRIMARY KEY (repo_id, name)) ENGINE=InnoDB",
    "CREATE TABLE seafile_db.RepoHead (repo_id CHAR(37) PRIMARY KEY, branch_name VARCHAR(10)) ENGINE=InnoDB",
    "CREATE TABLE seafile_db.RepoUserToken (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, repo_id CHAR(37),"
    " email VARCHAR(255), token CHAR(41), UNIQUE INDEX (repo_id, token), INDEX (token)) ENGINE=InnoDB",
]
TOKENS = [(ID1, "alice@example.org"), (ID1, "bob@example.org"), (ID2, "carol@example.org"),
          (ID3, "dave@example.org")]


def wait_for(predicate, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pair(mariadb_factory):
    """Primary database (source) replicating to the backup server's (replica), like the Seafile pair."""
    src = mariadb_factory("source", server_id=1)
    dst = mariadb_factory("replica", server_id=2,
                          extra_args=[f"--replicate-ignore-table={t}" for t in IGNORED])
    src.sql("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw'")
    src.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
    log_file, log_pos = src.sql("SHOW MASTER STATUS")[0][:2]
    dst.sql(f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={src.port}, MASTER_USER='repl', "
            f"MASTER_PASSWORD='repl-pw', MASTER_LOG_FILE='{log_file}', MASTER_LOG_POS={log_pos}, "
            "MASTER_USE_GTID=no")
    dst.sql("START SLAVE")
    for statement in SCHEMA:
        src.sql(statement)
    for n, (repo, email) in enumerate(TOKENS):
        src.sql("INSERT INTO seafile_db.RepoUserToken (repo_id, email, token) VALUES (%s, %s, %s)",
                (repo, email, f"{n:040x}"))
        src.sql("INSERT IGNORE INTO seafile_db.Repo VALUES (%s)", (repo,))
    wait_for(lambda: dst.sql("SELECT COUNT(*) FROM seafile_db.RepoUserToken")[0][0] == len(TOKENS)
             if dst.sql("SHOW DATABASES LIKE 'seafile_db'") else False, "replication of RepoUserToken")
    return src, dst


def make_backup(tmp_path, src=None, dst=None):
    """Inventory with the one backup server (local connection), stand-in state and report paths."""
    state = write_state(tmp_path / "standin.state", total=4, synchronized=4, waiting=0, syncing=[], failed=[],
                        delay=0.05)
    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    all_vars = {
        "seafile_backup_ops_cmd": STANDIN,
        "seafile_backup_ops_db_config_file": str(tmp_path / "no-such.cnf"),
        "seafile_backup_ops_metrics_enabled": True,
        "seafile_backup_ops_metrics_path": str(metrics_dir / "seafile_backup.prom"),
        "seafile_backup_ops_failover_report_dir": str(tmp_path / "reports"),
        "seafile_backup_ops_row_counts_file": str(tmp_path / "state" / "replica-row-counts.json"),
    }
    if dst is not None:
        all_vars.update({
            "seafile_backup_ops_db_login_unix_socket": dst.socket,
            "seafile_backup_ops_db_login_user": "root",
            "seafile_backup_ops_db_source_host": "127.0.0.1",
            "seafile_backup_ops_db_source_port": src.port,
            "seafile_backup_ops_db_source_user": "root",
            "seafile_backup_ops_db_source_password": ROOT_PASSWORD,
        })
    inventory = write_inventory(tmp_path / "hosts.yml", {"seafile_backup": ["backup1"]}, None, all_vars)

    class Backup:
        pass

    b = Backup()
    b.src, b.dst, b.state, b.tmp, b.inventory = src, dst, state, tmp_path, inventory
    b.metrics = metrics_dir / "seafile_backup.prom"
    b.row_counts = tmp_path / "state" / "replica-row-counts.json"
    b.reports = tmp_path / "reports"
    b.log = tmp_path / "standin.state.log"
    b.env = {"SEAF_BACKUP_STANDIN_STATE": str(state)}
    b.run = lambda playbook, **kw: run_playbook(tmp_path, playbook, inventory, env=b.env, **kw)
    b.calls = lambda: b.log.read_text().splitlines() if b.log.exists() else []
    if dst is not None:
        b.tokens = lambda: sorted(dst.sql("SELECT repo_id, email FROM seafile_db.RepoUserToken"))
        b.replica_running = lambda: dst.sql("SHOW SLAVE STATUS")[0][10:12]
    return b


@pytest.fixture
def backup(tmp_path, pair):
    """The backup server with its database replicating from the primary's."""
    return make_backup(tmp_path, *pair)


@pytest.fixture
def standin(tmp_path):
    """The backup server for the playbooks that need no database (sync)."""
    return make_backup(tmp_path)


def promtool_ok(path):
    proc = subprocess.run(["promtool", "check", "metrics"], input=path.read_text(), capture_output=True,
                          text=True, check=False)
    return proc.returncode == 0, proc.stdout + proc.stderr


# -- status ----------------------------------------------------------------------------------
def test_status_healthy_writes_metrics_and_publishes_ok(backup):
    run = backup.run("seafile_backup_status.yml")
    assert run.rc == 0, run.out
    text = backup.metrics.read_text()
    assert 'seafile_backup_libraries{state="synchronized"} 4' in text
    assert "seafile_backup_check_success 1" in text and "seafile_backup_replication_healthy 1" in text
    assert "seafile_backup_replication_lag_seconds 0" in text
    assert promtool_ok(backup.metrics)[0], promtool_ok(backup.metrics)[1]
    assert os.listdir(backup.metrics.parent) == ["seafile_backup.prom"], "no temp file left"
    [entry] = run.backup_runs
    assert entry["strategy"] == "seafile_backup_status" and entry["result"] == "ok"
    assert entry["details"]["replication_healthy"] is True


def test_status_fails_for_alerting_when_libraries_failed(backup):
    assert backup.run("seafile_backup_status.yml").rc == 0
    write_state(backup.state, total=4, synchronized=2, syncing=[ID3], failed=[ID1, ID2])
    run = backup.run("seafile_backup_status.yml")
    assert run.rc != 0
    assert f"libraries failed to sync: {ID1}, {ID2}" in run.out, run.out
    text = backup.metrics.read_text()
    assert 'seafile_backup_libraries{state="failed"} 2' in text and 'state="syncing"} 1' in text
    assert "seafile_backup_check_success 0" in text
    assert "seafile_backup_last_success_timestamp_seconds" in text, "last success carried over"
    assert promtool_ok(backup.metrics)[0]
    assert run.backup_runs[0]["result"] == "failed"


def test_status_fails_when_replication_is_unhealthy(backup):
    backup.dst.sql("STOP SLAVE")
    run = backup.run("seafile_backup_status.yml")
    assert run.rc != 0
    assert "replication unhealthy" in run.out, run.out
    text = backup.metrics.read_text()
    assert "seafile_backup_replication_healthy 0" in text
    assert "seafile_backup_replication_io_running 0" in text
    assert "seafile_backup_replication_lag_seconds NaN" in text
    assert "seafile_backup_last_success_timestamp_seconds" not in text


def test_status_records_row_counts_and_a_replica_that_shrank_is_suspect_keeping_the_last_good(backup):
    backup.src.sql("INSERT INTO seafile_db.RepoUserToken (repo_id, email, token) "
                   "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < 49) "
                   "SELECT %s, CONCAT('user', a.n * 50 + b.n, '@example.org'), "
                   "LPAD(HEX(a.n * 50 + b.n + 1000), 40, '0') FROM s a, s b WHERE a.n < 30", (ID3,))
    replica_rows = lambda: backup.dst.sql("SELECT COUNT(*) FROM seafile_db.RepoUserToken")[0][0]  # noqa: E731
    wait_for(lambda: replica_rows() == 1504, "replication of 1500 more tokens")
    run = backup.run("seafile_backup_status.yml")
    assert run.rc == 0, run.out
    assert run.backup_runs[0]["result"] == "ok"
    assert stat.S_IMODE(backup.row_counts.stat().st_mode) == 0o600
    good = json.loads(backup.row_counts.read_text())["last_good"]
    assert good["counts"] == {"seafile_db.RepoUserToken": 1504}, "Repo, Branch, RepoHead are not replicated"

    backup.src.sql("DELETE FROM seafile_db.RepoUserToken WHERE id > 100")
    wait_for(lambda: replica_rows() == 100, "replication of the delete")
    run = backup.run("seafile_backup_status.yml")
    assert run.rc != 0
    assert "the replica is suspect" in run.out, run.out
    assert "seafile_db.RepoUserToken fell from 1504 to 100 (-93 %)" in run.out, run.out
    assert "seafile_backup_ops_accept_shrink=true" in run.out
    [entry] = run.backup_runs
    assert entry["result"] == "suspect", entry
    assert [(d["table"], d["previous"], d["current"]) for d in entry["details"]["shrink"]] == [
        ("seafile_db.RepoUserToken", 1504, 100)]
    assert json.loads(backup.row_counts.read_text())["last_good"] == good, "last good counts kept"

    # accepting the drop passes; in check mode the file is not written
    run = backup.run("seafile_backup_status.yml", extra_vars={"seafile_backup_ops_accept_shrink": True},
                     check=True)
    assert run.rc == 0, run.out
    assert "shrink accepted for this run" in run.out, run.out
    assert json.loads(backup.row_counts.read_text())["last_good"] == good, "not written in check mode"


def test_status_fails_clearly_on_malformed_output_and_keeps_last_success(backup):
    assert backup.run("seafile_backup_status.yml").rc == 0
    first = backup.metrics.read_text()
    last_success = [line for line in first.splitlines() if line.startswith("seafile_backup_last_success")][0]
    (backup.tmp / "standin.state.raw").write_text("Total number of libraries: 4\nSegmentation fault\n")
    write_state(backup.state, mode="raw")
    run = backup.run("seafile_backup_status.yml")
    assert run.rc != 0
    assert "unexpected text 'Segmentation fault'" in run.out, run.out
    text = backup.metrics.read_text()
    assert "seafile_backup_status_up 0" in text and last_success in text
    assert promtool_ok(backup.metrics)[0]


def test_status_when_the_command_fails(backup):
    write_state(backup.state, mode="error")
    run = backup.run("seafile_backup_status.yml", extra_vars={"seafile_backup_ops_check_replication": False,
                                                             "seafile_backup_ops_metrics_enabled": False})
    assert run.rc != 0
    assert "Failed to connect to the backup server daemon" in run.out, run.out
    assert not backup.metrics.exists()


# -- sync ------------------------------------------------------------------------------------
def test_sync_given_ids_reports_each_outcome_then_force_completes(standin):
    write_state(standin.state, total=3, synchronized=1, failed=[ID1, ID2], fail_sync=[ID1], delay=0.05)
    ids = {"seafile_backup_ops_sync_library_ids": [ID1, ID2]}
    run = standin.run("seafile_backup_sync.yml", extra_vars=ids)
    assert run.rc != 0
    assert standin.calls() == [f"sync {ID1}", f"sync {ID2}"], "one by one, a failure does not stop the rest"
    [entry] = run.backup_runs
    assert entry["result"] == "failed" and entry["details"]["failed"] == [ID1]
    assert entry["details"]["synced"] == [ID2]
    outcomes = {lib["library_id"]: lib["result"] for lib in entry["details"]["libraries"]}
    assert outcomes == {ID1: "failed", ID2: "ok"}

    forced = standin.run("seafile_backup_sync.yml", extra_vars={"seafile_backup_ops_sync_all_failed": True,
                                                               "seafile_backup_ops_sync_force": True})
    assert forced.rc == 0, forced.out
    assert standin.calls()[-2:] == ["status", f"sync --force {ID1}"]
    assert forced.backup_runs[0]["details"]["synced"] == [ID1]
    assert forced.backup_runs[0]["details"]["forced"] is True


def test_sync_all_failed_with_none_failed_does_nothing(standin):
    run = standin.run("seafile_backup_sync.yml", extra_vars={"seafile_backup_ops_sync_all_failed": True})
    assert run.rc == 0, run.out
    assert standin.calls() == ["status"]
    assert "no library to sync" in run.out


@pytest.mark.parametrize("extra, message", [
    ({"seafile_backup_ops_sync_library_ids": [ID1, "not-a-uuid"]}, "not library ids (UUIDs expected)"),
    ({"seafile_backup_ops_sync_library_ids": [ID1], "seafile_backup_ops_sync_all_failed": True}, "not both"),
    ({}, "not both and not neither"),
    ({"seafile_backup_ops_sync_library_ids": ID1}, "a list of library ids"),
])
def test_sync_bad_input_refused_before_any_command(standin, extra, message):
    run = standin.run("seafile_backup_sync.yml", extra_vars=extra)
    assert run.rc != 0
    assert message in run.out, run.out
    assert standin.calls() == []
    assert run.backup_runs[0]["result"] == "failed"


# -- failover --------------------------------------------------------------------------------
def test_failover_refused_without_confirmation(backup):
    write_state(backup.state, total=4, synchronized=2, failed=[ID1, ID2])
    for extra in ({}, {"seafile_backup_ops_failover_confirm": "yes"}):
        run = backup.run("seafile_failover.yml", extra_vars=extra)
        assert run.rc != 0
        assert "failover refused, nothing was changed" in run.out, run.out
    assert backup.calls() == []
    assert backup.replica_running() == ("Yes", "Yes")
    assert len(backup.tokens()) == len(TOKENS)
    assert not backup.reports.exists()


def test_failover_check_mode_shows_what_it_would_do(backup):
    write_state(backup.state, total=4, synchronized=2, failed=[ID1, ID2])
    run = backup.run("seafile_failover.yml", check=True)
    assert run.rc == 0, run.out
    assert '"would_delete": 3' in run.out or "would_delete: 3" in run.out, run.out
    assert "STOP SLAVE" in run.out or "STOP REPLICA" in run.out
    assert backup.replica_running() == ("Yes", "Yes")
    assert len(backup.tokens()) == len(TOKENS)
    assert not backup.reports.exists()


def test_failover_stops_replication_unsyncs_failed_libraries_and_reports(backup):
    write_state(backup.state, total=4, synchronized=1, syncing=[ID3], failed=[ID1, ID2])
    backup.src.sql("INSERT INTO seafile_db.RepoUserToken (repo_id, email, token) "
                   "VALUES (%s, 'erin@example.org', %s)", (ID3, "e" * 40))
    wait_for(lambda: len(backup.tokens()) == len(TOKENS) + 1, "the last write to replicate")
    expected_file, expected_pos = backup.src.sql("SHOW MASTER STATUS")[0][:2]
    run = backup.run("seafile_failover.yml", extra_vars={"seafile_backup_ops_failover_confirm": "backup1"})
    assert run.rc == 0, run.out
    assert backup.replica_running() == ("No", "No")
    assert backup.tokens() == [(ID3, "dave@example.org"), (ID3, "erin@example.org")]
    [report_file] = list(backup.reports.iterdir())
    assert stat.S_IMODE(report_file.stat().st_mode) == 0o600
    report = json.loads(report_file.read_text())
    assert report["result"] == "ok" and report["failed_libraries"] == [ID1, ID2]
    assert report["repo_user_tokens"]["deleted"] == 3
    assert sorted(r["email"] for r in report["repo_user_tokens"]["rows"]) == [
        "alice@example.org", "bob@example.org", "carol@example.org"]
    assert report["replication"]["executed_file"] == expected_file
    assert int(report["replication"]["executed_position"]) == expected_pos
    assert report["syncing_libraries_not_unsynced"] == [ID3]
    [entry] = run.backup_runs
    assert entry["strategy"] == "seafile_failover" and entry["result"] == "ok"
    assert entry["location"] == str(report_file)

    again = backup.run("seafile_failover.yml", extra_vars={"seafile_backup_ops_failover_confirm": "backup1"})
    assert again.rc == 0, again.out
    assert backup.tokens() == [(ID3, "dave@example.org"), (ID3, "erin@example.org")]


def test_failover_failure_is_reported_and_fails_the_play(backup):
    write_state(backup.state, total=4, synchronized=2, failed=[ID1])
    run = backup.run("seafile_failover.yml", extra_vars={"seafile_backup_ops_failover_confirm": "backup1",
                                                         "seafile_backup_ops_seafile_db": "no_such_db"})
    assert run.rc != 0
    assert "failed" in run.out
    [report_file] = list(backup.reports.iterdir())
    assert report_file.name.endswith("-failed.json")
    report = json.loads(report_file.read_text())
    assert report["result"] == "failed" and "no_such_db" in report["error"]
    assert run.backup_runs[0]["result"] == "failed"
    assert len(backup.tokens()) == len(TOKENS)


def test_status_refuses_a_replication_check_without_source_login(standin):
    run = standin.run("seafile_backup_status.yml")
    assert run.rc != 0
    assert "set seafile_backup_ops_db_source_host" in run.out, run.out
    assert standin.calls() == [] and not standin.metrics.exists()
    assert run.backup_runs[0]["result"] == "failed"


@pytest.mark.parametrize("playbook", ["seafile_backup_status.yml", "seafile_backup_sync.yml",
                                      "seafile_failover.yml"])
def test_two_backup_servers_refused(standin, playbook):
    inventory = write_inventory(standin.tmp / "two.yml", {"seafile_backup": ["backup1", "backup2"]}, None, {
        "seafile_backup_ops_cmd": STANDIN, "seafile_backup_ops_check_replication": False,
        "seafile_backup_ops_sync_all_failed": True,
        "seafile_backup_ops_failover_confirm": "{{ inventory_hostname }}",
        "seafile_backup_ops_failover_report_dir": str(standin.reports)})
    run = run_playbook(standin.tmp, playbook, inventory, env=standin.env)
    assert run.rc != 0
    assert "must hold exactly one host" in run.out, run.out
    assert standin.calls() == [] and not standin.reports.exists()


def test_sync_check_mode_lists_commands_without_running_them(standin):
    write_state(standin.state, total=2, synchronized=0, failed=[ID1, ID2])
    run = standin.run("seafile_backup_sync.yml", check=True,
                      extra_vars={"seafile_backup_ops_sync_all_failed": True,
                                  "seafile_backup_ops_sync_force": True})
    assert run.rc == 0, run.out
    assert standin.calls() == ["status"], "check mode reads the status but syncs nothing"
    assert f"{ID1}: would_run" in run.out and f"{ID2}: would_run" in run.out, run.out


def test_repo_tokens_module_refuses_a_bad_id_and_deletes_nothing(backup):
    """The module on its own (ansible ad-hoc) against the real seafile database."""
    import sys

    args = {"library_ids": [ID1, "f690ea2c-fe4d-459a-ba1e-165cdc6df391' OR '1'='1"], "database": "seafile_db",
            "login_unix_socket": backup.dst.socket, "login_user": "root"}
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", "-m", "seafile_repo_tokens",
            "-a", json.dumps(args)]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(os.path.dirname(STANDIN), "..", "..", "ansible.cfg"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(STANDIN)))
    bad = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    assert bad.returncode != 0 and "not library ids (UUIDs expected)" in bad.stdout, bad.stdout + bad.stderr
    assert len(backup.tokens()) == len(TOKENS)
    args["library_ids"] = [ID2.upper()]
    good = subprocess.run(argv[:-1] + [json.dumps(args)], capture_output=True, text=True, env=env, cwd=cwd,
                          check=False)
    assert good.returncode == 0 and '"count": 1' in good.stdout, good.stdout + good.stderr
    assert (ID2, "carol@example.org") not in backup.tokens() and len(backup.tokens()) == len(TOKENS) - 1
