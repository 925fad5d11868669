"""State of the control host after converge + idempotence (cron path of roles/backup_schedule) and
verify's refused schedule, and two runs of one job started together: run by
molecule/_shared/testinfra.yml."""
import json

JOBS = {"nightly-files": "30 2 * * *", "weekday-dumps": "15 1 * * 1-5"}


def test_each_job_has_a_cron_entry_cron_accepts(host):
    for job, schedule in JOBS.items():
        entry = host.file(f"/etc/cron.d/backup-toolkit-{job}")
        # cron ignores files in /etc/cron.d that are not root's or are writable by others
        assert (entry.user, entry.mode & 0o022) == ("root", 0), job
        assert entry.content_string.splitlines()[-1] == f"{schedule} root /usr/local/sbin/backup-job-{job}"


def test_job_wrapper_is_executable_and_its_variables_private(host):
    wrapper = host.file("/usr/local/sbin/backup-job-weekday-dumps")
    assert (wrapper.mode, wrapper.user) == (0o755, "root")
    job_vars = host.file("/etc/backup-toolkit/jobs/weekday-dumps.json")
    assert (job_vars.mode, job_vars.user) == (0o600, "root")
    extra_vars = json.loads(job_vars.content_string)
    assert extra_vars["backup_strategy"] == "db_backup"
    assert extra_vars["btw_backup_db_login_password"] == "lab-secret-pw"


def test_retired_and_refused_jobs_have_no_files(host):
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
    assert ("-i /opt/backup-toolkit/inventories/site/hosts.yml /opt/backup-toolkit/playbooks/run_backup.yml"
            " -e @/etc/backup-toolkit/jobs/nightly-files.json") in calls[0]
    log = host.file("/var/log/backup-toolkit/backup-job-nightly-files.log").content_string
    assert "stand-in done" in log
    assert "end rc=0" in log
    assert "previous run still running, skipped" in log
