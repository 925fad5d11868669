"""Run backups the way AWX does: ansible-runner with a private data dir (env/extravars,
env/envvars, inventory/, a vault password answered from env/passwords), through
playbooks/run_backup.yml with the real fs_backup strategy (GNU tar on this host)."""
import hashlib
import json
import os
import subprocess
import sys

import ansible_runner
import pytest
import yaml

from tests.lib import canary
from tests.lib.btw_servers import moto_s3  # noqa: F401  (fixture)
from tests.lib.mariadb import ROOT_PASSWORD
from tests.lib.ports import free_port

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
VAULT_PASSWORD = canary.VAULT


def events(result):
    return list(result.events)


def artifact_runs(result):
    for event in events(result):
        if event.get("event") == "playbook_on_stats":
            return (event["event_data"].get("artifact_data") or {}).get("backup_runs", [])
    raise AssertionError("no playbook_on_stats event")


def hosts_touched(result):
    return {event["event_data"].get("host") for event in events(result)
            if event.get("event", "").startswith("runner_on_")}


@pytest.fixture
def job(tmp_path, monkeypatch):
    """Build an AWX-like private data dir and return a function running one job in it."""
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ["PATH"])
    source = tmp_path / "data"
    (source / "docs").mkdir(parents=True)
    (source / "docs" / "report.txt").write_text("quarterly numbers\n" * 100)
    (source / "notes.txt").write_text("hello\n")
    root = tmp_path / "backups"
    root.mkdir()
    counter = {"n": 0}

    def run(extravars, inventory_vars=None, vault_vars=None, envvars=None, group="backup_hosts"):
        counter["n"] += 1
        pdd = tmp_path / f"pdd{counter['n']}"
        (pdd / "env").mkdir(parents=True)
        (pdd / "inventory").mkdir()
        host = {"ansible_connection": "local", "ansible_become": False,
                "ansible_python_interpreter": sys.executable}
        host.update(inventory_vars or {})
        canary.write_private(pdd / "inventory" / "hosts.yml", yaml.safe_dump(
            {group: {"hosts": {"backup1": host}}}))
        canary.write_private(pdd / "env" / "extravars", yaml.safe_dump(extravars))
        canary.write_private(pdd / "env" / "envvars", yaml.safe_dump({
            "ANSIBLE_CONFIG": os.path.join(TOP, "ansible.cfg"),
            # ansible-runner replaces ansible.cfg's callback_plugins with its own directory; AWX
            # sites set these two in "Extra Environment Variables" (see docs/operations.md)
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(TOP, "plugins", "callback"),
            "ANSIBLE_CALLBACKS_ENABLED": "backup_report",
            "BACKUP_REPORT_PATH": str(pdd / "report.json"),
            "PATH": os.environ["PATH"],
            **(envvars or {}),
        }))
        cmdline = ""
        if vault_vars:
            plain = pdd / "secrets.yml"
            canary.write_private(plain, yaml.safe_dump(vault_vars))
            pwfile = tmp_path / "vault-pw"
            canary.write_private(pwfile, VAULT_PASSWORD)
            subprocess.run([os.path.join(BIN, "ansible-vault"), "encrypt", "--vault-password-file",
                            str(pwfile), str(plain)], check=True, capture_output=True)
            pwfile.unlink()
            assert "$ANSIBLE_VAULT" in plain.read_text()
            # AWX answers the vault prompt; ansible-runner does it from env/passwords
            canary.write_private(pdd / "env" / "passwords",
                                 yaml.safe_dump({r"^Vault password:\s*?$": VAULT_PASSWORD}))
            cmdline = f"--ask-vault-pass -e @{plain}"
        if cmdline:
            (pdd / "env" / "cmdline").write_text(cmdline)
        result = ansible_runner.run(private_data_dir=str(pdd), project_dir=TOP,
                                    playbook="playbooks/run_backup.yml", quiet=True)
        result.pdd = pdd
        result.text = result.stdout.read()
        return result

    run.source = source
    run.root = root
    return run


def fs_vars(job, **extra):
    data = {"backup_strategy": "fs_backup", "btw_backup_root": str(job.root),
            "btw_backup_sets": [{"name": "data", "type": "tar", "source": str(job.source),
                                 "destination": "fs/data", "compression": "gzip"}]}
    data.update(extra)
    return data


def test_successful_job_publishes_backup_runs_in_the_artifacts(job):
    result = job(fs_vars(job))
    assert result.status == "successful" and result.rc == 0, result.text
    runs = artifact_runs(result)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["result"] == "ok" and run["host"] == "backup1"
    # the job's strategy name, what a workflow's next node and the metrics key on
    assert run["strategy"] == "fs_backup" and run["mode"] == "tar"
    assert run["location"].startswith(str(job.root / "fs" / "data"))
    assert os.path.isfile(run["location"]) and os.path.getsize(run["location"]) == run["size_bytes"] > 0
    assert run["duration_seconds"] >= 0
    # the same outcome in the report table and the JSON the callback wrote
    assert "BACKUP REPORT" in result.text and "backup1" in result.text
    report = json.loads((result.pdd / "report.json").read_text())
    assert report["summary"] == {"runs": 1, "ok": 1, "failed": 0}
    # and the artifacts on disk, where AWX picks them up
    assert (result.pdd / "artifacts" / result.config.ident / "rc").read_text().strip() == "0"


def test_failed_backup_fails_the_job_and_still_publishes(job):
    missing = str(job.source) + "-gone"
    result = job(fs_vars(job, btw_backup_sets=[{"name": "data", "type": "tar", "source": missing,
                                                "destination": "fs/data"}]))
    assert result.status == "failed" and result.rc != 0, result.text
    runs = artifact_runs(result)
    assert runs and all(run["result"] == "failed" for run in runs), runs
    assert "backup1" in hosts_touched(result)
    assert not os.listdir(job.root) or not any(
        name.endswith((".tar", ".tar.gz")) for _, _, files in os.walk(job.root) for name in files)


def test_unreachable_host_has_its_failed_run_in_the_artifacts(job):
    """A host that cannot be reached (ssh to a closed loopback port) never reaches the play's rescue;
    its failed run is still in the job's artifact_data, in the shape of the others (issue 15 item 19)."""
    lost = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": free_port(),
            "ansible_user": "nobody", "ansible_timeout": 5}
    result = job(fs_vars(job), inventory_vars=lost)
    assert result.status == "failed" and result.rc != 0, result.text
    runs = artifact_runs(result)
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run["strategy"], run["host"], run["result"], run["unreachable"]) == (
        "fs_backup", "backup1", "failed", True), run
    # ssh's own words for a closed port vary with timing ("Connection refused", or a broken pipe when
    # the connection dies while Ansible sends): the reason is ssh's, after the "unreachable: " mark
    assert run["details"].startswith("unreachable: "), run
    assert any(w in run["details"] for w in ("Connection refused", "Broken pipe", "could not be sent")), run
    assert {"location", "size_bytes", "duration_seconds"} <= set(run)
    # the report JSON holds the same run once (the callback does not add it a second time)
    report = json.loads((result.pdd / "report.json").read_text())
    assert report["runs"] == runs and report["summary"] == {"runs": 1, "ok": 0, "failed": 1}
    assert os.listdir(job.root) == []


def test_missing_required_variable_is_named_before_any_host_is_touched(job):
    result = job({"backup_strategy": "fs_backup", "btw_backup_root": str(job.root)})
    assert result.status == "failed" and result.rc != 0
    assert "required variable(s) not set: btw_backup_sets (for backup1)" in result.text
    assert hosts_touched(result) == {"localhost"}  # the validation play on the control node only
    assert artifact_runs(result)[0]["result"] == "failed"
    assert os.listdir(job.root) == []


def test_unknown_strategy_is_refused(job):
    result = job({"backup_strategy": "tape_backup"})
    assert result.status == "failed" and result.rc != 0
    assert "backup_strategy 'tape_backup' is not a known strategy" in result.text
    assert "fs_backup" in result.text  # the message lists the known ones
    assert hosts_touched(result) == {"localhost"}
    run = artifact_runs(result)[0]
    assert run["strategy"] == "tape_backup" and run["result"] == "failed"


def test_missing_strategy_is_refused(job):
    result = job({})
    assert result.status == "failed" and result.rc != 0
    assert "backup_strategy '(not set)' is not a known strategy" in result.text
    assert hosts_touched(result) == {"localhost"}


def test_variables_from_a_vault_answered_like_awx(job):
    """The backup sets come from a vault-encrypted vars file; the vault prompt is answered by
    ansible-runner from env/passwords, as AWX does for a vault credential."""
    extravars = fs_vars(job)
    sets = extravars.pop("btw_backup_sets")
    result = job(extravars, vault_vars={"btw_backup_sets": sets})
    assert result.status == "successful", result.text
    assert VAULT_PASSWORD not in result.text
    assert artifact_runs(result)[0]["result"] == "ok"


def secret_in_artifacts(result, secret):
    """Files of the private data dir (stdout, job events, ...) that contain the secret in clear."""
    found = []
    for dirpath, _, files in os.walk(result.pdd):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                if secret.encode() in handle.read():
                    found.append(os.path.relpath(path, result.pdd))
    return found


def test_db_backup_with_the_password_from_a_vault(job, mariadb_factory):
    """db_backup of a real MariaDB; the database password only exists vault-encrypted and never
    appears in clear in stdout, events or artifacts."""
    db = mariadb_factory("awx")
    db.sql("CREATE DATABASE app")
    db.sql("CREATE TABLE t (id int primary key, v varchar(10))", db="app")
    db.sql("INSERT INTO t VALUES (1, 'a')", db="app")
    extravars = {"backup_strategy": "db_backup", "btw_backup_root": str(job.root),
                 "btw_backup_db_login_host": "127.0.0.1", "btw_backup_db_login_port": db.port,
                 "btw_backup_db_login_user": "root",
                 "btw_backup_sets": [{"name": "app", "type": "mysqldump", "database": "app",
                                      "destination": "db/app"}]}
    result = job(extravars, vault_vars={"btw_backup_db_login_password": ROOT_PASSWORD})
    assert result.status == "successful", result.text
    run = artifact_runs(result)[0]
    assert run["result"] == "ok" and run["size_bytes"] > 0
    assert run["strategy"] == "db_backup" and run["mode"] == "mysqldump"
    dump = os.path.join(run["location"], "app.sql")
    with open(dump) as handle:
        assert "(1,'a')" in handle.read()
    assert secret_in_artifacts(result, ROOT_PASSWORD) == []


def test_fs_backup_and_offsite_sync_with_s3_keys_in_the_environment(job, moto_s3):  # noqa: F811
    """The S3 credential type's way: AWS_* in the job's environment, the endpoint as an extra var."""
    moto_s3.client().create_bucket(Bucket="offsite")
    secret = canary.S3_SECRET_KEY
    extravars = fs_vars(job, btw_backup_s3_bucket="offsite", btw_backup_s3_prefix="backup1",
                        btw_backup_s3_endpoint_url=moto_s3.endpoint)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}
    result = job(extravars, envvars=env)
    assert result.status == "successful", result.text
    runs = artifact_runs(result)
    assert [(run["strategy"], run["result"]) for run in runs] == [
        ("fs_backup", "ok"), ("offsite_sync", "ok")], runs
    keys = [obj["Key"] for obj in moto_s3.client().list_objects_v2(Bucket="offsite").get("Contents", [])]
    assert any(key.startswith("backup1/fs/data/") for key in keys), keys
    # the same keys for the off-site strategy on its own: nothing new to send, still a good run
    again = job({"backup_strategy": "offsite_sync", "btw_backup_root": str(job.root),
                 "btw_backup_s3_bucket": "offsite", "btw_backup_s3_prefix": "backup1",
                 "btw_backup_s3_endpoint_url": moto_s3.endpoint}, envvars=env)
    assert again.status == "successful", again.text
    assert [(run["strategy"], run["result"]) for run in artifact_runs(again)] == [("offsite_sync", "ok")]
    # env/envvars (the input) and the runner's record of the command's environment hold the key,
    # as with AWX's credential injection (AWX masks it in job_env); stdout and events never do
    leaks = [path for path in secret_in_artifacts(result, secret)
             if path != os.path.join("env", "envvars") and os.path.basename(path) != "command"]
    assert leaks == []


def test_fcrepo_backup_hot_on_a_real_leveldb(job, tmp_path):
    """fcrepo_backup (strategy hot) of a real LevelDB and binary store, under ansible-runner."""
    plyvel = pytest.importorskip("plyvel")
    home = tmp_path / "fcrepo-home"
    leveldb = home / "fcrepo.ispn.repo.cache" / "dataFedoraRepository"
    leveldb.parent.mkdir(parents=True)
    db = plyvel.DB(str(leveldb), create_if_missing=True)
    for i in range(300):
        db.put(b"k%06d" % i, b"value-%06d" % i)
    db.close()
    content = b"a binary of the repository"
    sha = hashlib.sha1(content).hexdigest()  # noqa: S324 - fcrepo 4 names binaries by SHA-1
    binary = home / "fcrepo.binary.directory" / sha[0:2] / sha[2:4] / sha[4:6] / sha
    binary.parent.mkdir(parents=True)
    binary.write_bytes(content)
    dest = tmp_path / "fcrepo-backups"
    result = job({"backup_strategy": "fcrepo_backup", "fcrepo_backup_strategy": "hot"},
                 inventory_vars={"fcrepo_backup_home": str(home), "fcrepo_backup_dest": str(dest)},
                 group="fcrepo_hosts")
    assert result.status == "successful", result.text
    runs = artifact_runs(result)
    assert runs and all(run["result"] == "ok" for run in runs), runs
    assert all(run["host"] == "backup1" for run in runs)
    assert all(run["strategy"] == "fcrepo_backup" and run["mode"] == "hot" for run in runs), runs
    copies = [os.path.join(run["location"], "data") for run in runs
              if os.path.isfile(os.path.join(run["location"], "data", "CURRENT"))]
    assert len(copies) == 1 and copies[0].startswith(str(dest)), runs
    copy = plyvel.DB(copies[0])
    try:
        assert copy.get(b"k000299") == b"value-000299"
    finally:
        copy.close()


def test_strategy_list_in_run_backup_matches_the_vars_file():
    with open(os.path.join(TOP, "playbooks", "vars", "run_backup_strategies.yml")) as handle:
        table = yaml.safe_load(handle)["run_backup_strategies"]
    with open(os.path.join(TOP, "playbooks", "run_backup.yml")) as handle:
        plays = yaml.safe_load(handle)
    import_expr = plays[-1]["vars"]["run_backup_playbook"]
    listed = import_expr.split("in [", 1)[1].split("]", 1)[0]
    names = [name.strip().strip("'") for name in listed.split(",")]
    assert sorted(names) == sorted(table)
    for name in table:
        assert os.path.exists(os.path.join(TOP, "playbooks", name + ".yml")) or name == "lvm_snapshot_backup"
