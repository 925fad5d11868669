"""Progress of the MySQL seed (mysql_consistent_seed) against real MariaDB servers: the core writes
bytes done / estimated total / done-or-failed, and the module runs as an async job that
roles/backup_progress polls (the pattern playbooks/seafile_backup_server.yml uses)."""
import os
import re
import subprocess
import sys

import pytest
from ansible.module_utils.mysql_seed import SeedError, run_seed
from ansible.module_utils.progress import ProgressFile, read_progress

from tests.integration.test_mysql_replication import make_source, seed_params

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def recording(log):
    """A real ProgressFile writing on every update (no 1 s throttle) and recording what it wrote."""

    class Recording(ProgressFile):
        def _write(self, state, force=False, message=None):
            super()._write(state, force=True, message=message)
            log.append(self.state(state, message))
            return True

    return Recording


@pytest.fixture
def pair(mariadb_factory):
    src = mariadb_factory("source", server_id=1)
    dst = mariadb_factory("replica", server_id=2)
    make_source(src, rows=12000)  # about 2.7 MB of dump: several reads of the dump pipe
    return src, dst


def test_seed_writes_progress_done_grows_total_is_the_estimate_then_done(pair, tmp_path):
    src, dst = pair
    # InnoDB statistics (hence the estimate) lag behind a bulk insert until recalculated
    src.sql("ANALYZE TABLE app.items, app.skipped")
    sizes = dict(src.sql("SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA = 'app'"))
    work = tmp_path / "work"
    work.mkdir()
    log, path = [], str(work / "seed.progress")
    result = run_seed(seed_params(src, dst, progress_file=path), progress_factory=recording(log))
    # the estimate: data_length + index_length of app.items, app.skipped (ignored) left out
    assert result["estimated_bytes"] == int(sizes["items"]) > 2_000_000 and int(sizes["skipped"]) > 0
    assert {s["step"] for s in log} == {"seed import"}
    running = [s for s in log if s["state"] == "running"]
    assert running[0]["total_bytes"] is None and running[0]["done_bytes"] == 0  # before inspecting
    assert {s["total_bytes"] for s in running[1:]} == {result["estimated_bytes"]}
    done = [s["done_bytes"] for s in running]
    assert done == sorted(done) and len({d for d in done if d > 0}) >= 2, done
    assert log[-1]["state"] == "done" and log[-1]["done_bytes"] == result["bytes"] > 2_000_000
    assert read_progress(path)["state"] == "done"
    assert os.listdir(work) == ["seed.progress"]  # no temp file left beside it


def test_seed_failure_is_written_to_the_progress_file(pair, tmp_path):
    src, dst = pair
    path = str(tmp_path / "seed.progress")
    with pytest.raises(SeedError, match="databases not found"):
        run_seed(seed_params(src, dst, databases=["nope"], progress_file=path))
    state = read_progress(path)
    assert state["state"] == "failed" and "databases not found on the source: nope" in state["message"]


def test_seed_check_mode_and_no_progress_file_write_nothing(pair, tmp_path):
    src, dst = pair
    work = tmp_path / "work"
    work.mkdir()
    run_seed(seed_params(src, dst, progress_file=str(work / "seed.progress")), check_mode=True)
    assert os.listdir(work) == []
    run_seed(seed_params(src, mode="file", dest=str(work / "seed.sql.gz")))
    assert os.listdir(work) == ["seed.sql.gz"]


PLAYBOOK = """
- name: Seed followed with progress
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Seed
      block:
        - name: Private directory for the progress file
          ansible.builtin.tempfile:
            state: directory
            prefix: seed-progress.
          register: progress_dir

        - name: Dump from the source into the target
          mysql_consistent_seed:
            mode: import
            login_host: 127.0.0.1
            login_port: "{{ src_port }}"
            login_user: root
            login_password: "{{ root_password }}"
            config_file: ""
            target_unix_socket: "{{ dst_socket }}"
            target_user: root
            databases: "{{ databases }}"
            ignore_tables: [app.skipped]
            progress_file: "{{ progress_dir.path }}/seed.progress"
          async: 600
          poll: 0
          register: seed_job

        - name: Follow the dump
          ansible.builtin.include_role:
            name: backup_progress
            tasks_from: poll
          vars:
            backup_progress_job: "{{ seed_job }}"
            backup_progress_file: "{{ progress_dir.path }}/seed.progress"
            backup_progress_label: seed
            backup_progress_interval: 1

        - name: Show the result
          ansible.builtin.debug:
            msg: "seeded {{ backup_progress_result.bytes }} bytes at {{ backup_progress_result.binlog_file }}"
      always:
        - name: Remove the progress file
          ansible.builtin.file:
            path: "{{ progress_dir.path }}"
            state: absent
          when: progress_dir.path is defined

        - name: Where the progress file was
          ansible.builtin.debug:
            msg: "progress dir {{ progress_dir.path }}"
"""


def run_play(tmp_path, src, dst, databases):
    from tests.lib.mariadb import ROOT_PASSWORD

    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LIBRARY=os.path.join(TOP, "library"), ANSIBLE_ROLES_PATH=os.path.join(TOP, "roles"),
               ANSIBLE_ASYNC_DIR=str(tmp_path / "async"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ltmp"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"), TMPDIR=str(tmp_path),
               PATH=BIN + os.pathsep + os.environ["PATH"])
    extra = {"ansible_python_interpreter": sys.executable, "src_port": src.port, "dst_socket": dst.socket,
             "root_password": ROOT_PASSWORD, "databases": databases}
    import json

    return subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
         "-e", json.dumps(extra)], cwd=TOP, env=env, text=True, capture_output=True, check=False, timeout=300)


def test_async_seed_module_polled_with_progress_lines(pair, tmp_path):
    src, dst = pair
    proc = run_play(tmp_path, src, dst, ["app"])
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = re.findall(r"\(item=(seed import, .*?)\)$", out, re.M)
    assert lines and lines[-1].endswith(", done"), out
    assert re.search(r"seeded \d{7,} bytes at mysql-bin\.\d+", out), out
    assert dst.sql("SELECT COUNT(*) FROM app.items")[0][0] == 12000
    progress_dir = re.search(r"progress dir (\S+)\"", out).group(1)
    assert not os.path.exists(progress_dir)  # removed after
    from tests.lib.mariadb import ROOT_PASSWORD

    assert ROOT_PASSWORD not in out  # no_log on the password option: not in the job result either


def test_async_seed_failure_fails_the_play_with_the_message(pair, tmp_path):
    src, dst = pair
    proc = run_play(tmp_path, src, dst, ["nope"])
    out = proc.stdout
    assert proc.returncode != 0
    assert "databases not found on the source: nope" in out
    progress_dir = re.search(r"progress dir (\S+)\"", out).group(1)
    assert not os.path.exists(progress_dir)
