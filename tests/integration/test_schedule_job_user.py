"""roles/backup_schedule for a non-root job user, run for real on this host (cron method): the job
user reads its own extra-vars file and writes its log and lock, and nobody else reads the file.
(What would add a line to a cron entry or a unit is refused by the core before the role writes
anything: tests/unit/test_backup_schedule.py.)

/etc/cron.d is the one fixed path the role writes: the play runs in a private mount namespace
(unshare -m) with a scratch directory bound over it, so the host's cron never sees the entry.
Everything else goes to a scratch directory. ansible-playbook is a stand-in that reads the
extra-vars files it is given, as the real one does. Needs root, unshare and the user nobody.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.lib import canary

SCHEDULE_PW = canary.canary("schedule-pw")

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "nobody"
STANDIN = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in @*) cat "${arg#@}" > /dev/null || { echo "cannot read ${arg#@}"; exit 3; } ;; esac
done
echo "as $(id -un): $*"
"""


def _ready():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return os.geteuid() == 0 and shutil.which("unshare") and shutil.which("runuser")


pytestmark = pytest.mark.skipif(not _ready(), reason=f"needs root, unshare, runuser and the user {USER}")


@pytest.fixture
def scratch():
    # not under pytest's 0700 tree: the job user must reach its files
    base = tempfile.mkdtemp(prefix="schedule-user-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def converge(base, **overrides):
    os.makedirs(os.path.join(base, "cron.d"), exist_ok=True)
    os.makedirs(os.path.join(base, "proj"), exist_ok=True)
    standin = os.path.join(base, "proj", "ansible-playbook")
    with open(standin, "w") as f:
        f.write(STANDIN)
    os.chmod(standin, 0o755)
    settings = {
        "backup_schedule_method": "cron",
        "backup_schedule_install_cron": False,
        "backup_schedule_user": USER,
        "backup_schedule_project_dir": os.path.join(base, "proj"),
        "backup_schedule_ansible_playbook": standin,
        "backup_schedule_config_dir": os.path.join(base, "etc", "jobs"),
        "backup_schedule_log_dir": os.path.join(base, "log"),
        "backup_schedule_lock_dir": os.path.join(base, "lock"),
        "backup_schedule_bin_dir": os.path.join(base, "bin"),
        "backup_schedule_jobs": [{"name": "nightly", "strategy": "fs_backup", "schedule": "30 2 * * *",
                                  "extra_vars": {"btw_backup_db_login_password": SCHEDULE_PW}}],
    }
    settings.update(overrides)
    with canary.open_private(os.path.join(base, "vars.json")) as f:
        json.dump(settings, f)
    with open(os.path.join(base, "inventory.json"), "w") as f:
        json.dump({"all": {"children": {"backup_control": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}, f)
    play = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
            os.path.join(base, "inventory.json"), os.path.join(TOP, "playbooks", "backup_schedules.yml"),
            "-e", "@" + os.path.join(base, "vars.json")]
    script = 'mount --bind "$1" /etc/cron.d && shift && exec "$@"'
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                           os.path.join(base, "cron.d"), *play],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def owner_group_mode(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, st.st_gid, oct(st.st_mode & 0o777)


def test_a_non_root_job_user_reads_its_own_extra_vars_and_nobody_else_does(scratch):
    rc, output = converge(scratch)
    assert rc == 0, output
    entry = open(os.path.join(scratch, "cron.d", "backup-toolkit-nightly")).read().splitlines()[-1]
    assert entry == f"30 2 * * * {USER} {scratch}/bin/backup-job-nightly"
    gid = pwd.getpwnam(USER).pw_gid
    vars_file = os.path.join(scratch, "etc", "jobs", "nightly.json")
    assert owner_group_mode(vars_file) == (USER, gid, "0o600")
    assert owner_group_mode(os.path.dirname(vars_file)) == ("root", gid, "0o750")  # others cannot enter
    # the job, run as its user the way cron runs it: it reads its file, writes its log and lock
    job = subprocess.run(["runuser", "-u", USER, "--", os.path.join(scratch, "bin", "backup-job-nightly")],
                         capture_output=True, text=True, timeout=60)
    assert job.returncode == 0, job.stdout + job.stderr
    log = open(os.path.join(scratch, "log", "backup-job-nightly.log")).read()
    assert f"as {USER}: -i " in log and f"-e @{vars_file}" in log and "end rc=0" in log, log
    assert SCHEDULE_PW not in output + log
