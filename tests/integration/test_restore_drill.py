"""playbooks/restore_drill.yml through run_backup.yml (backup_strategy=restore_drill, as AWX and
backup_schedules.yml run it), ansible-playbook with a local connection: real btw backups (an
rdiff-backup chain, tar archives, a mysqldump of a real MariaDB started once for the module), the
newest good backup of each set restored into scratch places and proven, one backup_runs record per
host with RPO and RTO, the metrics file; a corrupted newest good backup fails the drill naming the
backup and the check. fcrepo: a real LevelDB (plyvel) and binary store owned by `nobody`, backups
made with the backup cores, the drill restoring them into a scratch fcrepo home owned like the store."""

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import plyvel
import pytest
import yaml
from ansible.module_utils import btw_db, btw_fs
from ansible.module_utils import fcrepo_binaries as fb
from ansible.module_utils import leveldb_backup as lb
from ansible.module_utils.btw_retention import shrink_guard

from tests.lib import canary
from tests.lib.mariadb import MariaDB

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fs_backup(root, name, kind, source):
    """One run of the fs_backup module's core, with its shrink guard record (.btw-runs.json)."""
    result = btw_fs.fs_backup(name, source, root, f"fs/{name}", kind)
    verdict = shrink_guard(result["destination"], result.get("location"), result["figures"],
                           result["stored"], 0.4)
    return result["location"], verdict["status"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("restore-drill")
    server = MariaDB(base / "db", 1)
    try:
        server.start()
        server.sql("CREATE DATABASE shop")
        server.sql("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB")
        server.sql("CREATE TABLE shop.orders (id INT PRIMARY KEY) ENGINE=InnoDB")
        server.sql("INSERT INTO shop.items VALUES (1, 'backed up')")
        root = base / "root"
        root.mkdir()
        src = base / "src"
        (src / "d").mkdir(parents=True)
        for index in range(5):
            (src / "d" / f"f{index}.txt").write_text(f"file {index}\n" * (index + 1))
        etc, _ = fs_backup(str(root), "etc", "rdiff", str(src))
        good_tar, status = fs_backup(str(root), "arch", "tar", str(src))
        assert status == "good"
        for index in range(1, 5):  # the source loses 4 of its 5 files: the next archive is suspect
            (src / "d" / f"f{index}.txt").unlink()
        suspect_tar, status = fs_backup(str(root), "arch", "tar", str(src))
        assert status == "suspect" and suspect_tar != good_tar
        dump = btw_db.db_backup("shop", "mysqldump", str(root), "db/shop", "shop", server.tcp)
        sets = [{"name": "etc", "type": "rdiff", "source": str(src), "destination": "fs/etc"},
                {"name": "arch", "type": "tar", "source": str(src), "destination": "fs/arch"},
                {"name": "shop", "type": "mysqldump", "database": "shop", "destination": "db/shop",
                 "connection": server.tcp}]
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "ansible_become": False, "btw_backup_root": str(root), "btw_backup_sets": sets,
                "restore_drill_scratch_dir": str(base / "scratch")}
        (base / "scratch").mkdir()
        (base / "metrics").mkdir()
        inventory = base / "inventory.yml"
        canary.write_private(inventory,
            yaml.safe_dump({"all": {"children": {"backup_hosts": {"hosts": {"localhost": host}}}}}))
        yield {"server": server, "base": base, "inventory": str(inventory), "root": root, "etc": etc,
               "good_tar": good_tar, "suspect_tar": suspect_tar, "dump": dump["location"]}
    finally:
        server.stop()


def run_drill(site, inventory=None, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_SHOW_CUSTOM_STATS="1", ANSIBLE_LOCAL_TEMP=str(site["base"] / "ansible-tmp"))
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
         "-i", inventory or site["inventory"],
         os.path.join(TOP, "playbooks", "run_backup.yml"), "-e", "backup_strategy=restore_drill",
         "-e", f"backup_metrics_dir={site['base'] / 'metrics'}", *args],
        cwd=TOP, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    runs = out.get("custom_stats", {}).get("_run", {}).get("backup_runs") or out.get(
        "global_custom_stats", {}).get("backup_runs", [])
    return proc.returncode, runs, proc.stdout + proc.stderr


def scratch_left(site):
    databases = [row[0] for row in site["server"].sql("SHOW DATABASES")]
    return os.listdir(site["base"] / "scratch"), [d for d in databases if d.startswith("restore_drill_")]


def test_drill_proves_the_newest_good_backups_and_publishes_rpo_rto_and_metrics(site):
    # what the operator keeps beside the drills' scratch directories stays as it was: the parent's
    # mode, a file of theirs, a directory named like an earlier drill's
    scratch = site["base"] / "scratch"
    (scratch / "keep.txt").write_text("the operator's\n")
    (scratch / "btw-localhost-20261203T000000Z").mkdir()
    (scratch / "btw-localhost-20261203T000000Z" / "a").write_text("kept\n")
    os.chmod(scratch, 0o750)
    try:
        rc, runs, out = run_drill(site)
        assert sorted(os.listdir(scratch)) == ["btw-localhost-20261203T000000Z", "keep.txt"]
        assert (scratch / "btw-localhost-20261203T000000Z" / "a").read_text() == "kept\n"
        assert oct(os.stat(scratch).st_mode & 0o7777) == oct(0o750)
    finally:
        os.unlink(scratch / "keep.txt")
        shutil.rmtree(scratch / "btw-localhost-20261203T000000Z")
        os.chmod(scratch, 0o755)
    assert rc == 0, out[-3000:]
    # a new directory of its own (mkdtemp), removed at the end
    assert re.search(r"/scratch/btw-localhost-\d{8}T\d{6}Z-\w+", out), out[-3000:]
    assert len(runs) == 1, runs  # one record per host
    run = runs[0]
    assert (run["strategy"], run["mode"], run["host"]) == ("restore_drill", "btw", "localhost")
    assert run["result"] == "ok"
    used = {b["set"]: b["backup"] for b in run["details"]["backups"]}
    # the suspect archive (4 of 5 files gone) is passed over for the good one before it
    assert used == {"etc": f"fs/etc/{os.path.basename(site['etc'])}",
                    "arch": f"fs/arch/{os.path.basename(site['good_tar'])}",
                    "shop": f"db/shop/{os.path.basename(site['dump'])}"}
    assert run["backup_age_seconds"] > 0 and run["restore_seconds"] > 0
    assert run["duration_seconds"] == run["restore_seconds"]
    checked = {(c["backup"].split("/")[1], c["check"]): (c["expected"], c["found"], c["ok"])
               for c in run["details"]["checked"]}
    assert checked[("arch", "files")] == (5, 5, True)
    assert checked[("etc", "files")] == (5, 5, True) and checked[("etc", "bytes")][2]
    assert checked[("shop", "dump objects")] == (2, 2, True)
    assert scratch_left(site) == ([], [])  # scratch directory and scratch database removed
    with open(site["base"] / "metrics" / "backup_toolkit.prom") as handle:
        metrics = handle.read()
    labels = '{strategy="restore_drill",set="btw/localhost"}'
    for name in ("last_success_timestamp_seconds", "last_restore_seconds", "last_backup_age_seconds"):
        assert f"backup_{name}{labels}" in metrics, metrics
    assert f"backup_last_result{labels} 1" in metrics
    # --check: the choice of backups only; nothing restored, nothing published
    rc, runs, out = run_drill(site, None, "--check")
    assert rc == 0 and runs == [], out[-2000:]
    assert scratch_left(site) == ([], [])


def test_a_database_named_like_the_scratch_one_is_never_dropped_or_loaded_into(site):
    """A restore_drill_<set> the drill did not create (an operator's copy kept from an earlier look):
    the restore into it is refused, the drill fails naming it, and the database stays as it was."""
    server = site["server"]
    server.sql("CREATE DATABASE restore_drill_shop")
    server.sql("CREATE TABLE restore_drill_shop.kept (id INT PRIMARY KEY)")
    server.sql("INSERT INTO restore_drill_shop.kept VALUES (42)")
    try:
        rc, runs, out = run_drill(site)
        assert rc != 0 and len(runs) == 1 and runs[0]["result"] == "failed", out[-3000:]
        assert "restore_drill_shop already exists" in out, out[-3000:]
        assert [tuple(r) for r in server.sql("SELECT id FROM restore_drill_shop.kept")] == [(42,)]
        assert os.listdir(site["base"] / "scratch") == []
    finally:
        server.sql("DROP DATABASE IF EXISTS restore_drill_shop")


def test_a_corrupted_newest_good_backup_fails_the_drill_naming_backup_and_check(site):
    # the good archive loses a member (still a readable tar): the copy no longer holds what the
    # backup recorded
    subprocess.run(["tar", "--delete", "-f", site["good_tar"], "./d/f3.txt"], check=True)
    rc, runs, out = run_drill(site)
    assert rc != 0
    assert len(runs) == 1 and runs[0]["result"] == "failed", runs
    backup = f"fs/arch/{os.path.basename(site['good_tar'])}"
    message = f"backup {backup} failed the check files: expected 5, found 4"
    assert message in runs[0]["details"]["failed"]
    assert message in out  # the job's failure names them too
    assert scratch_left(site) == ([], [])
    with open(site["base"] / "metrics" / "backup_toolkit.prom") as handle:
        metrics = handle.read()
    assert 'backup_last_result{strategy="restore_drill",set="btw/localhost"} 0' in metrics


def test_fcrepo_drill_restores_the_newest_good_leveldb_and_binaries_owned_like_the_store():
    owner = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="restore-drill-fcrepo-")
    try:
        home = os.path.join(base, "home")
        leveldb = os.path.join(home, "fcrepo.ispn.repo.cache", "dataFedoraRepository")
        binaries = os.path.join(home, "fcrepo.binary.directory")
        os.makedirs(os.path.dirname(leveldb))
        db = plyvel.DB(leveldb, create_if_missing=True, write_buffer_size=16 * 1024)
        for i in range(300):
            db.put(b"k%06d" % i, os.urandom(100))
        db.close()
        for i in range(3):
            content = os.urandom(2000) + bytes([i])
            path = os.path.join(binaries, fb.shard_path(hashlib.sha1(content).hexdigest()))  # noqa: S324
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
        for dirpath, _dirs, files in os.walk(home):
            os.chown(dirpath, owner.pw_uid, owner.pw_gid)
            os.chmod(dirpath, 0o750)
            for name in files:
                os.chown(os.path.join(dirpath, name), owner.pw_uid, owner.pw_gid)
                os.chmod(os.path.join(dirpath, name), 0o640)
        os.chmod(base, 0o711)
        dest = os.path.join(base, "backups")
        os.mkdir(dest, 0o700)
        good = lb.backup(leveldb, os.path.join(dest, "leveldb"))
        fb.backup(binaries, os.path.join(dest, "binaries"))
        os.mkdir(os.path.join(base, "scratch"))
        os.mkdir(os.path.join(base, "metrics"))
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "fcrepo_backup_home": home, "fcrepo_backup_dest": dest,
                "restore_drill_scratch_dir": os.path.join(base, "scratch")}
        inventory = os.path.join(base, "inventory.yml")
        with open(inventory, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"all": {"children": {"fcrepo_hosts": {"hosts": {"localhost": host}}}}}, handle)
        rc, runs, out = run_drill({"base": Path(base)}, inventory)
        assert rc == 0, out[-3000:]
        assert len(runs) == 1, runs
        run = runs[0]
        assert (run["strategy"], run["mode"], run["set"], run["result"]) == (
            "restore_drill", "fcrepo", "fcrepo/localhost", "ok")
        assert run["location"] == "leveldb/" + os.path.basename(good["path"])
        assert run["backup_age_seconds"] > 0 and run["restore_seconds"] > 0
        checked = {c["check"]: (c["expected"], c["found"], c["ok"]) for c in run["details"]["checked"]}
        assert checked["records"] == (300, 300, True)
        assert checked["binaries read back by the owner (SHA-1)"] == (3, 3, True)
        assert checked["SHA-1 mismatches"] == (0, 0, True)
        assert os.listdir(os.path.join(base, "scratch")) == []
        with open(os.path.join(base, "metrics", "backup_toolkit.prom")) as handle:
            metrics = handle.read()
        assert 'backup_last_backup_age_seconds{strategy="restore_drill",set="fcrepo/localhost"}' in metrics
    finally:
        shutil.rmtree(base, ignore_errors=True)
