"""playbooks/restore_drill.yml through run_backup.yml (backup_strategy=restore_drill, as AWX and
backup_schedules.yml run it), ansible-playbook with a local connection: real btw backups (an
rdiff-backup chain, tar archives, a mysqldump of a real MariaDB started once for the module), the
newest good backup of each set restored into scratch places and proven, one backup_runs record per
host with RPO and RTO, the metrics file; a corrupted newest good backup fails the drill naming the
backup and the check."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils import btw_db, btw_fs
from ansible.module_utils.btw_retention import shrink_guard

from tests.lib.mariadb import MariaDB

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fs_backup(root, name, kind, source):
    """One run of the fs_backup module's core, with its shrink guard record (.btw-runs.json)."""
    result = btw_fs.fs_backup(name, source, root, f"fs/{name}", kind)
    verdict = shrink_guard(result["destination"], result.get("location"), result["figures"],
                           result["stored"], 0.4)
    return result["location"], verdict["status"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("restore-drill")
    server = MariaDB(base / "db", 1)
    try:
        server.start()
        server.sql("CREATE DATABASE shop")
        server.sql("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB")
        server.sql("CREATE TABLE shop.orders (id INT PRIMARY KEY) ENGINE=InnoDB")
        server.sql("INSERT INTO shop.items VALUES (1, 'backed up')")
        root = base / "root"
        root.mkdir()
        src = base / "src"
        (src / "d").mkdir(parents=True)
        for index in range(5):
            (src / "d" / f"f{index}.txt").write_text(f"file {index}\n" * (index + 1))
        etc, _ = fs_backup(str(root), "etc", "rdiff", str(src))
        good_tar, status = fs_backup(str(root), "arch", "tar", str(src))
        assert status == "good"
        for index in range(1, 5):  # the source loses 4 of its 5 files: the next archive is suspect
            (src / "d" / f"f{index}.txt").unlink()
        suspect_tar, status = fs_backup(str(root), "arch", "tar", str(src))
        assert status == "suspect" and suspect_tar != good_tar
        dump = btw_db.db_backup("shop", "mysqldump", str(root), "db/shop", "shop", server.tcp)
        sets = [{"name": "etc", "type": "rdiff", "source": str(src), "destination": "fs/etc"},
                {"name": "arch", "type": "tar", "source": str(src), "destination": "fs/arch"},
                {"name": "shop", "type": "mysqldump", "database": "shop", "destination": "db/shop",
                 "connection": server.tcp}]
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "ansible_become": False, "btw_backup_root": str(root), "btw_backup_sets": sets,
                "restore_drill_scratch_dir": str(base / "scratch")}
        (base / "scratch").mkdir()
        (base / "metrics").mkdir()
        inventory = base / "inventory.yml"
        inventory.write_text(
            yaml.safe_dump({"all": {"children": {"backup_hosts": {"hosts": {"localhost": host}}}}}))
        yield {"server": server, "base": base, "inventory": str(inventory), "root": root, "etc": etc,
               "good_tar": good_tar, "suspect_tar": suspect_tar, "dump": dump["location"]}
    finally:
        server.stop()


def run_drill(site):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_SHOW_CUSTOM_STATS="1", ANSIBLE_LOCAL_TEMP=str(site["base"] / "ansible-tmp"))
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", site["inventory"],
         os.path.join(TOP, "playbooks", "run_backup.yml"), "-e", "backup_strategy=restore_drill",
         "-e", f"backup_metrics_dir={site['base'] / 'metrics'}"],
        cwd=TOP, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    runs = out.get("custom_stats", {}).get("_run", {}).get("backup_runs") or out.get(
        "global_custom_stats", {}).get("backup_runs", [])
    return proc.returncode, runs, proc.stdout + proc.stderr


def scratch_left(site):
    databases = [row[0] for row in site["server"].sql("SHOW DATABASES")]
    return os.listdir(site["base"] / "scratch"), [d for d in databases if d.startswith("restore_drill_")]


def test_drill_proves_the_newest_good_backups_and_publishes_rpo_rto_and_metrics(site):
    rc, runs, out = run_drill(site)
    assert rc == 0, out[-3000:]
    assert len(runs) == 1, runs  # one record per host
    run = runs[0]
    assert (run["strategy"], run["mode"], run["host"]) == ("restore_drill", "btw", "localhost")
    assert run["result"] == "ok"
    used = {b["set"]: b["backup"] for b in run["details"]["backups"]}
    # the suspect archive (4 of 5 files gone) is passed over for the good one before it
    assert used == {"etc": f"fs/etc/{os.path.basename(site['etc'])}",
                    "arch": f"fs/arch/{os.path.basename(site['good_tar'])}",
                    "shop": f"db/shop/{os.path.basename(site['dump'])}"}
    assert run["backup_age_seconds"] > 0 and run["restore_seconds"] > 0
    assert run["duration_seconds"] == run["restore_seconds"]
    checked = {(c["backup"].split("/")[1], c["check"]): (c["expected"], c["found"], c["ok"])
               for c in run["details"]["checked"]}
    assert checked[("arch", "files")] == (5, 5, True)
    assert checked[("etc", "files")] == (5, 5, True) and checked[("etc", "bytes")][2]
    assert checked[("shop", "dump objects")] == (2, 2, True)
    assert scratch_left(site) == ([], [])  # scratch directory and scratch database removed
    with open(site["base"] / "metrics" / "backup_toolkit.prom") as handle:
        metrics = handle.read()
    labels = '{strategy="restore_drill",set="btw/localhost"}'
    for name in ("last_success_timestamp_seconds", "last_restore_seconds", "last_backup_age_seconds"):
        assert f"backup_{name}{labels}" in metrics, metrics
    assert f"backup_last_result{labels} 1" in metrics


def test_a_corrupted_newest_good_backup_fails_the_drill_naming_backup_and_check(site):
    # the good archive loses a member (still a readable tar): the copy no longer holds what the
    # backup recorded
    subprocess.run(["tar", "--delete", "-f", site["good_tar"], "./d/f3.txt"], check=True)
    rc, runs, out = run_drill(site)
    assert rc != 0
    assert len(runs) == 1 and runs[0]["result"] == "failed", runs
    backup = f"fs/arch/{os.path.basename(site['good_tar'])}"
    message = f"backup {backup} failed the check files: expected 5, found 4"
    assert message in runs[0]["details"]["failed"]
    assert message in out  # the job's failure names them too
    assert scratch_left(site) == ([], [])
    with open(site["base"] / "metrics" / "backup_toolkit.prom") as handle:
        metrics = handle.read()
    assert 'backup_last_result{strategy="restore_drill",set="btw/localhost"} 0' in metrics
