"""The btw playbooks end to end on this machine (connection local): exit codes and backup_runs."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.lib import canary
from tests.lib.btw_servers import moto_s3  # noqa: F401  (fixture)
from tests.lib.ports import free_port

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_playbook(tmp_path, playbook, host_vars):
    inventory = tmp_path / "inventory.yml"
    host = dict(ansible_connection="local", ansible_python_interpreter=sys.executable, ansible_become=False)
    host.update(host_vars)
    canary.write_private(inventory,
        yaml.safe_dump({"all": {"children": {"backup_hosts": {"hosts": {"localhost": host}}}}})
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_SHOW_CUSTOM_STATS="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
    )
    proc = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            str(inventory),
            os.path.join(TOP, "playbooks", playbook),
        ],
        cwd=TOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = json.loads(proc.stdout[proc.stdout.index("{") :])
    runs = out.get("custom_stats", {}).get("_run", {}).get("backup_runs") or out.get(
        "global_custom_stats", {}
    ).get("backup_runs", [])
    return proc.returncode, runs, out


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("one\n")
    root = tmp_path / "root"
    root.mkdir()
    return str(src), str(root)


def test_failed_set_fails_the_play_and_is_published(tmp_path, tree):
    src, root = tree
    rc, runs, _out = run_playbook(
        tmp_path,
        "fs_backup.yml",
        {
            "btw_backup_root": root,
            "btw_backup_sets": [
                {"name": "good", "type": "rdiff", "source": src, "destination": "fs/good"},
                {"name": "bad", "type": "tar", "source": str(tmp_path / "missing"), "destination": "fs/bad"},
            ],
        },
    )
    assert rc != 0
    by_set = {r["set"]: r for r in runs}
    assert {(r["strategy"], r["mode"]) for r in runs} == {("fs_backup", "rdiff"), ("fs_backup", "tar")}
    assert by_set["good"]["result"] == "ok" and by_set["good"]["host"] == "localhost"
    assert by_set["bad"]["result"] == "failed" and "does not exist" in by_set["bad"]["details"]
    assert os.path.isdir(os.path.join(root, "fs", "good"))
    assert not os.path.exists(os.path.join(root, "fs", "bad"))


def test_invalid_set_is_refused_before_anything_runs(tmp_path, tree):
    src, root = tree
    rc, runs, _out = run_playbook(
        tmp_path,
        "fs_backup.yml",
        {
            "btw_backup_root": root,
            "btw_backup_sets": [{"name": "x", "type": "zip", "source": src, "destination": "fs/x"}],
        },
    )
    assert rc != 0 and runs[0]["result"] == "failed" and runs[0]["strategy"] == "fs_backup"
    assert "backup set x is invalid" in " ".join(runs[0]["details"]["item_errors"])
    assert os.listdir(root) == []


def test_backup_and_sync_then_unchanged(tmp_path, tree, moto_s3):  # noqa: F811
    src, root = tree
    moto_s3.client().create_bucket(Bucket="offsite")
    host_vars = {
        "btw_backup_root": root,
        "btw_backup_sets": [{"name": "good", "type": "rdiff", "source": src, "destination": "fs/good"}],
        "btw_backup_s3_bucket": "offsite",
        "btw_backup_s3_endpoint_url": moto_s3.endpoint,
        "btw_backup_s3_access_key": "testing",
        "btw_backup_s3_secret_key": canary.S3_SECRET_KEY,
    }
    rc, runs, _out = run_playbook(tmp_path, "fs_backup.yml", host_vars)
    assert rc == 0, runs
    # strategy is the run_backup name (the sync after the backups is an offsite_sync run), mode the type
    assert [(r["strategy"], r.get("mode"), r["result"]) for r in runs] == [
        ("fs_backup", "rdiff", "ok"), ("offsite_sync", None, "ok")]
    assert runs[0]["details"].startswith("stored")
    rc, runs, out = run_playbook(tmp_path, "fs_backup.yml", host_vars)
    assert rc == 0 and runs[0]["details"].startswith("not stored: unchanged")
    # unchanged: nothing changed, the sync after the backups included (it sent nothing)
    assert out["stats"]["localhost"]["changed"] == 0, changed_tasks(out)
    assert runs[1]["result"] == "ok" and "0 uploaded" in runs[1]["details"], runs[1]
    # the run reports written into the root after each sync are not backups: nothing is pending,
    # so the journal can be reset
    assert [n for n in os.listdir(os.path.join(root, "fs", "good")) if n.startswith("backup-report-")]
    rc, _runs, out = run_playbook(
        tmp_path, "offsite_sync.yml", dict(host_vars, btw_backup_offsite_action="reset")
    )
    assert rc == 0, json.dumps(out)[-2000:]


def changed_tasks(out):
    """The names of the tasks (and loop items) that reported changed, for a failing assert."""
    names = []
    for play in out["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            if result.get("changed") or any(r.get("changed") for r in result.get("results", []) or []):
                names.append(task["task"]["name"])
    return names


def test_unreachable_s3_fails_the_sync_play(tmp_path, tree):
    src, root = tree
    os.makedirs(os.path.join(root, "fs"))
    with open(os.path.join(root, "fs", "a.tar"), "w") as f:
        f.write("x")
    rc, runs, _out = run_playbook(
        tmp_path,
        "offsite_sync.yml",
        {
            "btw_backup_root": root,
            "btw_backup_s3_bucket": "offsite",
            "btw_backup_s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
            "btw_backup_s3_access_key": "x",
            "btw_backup_s3_secret_key": canary.canary("s3-secret-unused"),
            "btw_backup_s3_retries": 2,
            "btw_backup_s3_backoff_base": 0.01,
        },
    )
    assert rc != 0
    assert runs[0]["strategy"] == "offsite_sync" and runs[0]["result"] == "failed"
    assert "unreachable" in runs[0]["details"] and "1 file(s) pending" in runs[0]["details"]
