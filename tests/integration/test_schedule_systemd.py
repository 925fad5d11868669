"""roles/backup_schedule's systemd path, run live: timers installed, enabled and firing under a real
systemd (PID 1 of a container from localhost/backup-lab-systemd, scripts/lab/build-image.sh),
idempotent, runs of a job never overlapping, a failed run a failed unit, and a retired job's timer
stopped and removed.

ansible-playbook on the control host (the container) is a stand-in that records its arguments and
sleeps, as in molecule/schedule: what is under test is the scheduling, not a backup. Needs root,
podman and the image; skipped otherwise (make test builds it).
"""

import json
import os
import time

import pytest

from tests.lib import canary
from tests.lib.lab_containers import SYSTEMD_IMAGE, podman_ready, sh, systemd_container
from tests.lib.lab_containers import converge as lab_converge

SYSTEMD_PW = canary.canary("schedule-systemd-pw")

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(TOP, "playbooks", "backup_schedules.yml")

STANDIN = """#!/bin/sh
# stand-in ansible-playbook: records its arguments, runs 6 s, fails when /tmp/standin-fail exists
echo "$$ $*" >> /tmp/standin-calls
sleep 6
if [ -e /tmp/standin-fail ]; then echo "stand-in failed"; exit 2; fi
echo "stand-in done"
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not podman_ready(SYSTEMD_IMAGE), reason="needs root, podman and " + SYSTEMD_IMAGE),
]
HOST = "schedule-control"


def jobs(frequent_state="present"):
    return [
        {"name": "nightly-files", "strategy": "fs_backup", "schedule": "30 2 * * *",
         "extra_vars": {"btw_backup_root": "/srv/backups"}},
        # every 20 s, so the test sees the timer fire by itself
        {"name": "frequent", "strategy": "db_backup", "on_calendar": "*-*-* *:*:00/20",
         "state": frequent_state, "extra_vars": {"btw_backup_db_login_password": SYSTEMD_PW}},
    ]


_container = {}


def ssh(command, check=True):
    """A shell command on the control host (the container), as root: its stdout when check."""
    return sh(_container["name"], command, check=check)


def ssh_result(command):
    return sh(_container["name"], command, check=False)


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    base = tmp_path_factory.mktemp("schedule-systemd")
    with systemd_container(HOST) as name:
        _container["name"] = name
        inventory = base / "hosts.yml"
        canary.write_private(inventory, json.dumps({"all": {"children": {"backup_control": {"hosts": {HOST: {
            "ansible_connection": "lab_podman", "ansible_host": name,
            "ansible_python_interpreter": "/usr/bin/python3"}}}}}}))
        ssh("mkdir -p /opt/backup-toolkit && cat > /opt/backup-toolkit/standin-ansible-playbook <<'EOF'\n"
            + STANDIN + "EOF\nchmod 0755 /opt/backup-toolkit/standin-ansible-playbook")
        assert ssh("cat /proc/1/comm") == "systemd"
        yield {"inventory": str(inventory), "base": base}


def converge(control, job_list):
    settings = control["base"] / "settings.json"
    canary.write_private(settings, json.dumps({
        "backup_schedule_project_dir": "/opt/backup-toolkit",
        "backup_schedule_ansible_playbook": "/opt/backup-toolkit/standin-ansible-playbook",
        "backup_schedule_jobs": job_list,
    }))
    return lab_converge(control["inventory"], PLAYBOOK, str(settings), HOST, timeout=1200)


def unit_state(unit, prop):
    return ssh(f"systemctl show -p {prop} --value {unit}")


def next_elapse(timer, wait=60):
    """The timer's next elapse. While the service it started is still running systemd has not armed
    it again and reports none (the frequent job fires every 20 s and runs 6 s), so wait for that."""
    deadline = time.monotonic() + wait
    while True:
        value = unit_state(timer, "NextElapseUSecRealtime")
        if value not in ("", "n/a", "0") or time.monotonic() > deadline:
            return value
        time.sleep(2)


def test_timers_installed_enabled_and_idempotent(control):
    changed, output = converge(control, jobs())
    assert changed > 0, output
    for name in ("nightly-files", "frequent"):
        timer = f"backup-job-{name}.timer"
        assert unit_state(timer, "UnitFileState") == "enabled"
        assert unit_state(timer, "ActiveState") == "active"
        assert next_elapse(timer) not in ("", "n/a", "0"), unit_state(timer, "SubState")
    assert "OnCalendar=*-*-* 02:30:00" in ssh("cat /etc/systemd/system/backup-job-nightly-files.timer")
    # the units as systemd itself reads them
    verify = ssh_result("systemd-analyze verify /etc/systemd/system/backup-job-nightly-files.service "
                        "/etc/systemd/system/backup-job-nightly-files.timer")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert ssh("stat -c %a /etc/backup-toolkit/jobs/frequent.json") == "600"
    changed, output = converge(control, jobs())
    assert changed == 0, output


def test_the_timer_fires_by_itself(control):
    ssh("rm -f /tmp/standin-calls")
    deadline = time.monotonic() + 180
    calls = ""
    while time.monotonic() < deadline:
        calls = ssh("cat /tmp/standin-calls 2>/dev/null || true")
        log = ssh("cat /var/log/backup-toolkit/backup-job-frequent.log 2>/dev/null || true")
        if "end rc=0" in log and calls:
            break
        time.sleep(5)
    else:
        pytest.fail(f"the frequent job's timer did not run it within 180 s; calls: {calls!r}")
    assert "/opt/backup-toolkit/playbooks/run_backup.yml -e @/etc/backup-toolkit/jobs/frequent.json" in calls
    assert unit_state("backup-job-frequent.service", "Result") == "success"


def test_a_second_run_of_a_job_does_not_overlap(control):
    ssh("rm -f /tmp/standin-calls")
    ssh("systemctl start --no-block backup-job-nightly-files.service")
    deadline = time.monotonic() + 60
    while ssh_result("grep -q nightly-files.json /tmp/standin-calls").returncode != 0:
        assert time.monotonic() < deadline, "the service did not start the job"
        time.sleep(0.5)
    by_hand = ssh_result("/usr/local/sbin/backup-job-nightly-files")
    assert by_hand.returncode == 75, by_hand.stdout + by_hand.stderr
    assert "previous run still running, skipped" in by_hand.stderr
    ssh("while systemctl is-active -q backup-job-nightly-files.service; do sleep 1; done")
    assert unit_state("backup-job-nightly-files.service", "Result") == "success"
    calls = ssh("grep nightly-files.json /tmp/standin-calls").splitlines()
    assert len(calls) == 1, calls  # the frequent job's own runs are in the file too


def test_a_failed_run_is_a_failed_unit(control):
    ssh("touch /tmp/standin-fail")
    try:
        start = ssh_result("systemctl start backup-job-nightly-files.service")
        assert start.returncode != 0
        assert unit_state("backup-job-nightly-files.service", "Result") == "exit-code"
        log = ssh("cat /var/log/backup-toolkit/backup-job-nightly-files.log")
        assert "job nightly-files: end rc=2" in log
    finally:
        ssh("rm -f /tmp/standin-fail; systemctl reset-failed backup-job-nightly-files.service")


def test_a_retired_job_is_stopped_and_removed(control):
    changed, output = converge(control, jobs(frequent_state="absent"))
    assert changed > 0, output
    assert "backup-job-frequent" not in ssh("systemctl list-timers --all --no-pager")
    for path in ("/etc/systemd/system/backup-job-frequent.timer",
                 "/etc/systemd/system/backup-job-frequent.service",
                 "/etc/backup-toolkit/jobs/frequent.json", "/usr/local/sbin/backup-job-frequent"):
        assert ssh_result(f"test -e {path}").returncode != 0, path
    assert unit_state("backup-job-nightly-files.timer", "ActiveState") == "active"
