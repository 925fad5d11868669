"""State of the control host after converge + idempotence (cron path of roles/backup_schedule) and
verify's refused schedule, and two runs of one job started together: run by
molecule/_shared/testinfra.yml."""
import json
from pathlib import Path

import yaml

SETTINGS = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())[
    "provisioner"]["inventory"]["group_vars"]["backup_control"]
JOBS = {job["name"]: job for job in SETTINGS["backup_schedule_jobs"]}


def test_each_job_has_a_cron_entry_cron_accepts(host):
    scheduled = [job for job in JOBS.values() if job.get("state", "present") == "present"]
    assert [job["name"] for job in scheduled] == ["nightly-files", "weekday-dumps"]
    for job in scheduled:
        entry = host.file(f"/etc/cron.d/backup-toolkit-{job['name']}")
        # cron ignores files in /etc/cron.d that are not root's or are writable by others
        assert (entry.user, entry.mode & 0o022) == ("root", 0), job["name"]
        assert entry.content_string.splitlines()[-1] == (
            f"{job['schedule']} root /usr/local/sbin/backup-job-{job['name']}")


def test_job_wrapper_is_executable_and_its_variables_private(host):
    wrapper = host.file("/usr/local/sbin/backup-job-weekday-dumps")
    assert (wrapper.mode, wrapper.user) == (0o755, "root")
    job_vars = host.file("/etc/backup-toolkit/jobs/weekday-dumps.json")
    assert (job_vars.mode, job_vars.user) == (0o600, "root")
    extra_vars = json.loads(job_vars.content_string)
    job = JOBS["weekday-dumps"]
    expected = {"backup_strategy": job["strategy"], **job["extra_vars"]}  # the secret: in this 0600 file only
    assert {key: extra_vars.get(key) for key in expected} == expected


def test_retired_and_refused_jobs_have_no_files(host):
    assert JOBS["retired-job"]["state"] == "absent"
    for path in ("/usr/local/sbin/backup-job-retired-job", "/etc/cron.d/backup-toolkit-retired-job",
                 "/etc/cron.d/backup-toolkit-broken", "/usr/local/sbin/backup-job-broken"):
        assert not host.file(path).exists, path


def test_a_second_run_while_the_first_runs_is_skipped(host):
    # The stand-in ansible-playbook records its arguments in /tmp/standin-calls and runs 4 s.
    run = host.run(
        "rm -f /tmp/standin-calls;"
        " /usr/local/sbin/backup-job-nightly-files & first=$!;"
        " for i in $(seq 50); do [ -s /tmp/standin-calls ] && break; sleep 0.1; done;"
        " /usr/local/sbin/backup-job-nightly-files; second=$?;"
        ' wait "$first"; echo "first=$? second=$second"')
    assert run.stdout.splitlines()[-1] == "first=0 second=75", (run.stdout, run.stderr)
    assert "previous run still running, skipped" in run.stderr
    calls = host.file("/tmp/standin-calls").content_string.splitlines()
    assert len(calls) == 1, calls
    project = SETTINGS["backup_schedule_project_dir"]
    assert (f"-i {project}/inventories/site/hosts.yml {project}/playbooks/run_backup.yml"
            " -e @/etc/backup-toolkit/jobs/nightly-files.json") in calls[0]
    log = host.file("/var/log/backup-toolkit/backup-job-nightly-files.log").content_string
    assert "stand-in done" in log
    assert "end rc=0" in log
    assert "previous run still running, skipped" in log
