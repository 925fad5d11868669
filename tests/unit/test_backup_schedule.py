"""Schedule core: cron parsing, cron -> OnCalendar (checked by the real systemd-analyze), the
rendered timer/service/cron/wrapper files, and refusals naming the job."""
import re
import shutil
import subprocess

import pytest
from ansible.module_utils import backup_schedule as bs

SETTINGS = {
    "project_dir": "/opt/backup-toolkit",
    "inventory": "/opt/backup-toolkit/inventories/site/hosts.yml",
    "ansible_playbook": "/opt/backup-toolkit/.venv/bin/ansible-playbook",
    "playbook": "playbooks/run_backup.yml",
    "bin_dir": "/usr/local/sbin",
    "config_dir": "/etc/backup-toolkit/jobs",
    "lock_dir": "/run/lock/backup-toolkit",
    "log_dir": "/var/log/backup-toolkit",
    "user": "root",
    "vault_password_file": None,
}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def normalized(expression):
    """systemd's own reading of an OnCalendar expression."""
    rc, out, err = run([SYSTEMD_ANALYZE, "calendar", expression])
    assert rc == 0, err
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Normalized form" in line)


@pytest.mark.parametrize("cron, calendar", [
    ("30 2 * * *", "*-*-* 02:30:00"),
    ("@daily", "*-*-* 00:00:00"),
    ("@hourly", "*-*-* *:00:00"),
    ("*/15 * * * *", "*-*-* *:00,15,30,45:00"),
    ("0 1 * * mon-fri", None),  # names in a range are not cron; checked below as refused
    ("15 1 * * 1-5", "Mon..Fri *-*-* 01:15:00"),
    ("0 3 * * 0,6", "Sun,Sat *-*-* 03:00:00"),
    ("0 3 * * 7", "Sun *-*-* 03:00:00"),
    ("0 4 1 * *", "*-*-01 04:00:00"),
    ("0 0-23/6 1,15 jan *", "*-01-01,15 00,06,12,18:00:00"),
    ("5 4 * 1-12/3 *", "*-01,04,07,10-* 04:05:00"),
])
def test_cron_to_on_calendar(cron, calendar):
    if calendar is None:
        with pytest.raises(bs.ScheduleError):
            bs.cron_to_on_calendar(cron)
        return
    assert bs.cron_to_on_calendar(cron) == calendar


@pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze not installed")
@pytest.mark.parametrize("cron, systemd_reading", [
    ("30 2 * * *", "*-*-* 02:30:00"),
    ("*/15 * * * *", "*-*-* *:00,15,30,45:00"),
    ("15 1 * * 1-5", "Mon..Fri *-*-* 01:15:00"),
    ("0 0-23/6 1,15 jan *", "*-01-01,15 00,06,12,18:00:00"),
])
def test_systemd_reads_the_translation_as_meant(cron, systemd_reading):
    assert normalized(bs.cron_to_on_calendar(cron)) == systemd_reading


@pytest.mark.parametrize("bad, message", [
    ("", "empty"),
    ("* * * *", "has 4 fields"),
    ("61 * * * *", "minute: 61 is outside 0-59"),
    ("0 24 * * *", "hour: 24 is outside 0-23"),
    ("0 0 0 * *", "day of month: 0 is outside 1-31"),
    ("0 0 * 13 *", "month: 13 is outside 1-12"),
    ("0 0 * * 8", "day of week: 8 is outside 0-7"),
    ("*/0 * * * *", "step '0' must be a positive number"),
    ("5/10 * * * *", "a step needs '*' or a range"),
    ("10-5 * * * *", "range 10-5 runs backwards"),
    ("a * * * *", "'a' is not a number"),
    ("1,,2 * * * *", "empty list element"),
    ("@reboot", "@reboot is not a backup schedule"),
    ("@nightly", "unknown shortcut"),
])
def test_bad_cron_is_refused_with_the_field(bad, message):
    with pytest.raises(bs.ScheduleError, match=re.escape(message)):
        bs.parse_cron(bad)


def test_dom_and_dow_together_is_refused_for_systemd_only():
    bs.parse_cron("0 2 1 * 1")  # valid cron
    with pytest.raises(bs.ScheduleError, match="EITHER"):
        bs.cron_to_on_calendar("0 2 1 * 1")


def job(**extra):
    data = {"name": "nightly-files", "strategy": "fs_backup", "schedule": "30 2 * * *",
            "extra_vars": {"btw_backup_root": "/srv/backups"}}
    data.update(extra)
    return data


def test_timer_and_service_rendering():
    plan = bs.plan_job(job(randomized_delay_seconds=300, description="Nightly files"), SETTINGS, "systemd")
    assert plan["timer_path"] == "/etc/systemd/system/backup-job-nightly-files.timer"
    assert plan["timer"].splitlines()[1:] == [
        "[Unit]", "Description=Schedule of backup job nightly-files", "",
        "[Timer]", "OnCalendar=*-*-* 02:30:00", "Persistent=true", "RandomizedDelaySec=300",
        "Unit=backup-job-nightly-files.service", "", "[Install]", "WantedBy=timers.target"]
    assert "Type=oneshot" in plan["service"]
    assert "ExecStart=/usr/local/sbin/backup-job-nightly-files" in plan["service"]
    assert "SuccessExitStatus=75" in plan["service"]
    assert "Description=Nightly files" in plan["service"]
    assert "cron_text" not in plan


@pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze not installed")
def test_explicit_on_calendar_is_checked_by_systemd_analyze():
    validator = bs.systemd_analyze_validator(run, SYSTEMD_ANALYZE)
    plan = bs.plan_job(job(schedule=None, on_calendar="Mon *-*-1..7 03:00"), SETTINGS, "systemd", validator)
    assert "OnCalendar=Mon *-*-1..7 03:00" in plan["timer"]
    with pytest.raises(bs.ScheduleError, match="job nightly-files: schedule 'every day at 3' does not parse"):
        bs.plan_job(job(schedule=None, on_calendar="every day at 3"), SETTINGS, "systemd", validator)


def test_cron_rendering_wrapper_and_vars():
    plan = bs.plan_job(job(schedule="@daily"), SETTINGS, "cron")
    assert plan["cron_path"] == "/etc/cron.d/backup-toolkit-nightly-files"
    assert plan["cron_text"].splitlines()[-1] == "0 0 * * * root /usr/local/sbin/backup-job-nightly-files"
    assert plan["strategy"] == "fs_backup"
    assert "/srv/backups" not in repr(plan)  # extra_vars (maybe secrets) are never returned
    wrapper = plan["wrapper"]
    assert ("flock -n -E 75 /run/lock/backup-toolkit/backup-job-nightly-files.lock "
            "/opt/backup-toolkit/.venv/bin/ansible-playbook "
            "-i /opt/backup-toolkit/inventories/site/hosts.yml /opt/backup-toolkit/playbooks/run_backup.yml "
            "-e @/etc/backup-toolkit/jobs/nightly-files.json") in wrapper
    assert "--vault-password-file" not in wrapper
    vault = dict(SETTINGS, vault_password_file="/etc/backup-toolkit/vault pw")
    with_vault = bs.plan_job(job(), vault, "cron")
    assert "--vault-password-file '/etc/backup-toolkit/vault pw'" in with_vault["wrapper"]


def test_wrapper_never_overlaps_and_reports_the_skip(tmp_path):
    """Run the rendered wrapper for real: a second start while the first holds the lock exits 75."""
    fake = tmp_path / "ansible-playbook"
    marker = tmp_path / "started"
    fake.write_text(f"#!/bin/sh\necho run >> {marker}\nsleep 2\necho \"$@\"\n")
    fake.chmod(0o755)
    settings = dict(SETTINGS, project_dir=str(tmp_path), ansible_playbook=str(fake), bin_dir=str(tmp_path),
                    config_dir=str(tmp_path), lock_dir=str(tmp_path / "lock"), log_dir=str(tmp_path / "log"))
    plan = bs.plan_job(job(), settings, "cron")
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(plan["wrapper"])
    wrapper.chmod(0o755)
    first = subprocess.Popen([str(wrapper)], stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if marker.exists():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    second = subprocess.run([str(wrapper)], capture_output=True, text=True, check=False)
    assert first.wait(timeout=30) == 0
    assert second.returncode == 75
    assert "previous run still running, skipped" in second.stderr
    assert marker.read_text() == "run\n"
    log = (tmp_path / "log" / "backup-job-nightly-files.log").read_text()
    assert "-e @" + str(tmp_path) + "/nightly-files.json" in log and "end rc=0" in log
    assert subprocess.run([str(wrapper)], capture_output=True, check=False).returncode == 0  # lock released


@pytest.mark.parametrize("jobs, message", [
    ([job(name="Nightly Files")], "job name 'Nightly Files' must be"),
    ([job(strategy="")], "job nightly-files: strategy"),
    ([job(schedule="0 25 * * *")], "job nightly-files: schedule '0 25 \\* \\* \\*' does not parse: hour"),
    ([job(schedule=None, on_calendar="daily")], "on_calendar only works with systemd"),
    ([job(), job()], "job names must be unique: nightly-files"),
    ([job(extra_vars=["x"])], "extra_vars must be a mapping"),
])
def test_bad_jobs_are_refused(jobs, message):
    with pytest.raises(bs.ScheduleError, match=message):
        bs.plan_jobs(jobs, SETTINGS, "cron")


def test_absent_job_needs_only_its_name():
    plan = bs.plan_jobs([{"name": "old-job", "state": "absent"}], SETTINGS, "systemd")[0]
    assert plan["state"] == "absent" and plan["timer_path"].endswith("backup-job-old-job.timer")
    assert "wrapper" not in plan


@pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze not installed")
def test_rendered_units_pass_systemd_analyze_verify(tmp_path):
    settings = dict(SETTINGS, bin_dir=str(tmp_path))
    plan = bs.plan_job(job(schedule="15 1 * * 1-5", randomized_delay_seconds=60), settings, "systemd")
    wrapper = tmp_path / plan["unit"]
    wrapper.write_text(plan["wrapper"])
    wrapper.chmod(0o755)
    service = tmp_path / (plan["unit"] + ".service")
    timer = tmp_path / (plan["unit"] + ".timer")
    service.write_text(plan["service"])
    timer.write_text(plan["timer"])
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(timer), str(service)], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    # the check is real: a broken timer is refused
    timer.write_text(plan["timer"].replace("OnCalendar=Mon..Fri *-*-* 01:15:00", "OnCalendar=weekdays"))
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(timer), str(service)], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    assert proc.returncode != 0 and "calendar" in proc.stderr


# What lands in a unit or a cron line is checked: a newline there would add a directive or a root
# cron line (issue 15).
INJECTED = "*-*-* 02:30:00\nExecStartPre=/bin/sh -c 'id > /tmp/owned'"


@pytest.mark.parametrize("method, bad_job, bad_settings, message", [
    ("systemd", {"description": "Nightly\nExecStartPre=/bin/sh -c 'id > /tmp/owned'"}, {},
     "job nightly-files: description .* holds a control character"),
    ("systemd", {"description": "Nightly \\"}, {}, "holds a backslash"),
    ("systemd", {"description": "x" * 201}, {}, "longer than 200"),
    ("systemd", {"schedule": None, "on_calendar": INJECTED}, {}, "on_calendar .* holds a control character"),
    ("cron", {}, {"user": "root\n* * * * * root /bin/sh -c 'id > /tmp/owned'"},
     "user .* holds a control character"),
    ("cron", {}, {"user": "root /bin/true #"}, "user 'root /bin/true #' is not an account name"),
    ("systemd", {}, {"user": "0"}, "user '0' is not an account name"),
    ("cron", {}, {"bin_dir": "/usr/local/sbin /tmp/x"}, "bin_dir .* holds white space"),
    ("systemd", {}, {"log_dir": "/var/log\n[Install]"}, "log_dir .* holds a control character"),
    ("cron", {"playbook": "playbooks/x.yml\nrm"}, {}, "job nightly-files: playbook .* control character"),
])
def test_values_pasted_into_units_and_cron_lines_are_refused(method, bad_job, bad_settings, message):
    validator = bs.systemd_analyze_validator(run, SYSTEMD_ANALYZE) if SYSTEMD_ANALYZE else None
    with pytest.raises(bs.ScheduleError, match=message):
        bs.plan_jobs([job(**bad_job)], dict(SETTINGS, **bad_settings), method, validator)


def test_a_non_root_job_user_and_a_percent_in_the_description():
    settings = dict(SETTINGS, user="backup-job")
    plan = bs.plan_jobs([job(description="Files, 100% of them")], settings, "systemd")[0]
    assert "User=backup-job" in plan["service"]
    assert "Description=Files, 100%% of them" in plan["service"]  # systemd's escape for a plain %
    cron = bs.plan_jobs([job()], settings, "cron")[0]
    last = cron["cron_text"].splitlines()[-1]
    assert last == "30 2 * * * backup-job /usr/local/sbin/backup-job-nightly-files"


STRICT_GOOD = ["daily", "weekly", "*-*-* 02:30:00", "*-*-* *:*:00/20", "Mon..Fri 02:30",
               "Sat,Sun *-*-* 03:00:00 UTC", "2026-01-01 00:00 Europe/Berlin", "*:0/15", "*-*~07 01:00",
               "Mon *-*-1..7 03:00"]
STRICT_BAD = ["02:30 ; rm -rf /", "every day at 3", "Mon..Fri 02:30 UTC extra", "Mon", "UTC", "02:30  daily",
              "*-*-* 02:30:00 $(id)", ""]


@pytest.mark.parametrize("expression", STRICT_GOOD)
def test_strict_on_calendar_accepts_what_systemd_accepts(expression):
    assert bs.strict_on_calendar(expression) == expression
    if SYSTEMD_ANALYZE:  # never more lenient than systemd itself
        assert run([SYSTEMD_ANALYZE, "calendar", expression])[0] == 0


@pytest.mark.parametrize("expression", STRICT_BAD)
def test_strict_on_calendar_refuses_the_rest(expression):
    with pytest.raises(bs.ScheduleError):
        bs.strict_on_calendar(expression)


@pytest.mark.parametrize("cron", ["30 2 * * *", "*/15 * * * *", "15 1 * * 1-5", "0 3 * * 0,6", "0 4 1 * *",
                                  "0 0-23/6 1,15 jan *", "5 4 * 1-12/3 *", "@weekly"])
def test_without_systemd_analyze_the_translations_pass_the_strict_pattern(cron):
    plan = bs.plan_job(job(schedule=cron), SETTINGS, "systemd", validate_calendar=None)
    assert plan["on_calendar"] == bs.cron_to_on_calendar(cron)
    with pytest.raises(bs.ScheduleError, match="does not parse"):
        bs.plan_job(job(schedule=None, on_calendar="every day at 3"), SETTINGS, "systemd")
