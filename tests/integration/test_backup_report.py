"""The backup_report callback under a real ansible-playbook run."""
import json
import os
import shutil
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

WITH_RUNS = """
- name: A backup that publishes its outcome
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish backup_runs (run-wide)
      ansible.builtin.set_stats:
        data:
          backup_runs:
            - {strategy: fs_backup, mode: tar, host: web1, result: ok, location: "LOCATION",
               size_bytes: 3145728, duration_seconds: 75.5, lock_seconds: 0.4}
    - name: Publish backup_runs (per host, aggregated with the first)
      ansible.builtin.set_stats:
        per_host: true
        data:
          backup_runs:
            - {strategy: db_backup, result: failed, size_bytes: 0, duration_seconds: 2,
               downtime_seconds: 0, details: "mysqldump exited 2"}
"""

WITHOUT_RUNS = """
- name: Not a backup
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""


def run_playbook(tmp_path, text, env_extra=None, args=(), umask=-1):
    playbook = tmp_path / "play.yml"
    playbook.write_text(text)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
               ANSIBLE_CALLBACKS_ENABLED="backup_report", PATH=BIN + os.pathsep + os.environ["PATH"],
               ANSIBLE_NOCOLOR="1")
    env.pop("BACKUP_REPORT_PATH", None)
    env.update(env_extra or {})
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook), *args], cwd=TOP, env=env, text=True, capture_output=True,
                          check=False, timeout=300, umask=umask)
    return proc


def test_table_and_json_for_a_run_with_backup_runs(tmp_path):
    report = tmp_path / "report.json"
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", "/srv/backup/web1"),
                        {"BACKUP_REPORT_PATH": str(report)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("BACKUP REPORT") == 1
    header = next(line for line in out.splitlines() if line.startswith("STRATEGY"))
    assert header.split() == ["STRATEGY", "MODE", "HOST", "RESULT", "SIZE", "DURATION", "LOCK", "DOWNTIME",
                              "LOCATION"]
    fs_line = next(line for line in out.splitlines() if line.startswith("fs_backup"))
    assert fs_line.split()[:3] == ["fs_backup", "tar", "web1"]
    assert "OK" in fs_line and "3.0 MiB" in fs_line and "1m16s" in fs_line
    assert "0.4s" in fs_line
    db_line = next(line for line in out.splitlines() if line.startswith("db_backup"))
    assert db_line.split()[:4] == ["db_backup", "-", "localhost", "FAILED"]  # no mode: "-"
    assert "2 backup run(s): 1 ok, 1 failed" in out
    document = json.loads(report.read_text())
    assert document["summary"] == {"runs": 2, "ok": 1, "failed": 1}
    assert document["runs"][0]["location"] == "/srv/backup/web1"
    assert document["runs"][1]["details"] == "mysqldump exited 2"
    assert document["playbook"].endswith("play.yml")


def test_json_defaults_to_next_to_the_backup_location(tmp_path):
    backups = tmp_path / "backups"
    (backups / "set1").mkdir(parents=True)
    # a run of another host (web1): its location is a path on web1, whatever exists here
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", str(backups / "set1")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no JSON written" in proc.stdout and os.listdir(backups) == ["set1"]
    # the same run on the controller: the report goes beside its location
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", str(backups / "set1"))
                        .replace("host: web1", "host: localhost"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = [name for name in os.listdir(backups) if name.startswith("backup-report-")]
    assert len(reports) == 1, os.listdir(backups)
    assert json.loads((backups / reports[0]).read_text())["summary"]["runs"] == 2


def test_extra_var_path_wins(tmp_path):
    target = tmp_path / "chosen.json"
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", "s3://bucket/x"),
                        {"BACKUP_REPORT_PATH": str(tmp_path / "env.json")},
                        args=("-e", f"backup_report_path={target}"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.exists() and not (tmp_path / "env.json").exists()


def test_nothing_for_a_run_without_backup_runs(tmp_path):
    proc = run_playbook(tmp_path, WITHOUT_RUNS, {"BACKUP_REPORT_PATH": str(tmp_path / "r.json")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello" in proc.stdout
    assert "BACKUP REPORT" not in proc.stdout and "STRATEGY" not in proc.stdout
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) missing")
def test_metrics_recorded_for_every_run_and_accepted_by_promtool(tmp_path):
    collector = tmp_path / "textfile"
    collector.mkdir()
    (collector / "node_other.prom").write_text("node_other_metric 1\n")
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", "/srv/backup/web1"),
                        {"BACKUP_METRICS_DIR": str(collector),
                         "BACKUP_REPORT_PATH": str(tmp_path / "r.json")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backup metrics recorded in" in proc.stdout
    text = (collector / "backup_toolkit.prom").read_text()
    assert 'backup_last_result{strategy="fs_backup",set="web1"} 1' in text
    assert 'backup_last_result{strategy="db_backup",set="localhost"} 0' in text
    assert 'backup_last_size_bytes{strategy="fs_backup",set="web1"} 3145728' in text
    assert 'backup_last_success_timestamp_seconds{strategy="db_backup"' not in text  # never succeeded
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True, capture_output=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (collector / "node_other.prom").read_text() == "node_other_metric 1\n"


def test_unwritable_metrics_dir_warns_but_keeps_the_result(tmp_path):
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", "/srv/backup/web1"),
                        {"BACKUP_METRICS_DIR": str(tmp_path / "missing"),
                         "BACKUP_REPORT_PATH": str(tmp_path / "r")})
    assert proc.returncode == 0
    assert "metrics not recorded" in proc.stdout + proc.stderr
    assert "BACKUP REPORT" in proc.stdout


def test_json_stdout_stays_parseable(tmp_path):
    report = tmp_path / "r.json"
    proc = run_playbook(tmp_path, WITH_RUNS.replace("LOCATION", "/srv/backup/web1"),
                        {"BACKUP_REPORT_PATH": str(report), "ANSIBLE_STDOUT_CALLBACK": "json",
                         "ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["global_custom_stats"]["backup_runs"][0]["strategy"] == "fs_backup"
    assert json.loads(report.read_text())["summary"]["runs"] == 2


BOTH_WRITERS = """
- name: The two metrics modules, one writer
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Record a backup run
      backup_metrics:
        collector_dir: "COLLECTOR"
        strategy: fs_backup
        set: 'vol "a"'
        result: ok
        size_bytes: 2048
    - name: Write the Seafile check
      seafile_backup_metrics:
        path: "COLLECTOR/seafile_backup.prom"
        check_ok: false
        status: {total: 3, synchronized: 1, syncing: 1, waiting: 0, failed: 1}
        replication: {healthy: true, io_running: "Yes", sql_running: "Yes", seconds_behind: 4}
        now: 1000
"""


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) missing")
def test_both_metrics_modules_write_through_the_one_writer(tmp_path):
    """backup_metrics and seafile_backup_metrics under umask 077: both files 0644 (node_exporter
    reads them as another user), no temporary file left, promtool accepts both."""
    collector = tmp_path / "textfile"
    collector.mkdir()
    proc = run_playbook(tmp_path, BOTH_WRITERS.replace("COLLECTOR", str(collector)), umask=0o077,
                        args=("-e", f"ansible_python_interpreter={sys.executable}"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(collector)) == [".backup_toolkit.prom.lock", "backup_toolkit.prom",
                                             "seafile_backup.prom"]
    for name in ("backup_toolkit.prom", "seafile_backup.prom"):
        assert oct(os.stat(collector / name).st_mode & 0o777) == "0o644", name
        text = (collector / name).read_text()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True, capture_output=True,
                               check=False)
        assert check.returncode == 0, name + check.stdout + check.stderr
    backup = (collector / "backup_toolkit.prom").read_text()
    assert 'backup_last_size_bytes{strategy="fs_backup",set="vol \\"a\\""} 2048' in backup
    seafile = (collector / "seafile_backup.prom").read_text()
    assert 'seafile_backup_libraries{state="failed"} 1' in seafile
    assert "seafile_backup_check_success 0" in seafile
    assert "seafile_backup_replication_lag_seconds 4.0" in seafile


def test_seafile_metrics_bad_mode_is_refused_before_writing(tmp_path):
    collector = tmp_path / "textfile"
    collector.mkdir()
    text = BOTH_WRITERS.replace("COLLECTOR", str(collector))
    text = text.replace("        now: 1000\n", "        now: 1000\n        mode: u=rw\n")
    proc = run_playbook(tmp_path, text, args=("-e", f"ansible_python_interpreter={sys.executable}"))
    assert proc.returncode != 0
    assert "mode must be an octal file mode" in proc.stdout
    assert not (collector / "seafile_backup.prom").exists()
