"""A MariaDB Galera cluster as the Seafile primary (Seafile's own note for clusters), for real: three
Galera nodes and a backup server in lab containers, built by playbooks/lab_galera_prepare.yml.

In the order an operator meets it:
- a node that is not synced: seafile_backup_server.yml refuses before anything changes;
- the cluster whole: the play gives every node the binary log, log_slave_updates and wsrep_gtid_mode
  (one node restarted at a time, the cluster Primary throughout), seeds the backup server from the
  chosen node, and writes made on every node reach the backup server; a second run changes nothing;
- the source node stops: the cluster is short of a node, the play refuses to run; the backup server is
  re-pointed to another node by GTID without a re-seed (seafile_replication_repoint.yml), later writes
  on the remaining nodes arrive, CHECKSUM TABLE equal;
- a node alone in a non-Primary component: refused.

Needs root, podman and the lab image (scripts/lab/build-image.sh); skipped otherwise. Four small
containers, removed at the end (also on failure).
"""

import json
import os
import subprocess
import time
import uuid

import pytest

from tests.lib import canary
from tests.lib.lab_containers import IMAGE, podman, podman_ready, sql

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_CNF = "/etc/mysql/mariadb.conf.d/70-replication-source.cnf"
REPLICA_CNF = "/etc/mysql/mariadb.conf.d/70-replication-replica.cnf"
GALERA = {"seafile_replication_galera": True}

pytestmark = pytest.mark.skipif(not podman_ready(), reason="needs root, podman and the lab image " + IMAGE)


def address(container):
    return podman("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container).stdout.strip()


def run_playbook(lab, playbook, extra_vars=None):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_NOCOLOR="1")
    cmd = ["ansible-playbook", "-i", lab["inventory"], os.path.join(TOP, "playbooks", playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, cwd=TOP, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc


def tasks(proc):
    """{task name: {host: result}} of a json-callback run: a task met again (serial batches, two plays)
    adds its hosts; a role's task is named without the role's prefix."""
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    found = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            found.setdefault(task["task"]["name"].split(" : ", 1)[-1], {}).update(task["hosts"])
    return found


def failures(proc):
    return " | ".join(str(r.get("msg", "")) for hosts in tasks(proc).values() for r in hosts.values()
                      if r.get("failed"))


def changed(proc):
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    return sum(s.get("changed", 0) for s in report["stats"].values())


def write(node, i):
    sql(node, "INSERT INTO seahub_db.profile_profile (user, nickname, intro, lang_code) "
              f"VALUES ('galera{i}@example.com', 'n{i}', '', 'en')")


def wait_rows(container, table, expected, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = sql(container, f"SELECT COUNT(*) FROM {table}", check=False)
        if got == str(expected) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    suffix = uuid.uuid4().hex[:6]
    nodes = [f"galera-it-{i}-{suffix}" for i in (1, 2, 3)]
    backup = f"galera-it-backup-{suffix}"
    inventory = tmp_path_factory.mktemp("galera-inventory")
    os.symlink(os.path.join(TOP, "inventories", "lab", "group_vars"), inventory / "group_vars")
    conn = "ansible_connection: lab_podman\n        ansible_python_interpreter: /usr/bin/python3"
    canary.write_private(
        inventory / "hosts.yml",
        "all:\n  children:\n"
        "    mysql_primary:\n      hosts:\n" + "".join(f"        {n}:\n" for n in nodes)
        + f"      vars:\n        {conn}\n"
        f"    mysql_backup:\n      hosts:\n        {backup}:\n      vars:\n        {conn}\n",
    )
    try:
        for name in nodes + [backup]:
            podman("run", "-d", "--init", "--name", name, "--hostname", name, IMAGE, "sleep", "infinity")
        lab = dict(nodes=nodes, backup=backup, inventory=str(inventory / "hosts.yml"))
        prepared = run_playbook(lab, "lab_galera_prepare.yml")
        assert prepared.returncode == 0, prepared.stdout[-3000:]
        yield lab
    finally:
        for name in nodes + [backup]:
            podman("rm", "-f", "-t", "0", name, check=False)


def test_a_node_not_synced_is_refused_before_anything_changes(lab):
    node3 = lab["nodes"][2]
    sql(node3, "SET GLOBAL wsrep_desync = ON")
    try:
        proc = run_playbook(lab, "seafile_backup_server.yml", GALERA)
    finally:
        sql(node3, "SET GLOBAL wsrep_desync = OFF")
    assert proc.returncode != 0
    refused = failures(proc)
    assert "the node is not synced (wsrep_local_state_comment Donor/Desynced)" in refused, refused
    assert "nothing was changed" in failures(proc)
    for node in lab["nodes"]:
        assert podman("exec", node, "test", "-e", SOURCE_CNF, check=False).returncode != 0, node
    assert podman("exec", lab["backup"], "test", "-e", REPLICA_CNF, check=False).returncode != 0
    assert sql(lab["nodes"][0], "SELECT @@log_bin") == "0"
    assert sql(lab["nodes"][0], "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl'") == "0"


def test_seeded_from_one_node_writes_on_every_node_arrive_then_repointed_without_a_reseed(lab):
    node1, node2, node3 = lab["nodes"]
    backup = lab["backup"]
    first = run_playbook(lab, "seafile_backup_server.yml", GALERA)
    assert first.returncode == 0, failures(first) or first.stdout[-3000:]
    ran = tasks(first)
    restarts = ran["Configure the source | Galera - restart this node for the new settings"]
    assert sorted(restarts) == sorted(lab["nodes"]) and all(r.get("changed") for r in restarts.values())
    # every node: binary log, log_slave_updates, wsrep GTID mode, the same server_id, its own local domain
    settings = [sql(n, "SELECT @@log_bin, @@log_slave_updates, @@wsrep_gtid_mode, @@server_id, "
                       "@@gtid_domain_id, @@wsrep_gtid_domain_id") for n in lab["nodes"]]
    assert settings == ["1\t1\t1\t1\t1\t0", "1\t1\t1\t1\t2\t0", "1\t1\t1\t1\t3\t0"], settings
    # the replication user, created on the source, is on every node (Galera replicates it)
    assert [sql(n, "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl'") for n in lab["nodes"]] == ["1"] * 3
    assert address(node1) in sql(backup, "SHOW SLAVE STATUS\\G")

    # writes made on every node arrive at the backup server through node1
    before = int(sql(node1, "SELECT COUNT(*) FROM seahub_db.profile_profile"))
    for i, node in enumerate(lab["nodes"]):
        write(node, i)
    assert wait_rows(backup, "seahub_db.profile_profile", before + 3) == str(before + 3)

    again = run_playbook(lab, "seafile_backup_server.yml", GALERA)
    assert again.returncode == 0, failures(again)
    assert changed(again) == 0, [
        name for name, hosts in tasks(again).items() if any(r.get("changed") for r in hosts.values())]

    # the source node goes away: the cluster is short of a node, the play refuses to run
    podman("exec", node1, "/etc/init.d/mariadb", "stop")
    short = run_playbook(lab, "seafile_backup_server.yml",
                         dict(GALERA, seafile_replication_source_host=node2))
    assert short.returncode != 0
    assert "the cluster has 2 node(s), 3 expected: a node is missing" in failures(short), failures(short)

    # the backup server moves to node2 by GTID, no re-seed
    seeded_rows = sql(backup, "SELECT COUNT(*) FROM seahub_db.profile_profile")
    moved = run_playbook(lab, "seafile_replication_repoint.yml",
                         {"seafile_replication_repoint_source_address": address(node2),
                          "seafile_replication_repoint_confirm": backup})
    assert moved.returncode == 0, failures(moved) or moved.stdout[-3000:]
    assert address(node2) in sql(backup, "SHOW SLAVE STATUS\\G")
    assert sql(backup, "SELECT COUNT(*) FROM seahub_db.profile_profile") == seeded_rows
    for i, node in enumerate((node2, node3), start=3):
        write(node, i)
    assert wait_rows(backup, "seahub_db.profile_profile", before + 5) == str(before + 5)
    checksums = [sql(h, "CHECKSUM TABLE seahub_db.profile_profile, seafile_db.RepoOwner, ccnet_db.EmailUser")
                 for h in (node2, backup)]
    assert checksums[0] == checksums[1], checksums


def test_a_node_alone_in_a_non_primary_component_is_refused(lab):
    node1, node2, node3 = lab["nodes"]
    # node1 left cleanly in the test before; node2 now dies: node3 is alone, without quorum
    podman("exec", node2, "sh", "-c", "kill -9 $(cat /run/mysqld/mysqld.pid)")
    deadline = time.monotonic() + 60
    while sql(node3, "SHOW STATUS LIKE 'wsrep_cluster_status'", check=False).split("\t")[-1] == "Primary":
        assert time.monotonic() < deadline, "node3 still Primary after its peer died"
        time.sleep(1)
    proc = run_playbook(lab, "seafile_backup_server.yml", dict(GALERA, seafile_replication_source_host=node3))
    assert proc.returncode != 0
    assert "the node is in a non-Primary component" in failures(proc), failures(proc)
