"""Progress of the LevelDB backup against a real LevelDB store (plyvel): the copy phase counts the bytes
copied against the bytes to copy, the verification phase the bytes of the records read; the module runs
as an async job that roles/backup_progress polls (the pattern roles/fcrepo_backup/tasks/copy.yml uses)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from ansible.module_utils import leveldb_backup as lb
from ansible.module_utils.progress import read_progress, same_process

from tests.integration.test_leveldb_backup_live import make_db
from tests.lib.progress import recording

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)




def test_copy_then_verification_progress_on_a_real_store(tmp_path):
    db = make_db(tmp_path / "db", 5000)
    work = tmp_path / "work"
    work.mkdir()
    log, path = [], str(work / "leveldb.progress")
    to_copy = lb.plan(db, str(tmp_path / "b"))["bytes_to_copy"]
    report = lb.backup(db, str(tmp_path / "b"), name="one", fsync=False, progress_file=path,
                       progress_factory=recording(log))
    copy = [s for s in log if s["step"] == "LevelDB copy"]
    verify = [s for s in log if s["step"] == "LevelDB verification"]
    assert {s["total_bytes"] for s in copy} == {to_copy} and to_copy == report["bytes_copied"]
    done = [s["done_bytes"] for s in copy]
    assert done == sorted(done) and done[-1] == to_copy and len(set(done)) >= 4
    # verification: bytes of the records read (keys + values), no total, then the final state
    read = [s["done_bytes"] for s in verify]
    assert read == sorted(read) and len(set(read)) >= 3 and {s["total_bytes"] for s in verify} == {None}
    assert read[-1] == 5000 * (11 + 400) and report["records"] == 5000
    assert log[-1]["state"] == "done" and log[-1]["step"] == "LevelDB verification"
    assert [s["state"] for s in log].count("done") == 1 and "failed" not in [s["state"] for s in log]
    assert read_progress(path)["state"] == "done" and os.listdir(work) == ["leveldb.progress"]


PLAYBOOK = """
- name: LevelDB backup followed with progress
  hosts: localhost
  gather_facts: false
  roles:
    - role: fcrepo_backup
      vars:
        fcrepo_backup_include_binaries: false
"""


def test_role_runs_the_copy_as_an_async_job_with_progress_lines(tmp_path):
    db = make_db(tmp_path / "db", 3000)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=os.path.join(TOP, "roles"), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
               TMPDIR=str(tmp_path), PATH=BIN + os.pathsep + os.environ["PATH"])
    extra = {"ansible_python_interpreter": sys.executable, "fcrepo_backup_strategy": "hot",
             "fcrepo_backup_leveldb_dir": db, "fcrepo_backup_dest": str(tmp_path / "backups"),
             "backup_progress_interval": 1}
    proc = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
         "-e", json.dumps(extra)], cwd=TOP, env=env, text=True, capture_output=True, check=False, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = re.findall(r"\(item=(LevelDB .*?)\)$", out, re.M)
    assert lines and lines[-1].startswith("LevelDB verification, ") and lines[-1].endswith(", done"), out
    [backup] = [n for n in os.listdir(tmp_path / "backups" / "leveldb") if n.startswith("leveldb-")]
    assert lb.verify_backup(str(tmp_path / "backups" / "leveldb" / backup))["records"] == 3000
    # the private progress directory was removed
    assert not [n for n in os.listdir(tmp_path) if n.startswith("leveldb-progress.")]


def _find_progress(tmp_path):
    for name in os.listdir(tmp_path):
        path = tmp_path / name / "leveldb.progress"
        if name.startswith("leveldb-progress.") and path.exists():
            try:
                return read_progress(str(path))
            except Exception:  # noqa: BLE001 - being replaced: read again
                return None
    return None


def test_role_cancels_a_copy_that_outlives_its_timeout_and_nothing_partial_is_left(tmp_path):
    """backup_progress_timeout=1 s: the poll gives up, cancels the job (SIGTERM), and the core's cleanup
    removes the partial copy; the previous good backup is untouched and the module process is gone.

    To be sure the job is caught mid-way on a machine of any speed, the test freezes the job's process
    (SIGSTOP) as soon as its progress file shows the copy phase; the cancel sends SIGCONT after SIGTERM
    (as systemd does), so a stopped job still runs its cleanup."""
    db = make_db(tmp_path / "db", 30000)
    dest = tmp_path / "backups" / "leveldb"
    dest.parent.mkdir()
    good = lb.backup(db, str(dest), name="good", fsync=False)
    before = sorted(os.listdir(good["path"]) + os.listdir(os.path.join(good["path"], "data")))
    make_db(tmp_path / "db", 30000, start=30000)  # new tables: the next copy has work to do
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=os.path.join(TOP, "roles"), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
               TMPDIR=str(tmp_path), PATH=BIN + os.pathsep + os.environ["PATH"])
    extra = {"ansible_python_interpreter": sys.executable, "fcrepo_backup_strategy": "hot",
             "fcrepo_backup_leveldb_dir": db, "fcrepo_backup_dest": str(tmp_path / "backups"),
             "fcrepo_backup_copy_timeout": 1, "backup_progress_interval": 1}
    play = subprocess.Popen(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
         "-e", json.dumps(extra)],
        cwd=TOP, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job = None
    try:
        deadline = time.monotonic() + 120
        while job is None and play.poll() is None and time.monotonic() < deadline:
            state = _find_progress(tmp_path)
            copying = state and state["step"] in ("LevelDB copy", "LevelDB verification")
            if copying and state["state"] == "running":
                os.kill(state["pid"], signal.SIGSTOP)
                job = state
            time.sleep(0.005)
        assert job is not None, "the copy phase never showed up in the progress file"
        out, err = play.communicate(timeout=300)
    finally:
        if play.poll() is None:
            play.kill()
            play.wait()
    assert play.returncode != 0, out + err
    assert ("LevelDB copy still running after 1 s (backup_progress_timeout), stopped: cancelled LevelDB"
            in out), out
    assert re.search(rf"cancelled LevelDB (copy|verification) \(pid {job['pid']}\): SIGTERM, exited after "
                     r"[\d.]+ s, its cleanup ran; the job says: backup cancelled \(received SIGTERM",
                     out), out
    assert "the partial copy was removed and the previous backups are untouched" in out
    assert not same_process(job)  # the module process is gone
    # nothing partial: only the good backup and the latest link; the good one as it was
    assert sorted(os.listdir(dest)) == ["latest", "leveldb-good"], os.listdir(dest)
    assert os.readlink(dest / "latest") == "leveldb-good"
    assert sorted(os.listdir(good["path"]) + os.listdir(os.path.join(good["path"], "data"))) == before
    assert lb.verify_backup(good["path"])["records"] == 30000
    # the rescue/always ran: the private progress directory and the async job file are gone
    assert not [n for n in os.listdir(tmp_path) if n.startswith("leveldb-progress.")]
    assert os.listdir(tmp_path / "async") == []
