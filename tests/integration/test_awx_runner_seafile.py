"""seafile_backup_server under ansible-runner, the way AWX runs it: two lab containers (primary
with sample Seafile data, empty backup), run_backup.yml with backup_strategy=seafile_backup_server,
the replication password coming from the inventory's group_vars. Skipped without root, podman and
the lab image; the containers are removed at the end (also on failure)."""
import os
import shutil
import subprocess
import sys
import uuid

import ansible_runner
import pytest
import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
IMAGE = "localhost/backup-lab:latest"


def _podman_ready():
    if os.geteuid() != 0 or not shutil.which("podman"):
        return False
    return subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode == 0


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _podman_ready(), reason="needs root, podman and the lab image " + IMAGE)]


def podman(*args, check=True):
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True)


def test_seafile_backup_server_job_seeds_and_replicates(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ["PATH"])
    suffix = uuid.uuid4().hex[:6]
    primary, backup = f"awx-sf-primary-{suffix}", f"awx-sf-backup-{suffix}"
    pdd = tmp_path / "pdd"
    (pdd / "env").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    os.symlink(os.path.join(TOP, "inventories", "lab", "group_vars"), pdd / "inventory" / "group_vars")
    conn = {"ansible_connection": "lab_podman",
            "ansible_python_interpreter": "/usr/bin/python3"}
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "mysql_primary": {"hosts": {primary: None}, "vars": conn},
        "mysql_backup": {"hosts": {backup: None}, "vars": conn}}}}))
    (pdd / "env" / "extravars").write_text(yaml.safe_dump({"backup_strategy": "seafile_backup_server"}))
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({"ANSIBLE_CONFIG": os.path.join(TOP, "ansible.cfg"),
                                                         "PATH": os.environ["PATH"]}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    try:
        for name in (primary, backup):
            podman("run", "-d", "--init", "--name", name, "--hostname", name, IMAGE, "sleep", "infinity")
        prepare = subprocess.run(
            [os.path.join(BIN, "ansible-playbook"), "-i", str(pdd / "inventory" / "hosts.yml"),
             os.path.join(TOP, "playbooks", "lab_seafile_prepare.yml")],
            cwd=TOP, env=env, capture_output=True, text=True, check=False, timeout=900)
        assert prepare.returncode == 0, prepare.stdout[-3000:]
        result = ansible_runner.run(private_data_dir=str(pdd), project_dir=TOP,
                                    playbook="playbooks/run_backup.yml", quiet=True)
        text = result.stdout.read()
        assert result.status == "successful" and result.rc == 0, text[-4000:]
        stats = next(e for e in result.events if e.get("event") == "playbook_on_stats")
        runs = stats["event_data"]["artifact_data"]["backup_runs"]
        assert [(run["strategy"], run["result"]) for run in runs] == [("seafile_backup_server", "ok")], runs
        assert runs[0]["host"] == backup
        threads = podman("exec", backup, "mariadb", "-N", "-B", "-e",
                         "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'system user'")
        assert int(threads.stdout.strip()) >= 1, "replication threads run on the backup server"
        assert "lab-repl-password" not in text
    finally:
        for name in (primary, backup):
            podman("rm", "-f", "-t", "0", name, check=False)
