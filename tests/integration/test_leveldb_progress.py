"""Progress of the LevelDB backup against a real LevelDB store (plyvel): the copy phase counts the bytes
copied against the bytes to copy, the verification phase the bytes of the records read; the module runs
as an async job that roles/backup_progress polls (the pattern roles/fcrepo_backup/tasks/copy.yml uses)."""
import json
import os
import re
import subprocess
import sys

from ansible.module_utils import leveldb_backup as lb
from ansible.module_utils.progress import ProgressFile, read_progress

from tests.integration.test_leveldb_backup_live import make_db

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def recording(log):
    class Recording(ProgressFile):
        def _write(self, state, force=False, message=None):
            super()._write(state, force=True, message=message)
            log.append(self.state(state, message))
            return True

    return Recording


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
