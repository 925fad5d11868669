"""Faults of the LVM snapshot backup, proven on real LVM in the lab VM (scripts/lab/lvm-vm.sh).

Each fault runs playbooks/lvm_snapshot_backup.yml against the VM and must give a clear error, a
failed play, and leave no snapshot, no mount, no lock and no partial copy behind, the previous good
backup untouched and the application running. Several minutes under TCG: set LVM_VM_TESTS=0 to skip.
"""

import json
import os
import re
import subprocess
import time

import pytest
import yaml

from tests.lib import canary
from tests.lib.lvm_vm import fill_file, ssh, ssh_result

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(TOP, "playbooks", "lvm_snapshot_backup.yml")

SETTINGS = {
    "lvm_snapshot_backup_volumes": [
        {"vg": "vgdata", "lv": "mysql", "size": "25%", "label": "mysql"},
        {"vg": "vgdata", "lv": "app", "label": "app"},
    ],
    "lvm_snapshot_backup_dest": "/srv/backup/lvm",
    "lvm_snapshot_backup_keep": 3,
    "lvm_snapshot_backup_app_services": ["lab-app"],
    "lvm_snapshot_backup_poll_interval": 0.5,
}

pytestmark = [pytest.mark.slow, pytest.mark.vm]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_vm):
    """The faults need a good backup in place that they must leave untouched. A complete backup that
    an earlier module of the session published (test_lvm_runner's job) serves, once its manifest
    checks; only when there is none does this module make one (a full run is minutes under TCG)."""
    base = tmp_path_factory.mktemp("lvmvm")
    settings = base / "settings.json"
    canary.write_private(settings, json.dumps(SETTINGS))
    lab = {"inventory": lab_vm, "settings": str(settings), "base": base}
    before = backups()
    check = f"cd /srv/backup/lvm/{before[-1]} && sha256sum -c --quiet MANIFEST.sha256" if before else "false"
    if ssh_result(check).returncode:
        rc, out = run_backup(lab)
        assert rc == 0, out
        assert backups()[-1] not in before, (before, backups())
    lab["good"] = backups()
    return lab


def run_backup(lab, extra=None, background=False, check=False):
    cmd = ["ansible-playbook", "-i", lab["inventory"], PLAYBOOK, "-e", f"@{lab['settings']}"]
    if check:
        cmd.append("--check")
    if extra:
        cmd += ["-e", json.dumps(extra)]
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
    )
    if background:
        return subprocess.Popen(
            cmd, cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    proc = subprocess.run(cmd, cwd=TOP, env=env, capture_output=True, text=True, timeout=1200)
    return proc.returncode, proc.stdout + proc.stderr


def backups():
    return sorted(ssh("ls /srv/backup/lvm | grep -E '^[0-9]{8}T[0-9]{6}Z$' || true").split())


def assert_clean(lab):
    """Nothing left behind, the good backup intact, production running and writable."""
    assert ssh("lvs --noheadings -o lv_name vgdata | grep -c backup-snap || true") == "0"
    assert ssh("grep -c /run/lvm-snapshot-backup /proc/mounts || true") == "0"
    assert ssh("ls -a /srv/backup/lvm | grep -c '^.partial-' || true") == "0"
    assert backups()[: len(lab["good"])] == lab["good"]
    ssh(f"cd /srv/backup/lvm/{lab['good'][-1]} && sha256sum -c --quiet MANIFEST.sha256")
    assert ssh("systemctl is-active lab-app mariadb lab-writer").split() == ["active"] * 3
    # no read lock left: a write goes through at once
    ssh("mariadb -e 'SET SESSION lock_wait_timeout=3; INSERT INTO app.settings VALUES (UUID_SHORT(), 1)'")


# Each bad input with the message that must refuse it. One playbook run covers them all: one
# inventory alias of the VM per case, the case's variables as that alias's host vars (five runs of
# the playbook cost minutes under TCG; the refusals are independent and read-only). The run is made
# while a filler LV leaves 100 MiB free in the VG: the snapshot of "no-room" (25% of the 700 MiB
# mysql LV) does not fit, the other cases ask for 10M snapshots that do, so each is refused for its
# own reason.
SMALL = [
    {"vg": "vgdata", "lv": "mysql", "size": "10M", "label": "mysql"},
    {"vg": "vgdata", "lv": "app", "label": "app"},
]
BAD_INPUT = {
    "unknown-vg": (
        {"lvm_snapshot_backup_volumes": [{"vg": "nope", "lv": "mysql", "size": "10%"}]},
        "volume group 'nope' not found",
    ),
    "unknown-lv": (
        {"lvm_snapshot_backup_volumes": [{"vg": "vgdata", "lv": "nope", "size": "10%"}]},
        "logical volume vgdata/nope not found",
    ),
    "dest-on-origin": (
        {"lvm_snapshot_backup_volumes": SMALL, "lvm_snapshot_backup_dest": "/srv/mysql/backups"},
        "is on /dev/vgdata/mysql, one of the volumes being backed up",
    ),
    "mysql-unreachable": (
        {"lvm_snapshot_backup_volumes": SMALL,
         "lvm_snapshot_backup_mysql_login_unix_socket": "/run/mysqld/nope.sock"},
        "MySQL unreachable, nothing locked and no snapshot taken",
    ),
    "no-room": ({}, "is more than its free space"),
}


def test_bad_input_is_refused_cleanly(lab):
    with open(lab["inventory"]) as handle:
        [vm_host] = yaml.safe_load(handle)["all"]["children"]["lvm_backup_hosts"]["hosts"].values()
    inventory = lab["base"] / "bad-input.yml"
    canary.write_private(inventory, json.dumps({"all": {"children": {"lvm_backup_hosts": {
        "vars": SETTINGS,  # group vars: the aliases' host vars override them (extra vars would not)
        "hosts": {f"bad-{case}": {**vm_host, **extra} for case, (extra, _) in BAD_INPUT.items()},
    }}}}))
    cmd = ["ansible-playbook", "-i", str(inventory), PLAYBOOK]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="False")
    free = int(ssh("vgs --noheadings --units m --nosuffix -o vg_free vgdata").split(".")[0])
    ssh(f"lvcreate -q -y -L {free - 100}M -n filler vgdata")
    try:
        proc = subprocess.run(cmd, cwd=TOP, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        ssh("lvremove -q -y vgdata/filler")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    # one chunk per printed result: a result spreads over indented lines (result_format yaml)
    chunks = [" ".join(chunk.split()) for chunk in re.split(r"\n(?=\S)", out)]  # long lines wrapped
    for case, (_, message) in BAD_INPUT.items():
        refusals = [chunk for chunk in chunks if chunk.startswith(f"fatal: [bad-{case}]:")]
        assert any(message in chunk for chunk in refusals), (case, refusals or out[-3000:])
        assert any("LVM snapshot backup FAILED" in chunk for chunk in refusals), (case, refusals)
        assert re.search(rf"bad-{case}\s*:.*failed=[1-9]", out), (case, out[-2000:])
    # every case refused while planning, before the application was stopped
    assert "TASK [Steps 1-5: stop the application" not in out
    assert_clean(lab)


def test_check_mode_reports_the_plan_and_changes_nothing(lab):
    started = ssh("systemctl show -p ActiveEnterTimestampMonotonic --value lab-app")
    rc, out = run_backup(lab, check=True)
    assert rc == 0, out[-3000:]
    assert "would stop lab-app, flush and read-lock MySQL (reachable, " in out, out[-3000:]
    assert "/dev/vgdata/mysql-backup-snap (" in out and "/dev/vgdata/app-backup-snap (thin)" in out
    assert "then copy them into /srv/backup/lvm (keeping 3) with rsync" in out
    assert re.search(r"TASK \[Steps 6-7: mount the snapshots[^\n]*\n\s*skipping:", out), out[-3000:]
    # the application was never stopped, nothing was published
    assert ssh("systemctl show -p ActiveEnterTimestampMonotonic --value lab-app") == started
    assert backups() == lab["good"]
    assert_clean(lab)


def wait_for_copy(proc, timeout=600):
    """PID of the rsync copying a snapshot, once it runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = ssh("pgrep -x -n rsync || true")
        if pid:
            return pid
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.3)
    raise AssertionError("the copy never started")


@pytest.fixture(scope="module")
def slow_copy():
    """150 MiB more in the application data, so the copy lasts long enough to interfere with; written
    once for the tests that use it (neither changes it)."""
    fill_file("/srv/app/big.bin", 150)
    yield
    ssh("rm -f /srv/app/big.bin /srv/mysql/filler.bin")


def kill_copy(proc, timeout=600):
    """kill -9 an rsync of the copy. The one found may end before the kill (the small volume's copy
    is quick: run K of 2026-12-03 failed on "No such process"); then the next one running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = wait_for_copy(proc, timeout=max(1, deadline - time.time()))
        if ssh_result(f"kill -9 {pid}").returncode == 0:
            return pid
    raise AssertionError("no copy ran long enough to be killed")


def test_copy_killed_half_way(lab, slow_copy):
    proc = run_backup(lab, background=True)
    kill_copy(proc)
    out = proc.communicate(timeout=1200)[0]
    assert proc.returncode != 0 and "stopped with exit code" in out, out[-3000:]
    assert "backup NOT published" in out
    assert_clean(lab)


def test_snapshot_filling_up_during_the_copy_aborts(lab, slow_copy):
    small = {
        "lvm_snapshot_backup_volumes": [
            {"vg": "vgdata", "lv": "mysql", "size": "8M", "label": "mysql"},
            {"vg": "vgdata", "lv": "app", "label": "app"},
        ],
        "lvm_snapshot_backup_fill_action": "abort",
        "lvm_snapshot_backup_fill_threshold": 50,
    }
    proc = run_backup(lab, small, background=True)
    wait_for_copy(proc)
    # production writes 40 MB to the origin while the snapshot (8 MiB of copy-on-write space) is copied
    fill_file("/srv/mysql/filler.bin", 40, fsync=True)
    out = proc.communicate(timeout=1200)[0]
    assert proc.returncode != 0, out[-3000:]
    # the overflow is named as the cause whichever side noticed first: the fill watcher's poll
    # ("full (threshold 50") or the copy failing on the unreadable snapshot ("became invalid")
    assert "vgdata/mysql-backup-snap" in out and ("full (threshold 50" in out or "invalid" in out), out[
        -3000:
    ]
    assert "(killed or failed)" not in out, out[-3000:]
    ssh("rm -f /srv/mysql/filler.bin")
    assert_clean(lab)
