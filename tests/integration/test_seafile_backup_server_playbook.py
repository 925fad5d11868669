"""playbooks/seafile_backup_server.yml against two real lab containers: the faults.

The happy path, idempotence and the replicated/ignored data are the molecule scenario `seafile`;
here the playbook's answers to bad input and failures, in the order an operator could meet them:

- same server_id on both sides, an ignored table that is not db.table: a clear error before
  anything changes (no drop-in written on either host), a failed backup_runs record, non-zero exit;
- an unreachable source: fails before the replica is touched;
- a dump failing half way: the play fails, the replica is NOT pointed at the partial data; once the
  cause is gone the next run seeds and replicates.

Needs root, podman and the lab image (scripts/lab/build-image.sh); skipped otherwise. Two small
containers, stopped at the end (also on failure).
"""

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from tests.lib import canary
from tests.lib.lab_containers import sql

OTHER_PW = canary.canary("other-repl-pw")
ROTATED_PW = canary.canary("rotated-pw;'1")

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "localhost/backup-lab:latest"
SOURCE_CNF = "/etc/mysql/mariadb.conf.d/70-replication-source.cnf"
REPLICA_CNF = "/etc/mysql/mariadb.conf.d/70-replication-replica.cnf"


def _podman_ready():
    if os.geteuid() != 0 or not shutil.which("podman"):
        return False
    return subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _podman_ready(), reason="needs root, podman and the lab image " + IMAGE)


def podman(*args, check=True):
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True)


def file_exists(container, path):
    return podman("exec", container, "test", "-e", path, check=False).returncode == 0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two containers (primary with the sample Seafile data, backup with the empty schema)."""
    suffix = uuid.uuid4().hex[:6]
    names = {"primary": f"seafile-it-primary-{suffix}", "backup": f"seafile-it-backup-{suffix}"}
    inventory_dir = tmp_path_factory.mktemp("inventory")
    os.symlink(os.path.join(TOP, "inventories", "lab", "group_vars"), inventory_dir / "group_vars")
    conn = (
        "ansible_connection: lab_podman\n        ansible_python_interpreter: /usr/bin/python3"
    )
    canary.write_private((inventory_dir / "hosts.yml"),
        "all:\n  children:\n"
        f"    mysql_primary:\n      hosts:\n        {names['primary']}:\n      vars:\n        {conn}\n"
        f"    mysql_backup:\n      hosts:\n        {names['backup']}:\n      vars:\n        {conn}\n"
    )
    try:
        for name in names.values():
            podman("run", "-d", "--init", "--name", name, "--hostname", name, IMAGE, "sleep", "infinity")
        lab = dict(names, inventory=str(inventory_dir / "hosts.yml"))
        result = run_playbook(lab, "playbooks/lab_seafile_prepare.yml")
        assert result.returncode == 0, result.stdout[-3000:]
        yield lab
    finally:
        for name in names.values():
            podman("rm", "-f", "-t", "0", name, check=False)


def run_playbook(lab, playbook, extra_vars=None):
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_SHOW_CUSTOM_STATS="true",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = ["ansible-playbook", "-i", lab["inventory"], os.path.join(TOP, playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    return subprocess.run(cmd, cwd=TOP, env=env, capture_output=True, text=True, timeout=900)


def outcome(result):
    """The backup_runs records and every failure message of a json-callback run."""
    report = json.loads(result.stdout[result.stdout.index("{") :])
    runs = report.get("global_custom_stats", {}).get("backup_runs") or []
    for per_host in report.get("custom_stats", {}).values():
        runs += per_host.get("backup_runs", [])
    failures = [
        str(host_result.get("msg", ""))
        for play in report["plays"]
        for task in play["tasks"]
        for host_result in task["hosts"].values()
        if host_result.get("failed")
    ]
    return runs, " | ".join(failures)


def assert_failed_run(result, lab, expected):
    runs, failures = outcome(result)
    assert result.returncode != 0, "a failed backup must fail the play"
    assert expected in failures, failures
    assert [run["result"] for run in runs] == ["failed"], runs
    assert runs[0]["strategy"] == "seafile_backup_server"
    assert runs[0]["host"] == lab["backup"]
    assert expected in runs[0]["details"]["error"], runs[0]


def test_same_server_id_fails_before_any_change(lab):
    result = run_playbook(
        lab, "playbooks/seafile_backup_server.yml", {"mysql_replication_replica_server_id": 1}
    )
    assert_failed_run(result, lab, "must differ from mysql_replication_replica_server_id")
    assert not file_exists(lab["primary"], SOURCE_CNF)
    assert not file_exists(lab["backup"], REPLICA_CNF)
    assert sql(lab["primary"], "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl'") == "0"


def test_replication_password_differing_on_the_backup_host_fails_before_any_change(lab):
    # the backup host has its own mysql_replication_source_password: the pair disagrees (issue 15, 17)
    inventory = os.path.join(os.path.dirname(lab["inventory"]), "conflicting-password.yml")
    with open(lab["inventory"]) as f:
        text = f.read()
    with canary.open_private(inventory) as f:
        own = f"          mysql_replication_source_password: {OTHER_PW}\n"
        f.write(text.replace(f"        {lab['backup']}:\n", f"        {lab['backup']}:\n{own}"))
    result = run_playbook(dict(lab, inventory=inventory), "playbooks/seafile_backup_server.yml")
    assert_failed_run(result, lab, f"different on the backup server {lab['backup']} than on the source")
    assert OTHER_PW not in result.stdout and "lab-repl-password" not in result.stdout
    assert not file_exists(lab["primary"], SOURCE_CNF)
    assert not file_exists(lab["backup"], REPLICA_CNF)
    assert sql(lab["primary"], "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl'") == "0"


def test_ignored_table_not_db_table_fails_before_any_change(lab):
    result = run_playbook(
        lab,
        "playbooks/seafile_backup_server.yml",
        {"seafile_replication_extra_ignored_tables": ["seahub_db.*", "django_session"]},
    )
    assert_failed_run(result, lab, 'must be written "db.table"')
    assert "django_session" in outcome(result)[1]
    assert not file_exists(lab["primary"], SOURCE_CNF)
    assert not file_exists(lab["backup"], REPLICA_CNF)


def test_unreachable_source_fails_before_the_replica_is_touched(lab):
    # 192.0.2.1 (TEST-NET-1) answers nothing: the backup cannot reach "the source" there.
    result = run_playbook(
        lab, "playbooks/seafile_backup_server.yml", {"seafile_replication_source_address": "192.0.2.1"}
    )
    assert_failed_run(result, lab, "cannot reach MariaDB on the source at 192.0.2.1:3306")
    assert not file_exists(lab["backup"], REPLICA_CNF)
    assert sql(lab["backup"], "SHOW SLAVE STATUS") == ""


def test_dump_failing_half_way_leaves_no_replica_then_next_run_seeds(lab):
    # A view over a dropped table: mysqldump fails when it reaches seahub_db, after ccnet_db and
    # seafile_db were already imported on the backup (partial data).
    sql(
        lab["primary"],
        "CREATE TABLE seahub_db.zz_gone (id INT) ENGINE=InnoDB; "
        "CREATE VIEW seahub_db.zz_broken AS SELECT id FROM seahub_db.zz_gone; DROP TABLE seahub_db.zz_gone",
    )
    result = run_playbook(lab, "playbooks/seafile_backup_server.yml")
    assert_failed_run(result, lab, "seeding the backup server failed")
    assert sql(lab["backup"], "SELECT COUNT(*) FROM ccnet_db.EmailUser") == "3", (
        "the dump failed half way, after ccnet_db"
    )
    assert sql(lab["backup"], "SHOW SLAVE STATUS") == "", "the replica must not point at partial data"
    assert file_exists(lab["backup"], "/etc/mysql/mariadb.conf.d/71-replication-seeding.cnf"), (
        "skip-slave-start stays while the replica holds a partial seed"
    )

    sql(lab["primary"], "DROP VIEW seahub_db.zz_broken")
    result = run_playbook(lab, "playbooks/seafile_backup_server.yml")
    runs, failures = outcome(result)
    assert result.returncode == 0, failures
    assert [run["result"] for run in runs] == ["ok"], runs
    assert runs[0]["details"]["seeded"] in (True, "True", "true")
    assert runs[0]["details"]["tables_compared"] in (12, "12")
    assert not file_exists(lab["backup"], "/etc/mysql/mariadb.conf.d/71-replication-seeding.cnf")
    status = sql(
        lab["backup"], "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'system user'"
    )
    assert int(status) >= 1, "replication threads run"


def test_rotated_replication_password_reaches_the_replica(lab):
    # Brings the pair up if this test runs alone (after the test above it already replicates: a
    # re-run would be a no-op costing a whole playbook run)
    threads = sql(lab["backup"],
                  "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'system user'")
    if int(threads) == 0:
        result = run_playbook(lab, "playbooks/seafile_backup_server.yml")
        assert result.returncode == 0, outcome(result)[1]

    result = run_playbook(
        lab, "playbooks/seafile_backup_server.yml", {"mysql_replication_source_password": ROTATED_PW}
    )
    runs, failures = outcome(result)
    assert result.returncode == 0, failures
    assert runs[0]["result"] == "ok" and runs[0]["details"]["seeded"] in (False, "False", "false"), runs
    # The replica reconnected with the new password (STOP/START) and still applies new writes.
    sql(
        lab["primary"],
        "INSERT INTO ccnet_db.UserRole (email, role) VALUES ('rotated@example.org', 'default')",
    )
    for _ in range(60):
        if (
            sql(lab["backup"], "SELECT COUNT(*) FROM ccnet_db.UserRole WHERE email = 'rotated@example.org'")
            == "1"
        ):
            break
        time.sleep(1)
    else:
        pytest.fail("a row written on the primary after the rotation never reached the backup")


def test_physical_seed_replaces_the_backup_servers_data_then_replicates(lab):
    """seafile_replication_seed_method=physical: the backup server (re-)seeded from a real mariadb-backup
    stream of the primary. The stream's transport is a lab stand-in: socat on the primary runs
    mariadb-backup for each connection (in production: ssh with a key limited to that command), and the
    backup server's stream command connects to it."""
    primary_ip = podman("inspect", "-f", "{{.NetworkSettings.IPAddress}}", lab["primary"]).stdout.strip()
    podman("exec", "-d", lab["primary"], "socat", "TCP-LISTEN:4444,reuseaddr,fork",
           "SYSTEM:mariadb-backup --backup --stream=xbstream --user=root 2>>/tmp/stream.err")
    # the backup server forgets its source (a new one, or one whose binlog is gone); it has data of its own
    sql(lab["backup"], "STOP SLAVE")
    sql(lab["backup"], "RESET SLAVE ALL")
    sql(lab["backup"], "CREATE DATABASE IF NOT EXISTS backup_local_only")
    assert int(sql(lab["primary"], "SELECT COUNT(*) FROM seahub_db.django_session")) >= 1
    result = run_playbook(lab, "playbooks/seafile_backup_server.yml", {
        "seafile_replication_seed_method": "physical",
        "seafile_replication_seed_stream_command": ["socat", "-u", f"TCP:{primary_ip}:4444", "STDOUT"]})
    runs, failures = outcome(result)
    assert result.returncode == 0, failures
    assert runs[0]["result"] == "ok" and runs[0]["details"]["consistency"] == "physical", runs
    assert runs[0]["coordinates"]["file"].startswith("mysql-bin.") and int(runs[0]["size_bytes"]) > 0
    # the copy replaced the backup server's data; the tables Seafile does not replicate are empty there
    assert sql(lab["backup"], "SHOW DATABASES LIKE 'backup_local_only'") == ""
    assert sql(lab["backup"], "SELECT COUNT(*) FROM seahub_db.django_session") == "0"
    assert sql(lab["backup"], "SELECT COUNT(*) FROM seafile_db.RepoOwner") == sql(
        lab["primary"], "SELECT COUNT(*) FROM seafile_db.RepoOwner")
    # the set-aside data is removed once the copy replicates and compares equal
    left = podman("exec", lab["backup"], "sh", "-c", "ls -a /var/lib/mysql").stdout.split()
    assert not [e for e in left if e.startswith((".pre-restore", ".restore-staging"))], left
    # and it replicates: a row written on the primary arrives
    sql(lab["primary"], "INSERT INTO ccnet_db.UserRole (email, role) VALUES ('phys@example.org', 'default')")
    arrived = "SELECT COUNT(*) FROM ccnet_db.UserRole WHERE email = 'phys@example.org'"
    for _ in range(60):
        if sql(lab["backup"], arrived) == "1":
            break
        time.sleep(1)
    else:
        pytest.fail("a row written on the primary after the physical seed never reached the backup")
    # a second run with the same settings: the pair replicates, so nothing is seeded or swapped again
    again = run_playbook(lab, "playbooks/seafile_backup_server.yml", {
        "seafile_replication_seed_method": "physical",
        "seafile_replication_seed_stream_command": ["socat", "-u", f"TCP:{primary_ip}:4444", "STDOUT"]})
    runs, failures = outcome(again)
    assert again.returncode == 0, failures
    assert runs[0]["details"]["seeded"] in (False, "False", "false"), runs
    assert sql(lab["backup"], arrived) == "1"
