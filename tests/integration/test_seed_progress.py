"""Progress of the MySQL seed (mysql_consistent_seed) against real MariaDB servers: the core writes
bytes done / estimated total / done-or-failed, and the module runs as an async job that
roles/backup_progress polls (the pattern playbooks/seafile_backup_server.yml uses)."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
from ansible.module_utils.mysql_seed import SeedError, run_seed
from ansible.module_utils.progress import process_identity, read_progress, same_process

from tests.integration.test_mysql_replication import make_source, seed_params
from tests.lib.progress import recording

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)




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


CANCEL_PLAYBOOK = """
- name: Seed that outlives its timeout (the seed block of playbooks/seafile_backup_server.yml)
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
            databases: [app]
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
            backup_progress_timeout: 2

        - name: Set the source coordinates and start replication
          mysql_replica:
            login_unix_socket: "{{ dst_socket }}"
            source_host: 127.0.0.1
            source_port: "{{ src_port }}"
            source_user: repl
            source_password: x
            source_log_file: "{{ backup_progress_result.binlog_file }}"
            source_log_pos: "{{ backup_progress_result.binlog_position | int }}"
            state: running
      rescue:
        - name: Stop the dump if it still runs
          ansible.builtin.include_role:
            name: backup_progress
            tasks_from: cancel
          vars:
            backup_progress_job: "{{ seed_job | default({}) }}"
            backup_progress_file: >-
              {{ progress_dir.path ~ '/seed.progress' if progress_dir.path is defined else '' }}
            backup_progress_label: seed

        - name: Leave the backup server pointed at no source
          mysql_replica:
            login_unix_socket: "{{ dst_socket }}"
            state: absent

        - name: Stop here
          ansible.builtin.fail:
            msg: "seeding failed: {{ ansible_failed_result.msg }}"
      always:
        - name: Remove the progress file
          ansible.builtin.file:
            path: "{{ progress_dir.path }}"
            state: absent
          when: progress_dir.path is defined
"""


def seed_clients(tmp_path):
    """pid -> (argv, identity) of the dump and client processes of a seed run under tmp_path (their
    option files are temp files there): other tests' MariaDB processes are never counted."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and argv[1:2] and argv[1].startswith(f"--defaults-file={tmp_path}/"):
            found[int(name)] = (argv, process_identity(int(name)))
    return found


def test_seed_cancelled_mid_way_stops_dump_and_client_and_the_replica_is_not_started(
        mariadb_factory, tmp_path):
    """The import is held mid-way by a metadata lock on the target (an open transaction that read the
    table the dump drops first), as a busy replica would; backup_progress_timeout=2 s: the poll cancels
    the job, the seed's finally kills mysqldump and the mysql client, the rescue leaves the replica
    pointed at no source."""
    from tests.lib.mariadb import ROOT_PASSWORD

    src = mariadb_factory("source", server_id=1)
    dst = mariadb_factory("replica", server_id=2)
    make_source(src, rows=60000)  # ~13 MB of dump: far more than the pipes hold while the import waits
    dst.sql("CREATE DATABASE app")
    dst.sql("CREATE TABLE app.items (id INT PRIMARY KEY)")
    holder = dst.connect(autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT COUNT(*) FROM app.items")  # metadata lock until COMMIT: DROP TABLE waits
        (tmp_path / "play.yml").write_text(CANCEL_PLAYBOOK)
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LIBRARY=os.path.join(TOP, "library"),
                   ANSIBLE_ROLES_PATH=os.path.join(TOP, "roles"), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "ltmp"),
                   ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"), TMPDIR=str(tmp_path),
                   PATH=BIN + os.pathsep + os.environ["PATH"])
        extra = {"ansible_python_interpreter": sys.executable, "src_port": src.port, "dst_socket": dst.socket,
                 "root_password": ROOT_PASSWORD}
        play = subprocess.Popen(
            [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
             str(tmp_path / "play.yml"), "-e", json.dumps(extra)],
            cwd=TOP, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            seen, deadline = {}, time.monotonic() + 120
            while play.poll() is None and time.monotonic() < deadline and len(seen) < 2:
                seen.update(seed_clients(tmp_path))
                time.sleep(0.05)
            out, err = play.communicate(timeout=300)
        finally:
            if play.poll() is None:
                play.kill()
                play.wait()
        # both were running mid-way: the dump client and the import client
        names = sorted(os.path.basename(argv[0]) for argv, _ in seen.values())
        assert len(names) == 2 and any("dump" in n for n in names), (names, out)
        assert play.returncode != 0, out + err
        assert re.search(r"seed still running after 2 s \(backup_progress_timeout\), stopped: cancelled "
                         r"seed import \(pid \d+\): SIGTERM, exited after [\d.]+ s, its cleanup ran; "
                         r"the job says: seed cancelled \(received SIGTERM", out), out
        assert "the target server now holds PARTIAL data from this import" in out
        assert "nothing to cancel: seed import has already ended (failed)" in out  # the rescue's cancel
        # no dump or client process left, no option file (they hold the passwords) left
        assert not [argv for argv, identity in seen.values() if same_process(identity)], seen
        assert seed_clients(tmp_path) == {}
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".mysql-client-")]
        assert ROOT_PASSWORD not in out
    finally:
        holder.rollback()
        holder.close()
    # the replica was not started (not even configured)
    assert dst.sql("SHOW SLAVE STATUS") == ()
    # the import's session, freed from the lock, ends (its client is gone) instead of importing on
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sessions = [r["ID"] for r in dst.sessions()
                    if r["COMMAND"] != "Daemon" and r["USER"] != "system user"]
        if not sessions:
            break
        time.sleep(0.2)
    assert not sessions, sessions
