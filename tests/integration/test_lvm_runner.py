"""The LVM snapshot backup the way AWX runs it: ansible-runner with a private data dir (inventory,
env/extravars with the MySQL credential as AWX's credential injection passes it, env/envvars),
playbooks/run_backup.yml with backup_strategy=lvm_snapshot_backup, against real LVM in the lab VM
(scripts/lab/lvm-vm.sh, booted once for the test session: the lab_vm fixture). The copy from the
snapshots runs as an async job followed with progress lines (roles/lvm_snapshot_backup/tasks/copy.yml).
Several minutes under TCG: LVM_VM_TESTS=0 skips it.
"""

import json
import os
import re
import sys

import ansible_runner
import pytest
import yaml
from ansible.module_utils.progress import human_bytes

from tests.lib import canary
from tests.lib.lvm_vm import fill_file, ssh

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
DB_PASSWORD = canary.canary("lvm-runner-pw")  # the AWX credential's password: never in stdout or events

SETTINGS = {
    "backup_strategy": "lvm_snapshot_backup",
    "lvm_snapshot_backup_volumes": [
        {"vg": "vgdata", "lv": "mysql", "size": "25%", "label": "mysql"},
        {"vg": "vgdata", "lv": "app", "label": "app"},
    ],
    "lvm_snapshot_backup_dest": "/srv/backup/lvm",
    "lvm_snapshot_backup_keep": 3,
    "lvm_snapshot_backup_app_services": ["lab-app"],
    "lvm_snapshot_backup_poll_interval": 0.5,
    "lvm_snapshot_backup_progress_interval": 2,
    # as the MySQL credential type injects them (extra vars)
    "lvm_snapshot_backup_mysql_login_user": "lvmbackup",
    "lvm_snapshot_backup_mysql_login_password": DB_PASSWORD,
}

pytestmark = [pytest.mark.slow, pytest.mark.vm]
BIG_MIB = 60  # the application's extra data: the copy lasts several progress lines under TCG


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_vm):
    path = os.environ["PATH"]
    os.environ["PATH"] = BIN + os.pathsep + path  # the ansible-playbook ansible-runner starts
    try:
        # a backup account with the privileges the README lists, and a password (AWX credential)
        ssh(
            "mariadb -e \"CREATE USER lvmbackup@localhost IDENTIFIED BY '" + DB_PASSWORD + "'; "
            'GRANT RELOAD, PROCESS, BINLOG MONITOR ON *.* TO lvmbackup@localhost"'
        )
        # enough data for the copy to last a few progress lines under TCG
        fill_file("/srv/app/big.bin", BIG_MIB)
        with open(lab_vm) as f:
            hosts = f.read()
        yield {"hosts": hosts, "base": tmp_path_factory.mktemp("lvmrunner")}
    finally:
        os.environ["PATH"] = path
        ssh("rm -f /srv/app/big.bin; mariadb -e 'DROP USER IF EXISTS lvmbackup@localhost'", check=False)


def run_job(lab, name, extra=None):
    pdd = lab["base"] / name
    (pdd / "env").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    canary.write_private(pdd / "inventory" / "hosts.yml", lab["hosts"])
    canary.write_private(pdd / "env" / "extravars", yaml.safe_dump({**SETTINGS, **(extra or {})}))
    canary.write_private(pdd / "env" / "envvars", yaml.safe_dump({
        "ANSIBLE_CONFIG": os.path.join(TOP, "ansible.cfg"),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(TOP, "plugins", "callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "backup_report",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "PATH": BIN + os.pathsep + os.environ["PATH"],
    }))
    result = ansible_runner.run(private_data_dir=str(pdd), project_dir=TOP,
                                playbook="playbooks/run_backup.yml", quiet=True, timeout=1800)
    result.pdd = pdd
    result.text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout.read())  # runner's output is coloured
    result.all_events = list(result.events)
    return result


def backup_runs(result):
    for event in result.all_events:
        if event.get("event") == "playbook_on_stats":
            return (event["event_data"].get("artifact_data") or {}).get("backup_runs", [])
    raise AssertionError("no playbook_on_stats event")


def progress_reports(result):
    """The progress dicts the poll loop returned, in order (one per line printed)."""
    return [e["event_data"]["res"].get("progress") for e in result.all_events
            if e.get("event") == "runner_item_on_ok" and "progress" in e["event_data"].get("res", {})
            and e["event_data"].get("task", "").startswith("Progress of")]


def secret_in_job_output(result, secret):
    """Job stdout and events holding the secret (env/extravars is the input, as with AWX)."""
    found = []
    for dirpath, _, files in os.walk(result.pdd / "artifacts"):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as handle:
                if secret.encode() in handle.read():
                    found.append(os.path.relpath(os.path.join(dirpath, name), result.pdd))
    return found


def backups():
    return sorted(ssh("ls /srv/backup/lvm | grep -E '^[0-9]{8}T[0-9]{6}Z$' || true").split())


def assert_clean():
    """No snapshot, mount, partial copy, progress directory or copy process left; production runs."""
    assert ssh("lvs --noheadings -o lv_name vgdata | grep -c backup-snap || true") == "0"
    assert ssh("grep -c /run/lvm-snapshot-backup /proc/mounts || true") == "0"
    assert ssh("ls -a /srv/backup/lvm | grep -c '^.partial-' || true") == "0"
    assert ssh("ls -d /tmp/lvm-copy-progress.* 2>/dev/null | wc -l") == "0"
    assert ssh("pgrep -c -x rsync || true") == "0"
    assert ssh("systemctl is-active lab-app mariadb lab-writer").split() == ["active"] * 3


def test_job_succeeds_with_progress_lines_and_backup_runs(lab):
    before = backups()
    result = run_job(lab, "ok")
    assert result.status == "successful" and result.rc == 0, result.text[-5000:]
    [run] = backup_runs(result)
    assert run["strategy"] == "lvm_snapshot_backup" and run["result"] == "ok" and run["host"] == "lvmlab"
    assert run["location"].startswith("/srv/backup/lvm/") and run["size_bytes"] > BIG_MIB * 1024 * 1024
    assert float(run["lock_seconds"]) > 0 and run["coordinates"]["gtid"]
    name = os.path.basename(run["location"])
    assert backups() == (before + [name])[-SETTINGS["lvm_snapshot_backup_keep"]:]
    ssh(f"cd /srv/backup/lvm/{name} && sha256sum -c --quiet MANIFEST.sha256")
    metadata = json.loads(ssh(f"cat /srv/backup/lvm/{name}/metadata.json"))
    copied = sum(copy["bytes"] for copy in metadata["copies"])

    # the progress lines: bytes copied against the total measured on the snapshots before the copy
    lines = re.findall(r"\(item=(copy from the snapshots.*?)\)$", result.text, re.M)
    with_bytes = r"copy from the snapshots, [\d.]+ \w+ / [\d.]+ \w+ \(\d+%\)"
    assert any(re.match(with_bytes, line) for line in lines), result.text[-5000:]
    reports = [r for r in progress_reports(result) if r]
    copy = [r for r in reports if r["step"] == "copy from the snapshots"]
    assert copy and {r["total_bytes"] for r in copy} == {copied}, (copy, copied)
    assert f"/ {human_bytes(copied)} (" in "\n".join(lines)
    done = [r["done_bytes"] for r in copy]
    assert done == sorted(done)
    assert reports[-1]["state"] == "done" and reports[-1]["step"] == "checksums of the copy", reports[-1]
    assert reports[-1]["done_bytes"] == reports[-1]["total_bytes"] == metadata["size_bytes"]
    # the async job's result file was cleaned up, the report callback saw the run
    assert ssh("ls ~/.ansible_async 2>/dev/null | wc -l") == "0"
    assert "BACKUP REPORT" in result.text
    assert secret_in_job_output(result, DB_PASSWORD) == []
    assert_clean()
    lab["good"] = name


def test_copy_past_its_timeout_fails_the_job_and_leaves_nothing(lab):
    """A fault half way through the copy: the copy outlives lvm_snapshot_backup_copy_timeout. The module
    stops it (rsync and its forks), unmounts, removes the partial copy; the play removes the snapshots
    and the job fails with a failed run in backup_runs; the earlier backup stays untouched."""
    before = backups()
    result = run_job(lab, "timeout", {"lvm_snapshot_backup_copy_timeout": 2})
    assert result.status == "failed" and result.rc != 0, result.text[-5000:]
    assert "did not finish within the time limit of 2 s (timeout)" in result.text, result.text[-5000:]
    assert "LVM snapshot backup FAILED" in result.text
    [run] = backup_runs(result)
    assert run["result"] == "failed" and "time limit" in run["details"], run
    last = [r for r in progress_reports(result) if r][-1:]
    assert not last or last[0]["state"] in ("running", "failed"), last
    assert backups() == before
    if lab.get("good"):
        ssh(f"cd /srv/backup/lvm/{lab['good']} && sha256sum -c --quiet MANIFEST.sha256")
    assert_clean()


def test_bad_variable_is_refused_before_anything(lab):
    result = run_job(lab, "bad", {"lvm_snapshot_backup_copy_timeout": 0})
    assert result.status == "failed" and result.rc != 0
    assert "copy_timeout and progress_interval must be positive" in result.text, result.text[-3000:]
    assert "TASK [Steps 1-5" not in result.text  # refused before the application was touched
    assert_clean()
