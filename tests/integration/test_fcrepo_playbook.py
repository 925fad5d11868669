"""playbooks/fcrepo_backup.yml and fcrepo_restore.yml run for real on this host (connection local):
hot and pause against a live writer process on a real LevelDB, rest against the REST stand-in
(tests/standins/fcrepo_rest.py: fcrepo itself cannot be installed here). Strategy shutdown needs a
service manager and runs in the molecule scenario `fcrepo`."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import plyvel
import pytest
import yaml
from ansible.module_utils import leveldb_backup as lb

from tests.lib import canary
from tests.lib.ports import free_port

FCREPO_PASSWORD = canary.canary("fcrepo-rest-pw")

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDINS = os.path.join(TOP, "tests", "standins")
PLAYBOOK = os.path.join(TOP, "playbooks", "fcrepo_backup.yml")
RESTORE = os.path.join(TOP, "playbooks", "fcrepo_restore.yml")


@pytest.fixture
def fcrepo(tmp_path):
    """An fcrepo home: LevelDB with data, a few binaries, an inventory; processes stopped at teardown."""
    home = tmp_path / "home"
    leveldb = home / "fcrepo.ispn.repo.cache" / "dataFedoraRepository"
    binaries = home / "fcrepo.binary.directory"
    leveldb.parent.mkdir(parents=True)
    db = plyvel.DB(str(leveldb), create_if_missing=True, write_buffer_size=64 * 1024)
    for i in range(1500):
        db.put(b"k%010d" % i, os.urandom(200).hex().encode())
    db.close()
    import hashlib

    for i in range(5):
        content = os.urandom(5000) + bytes([i])
        sha = hashlib.sha1(content).hexdigest()  # noqa: S324
        path = binaries / sha[0:2] / sha[2:4] / sha[4:6] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"fcrepo_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "fcrepo_backup_home": str(home), "fcrepo_backup_dest": str(tmp_path / "backups"),
        "fcrepo_backup_quiet_seconds": 1, "fcrepo_backup_quiet_timeout": 60}}}}}}))
    procs = []
    ctx = {"tmp": tmp_path, "home": home, "leveldb": str(leveldb), "binaries": str(binaries),
           "inventory": str(inventory), "dest": str(tmp_path / "backups"), "procs": procs}
    yield ctx
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_playbook(ctx, playbook, **extra):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_SHOW_CUSTOM_STATS="1",
               ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(["ansible-playbook", "-i", ctx["inventory"], playbook, "-e", json.dumps(extra)],
                          capture_output=True, text=True, env=env, cwd=TOP)
    out = json.loads(proc.stdout)
    runs = out["global_custom_stats"].get("backup_runs", [])
    return proc.returncode, runs, out


def start_writer(ctx):
    progress = str(ctx["tmp"] / "progress")
    proc = subprocess.Popen([sys.executable, os.path.join(STANDINS, "fcrepo_writer.py"), ctx["leveldb"],
                             "--progress", progress, "--delay", "0.001"])
    ctx["procs"].append(proc)

    def written():
        try:
            return int(open(progress, encoding="ascii").read() or 0)
        except (OSError, ValueError):
            return 0

    deadline = time.time() + 30
    while written() < 1600:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    return proc, written


def test_hot_strategy_backs_up_a_live_store_and_publishes_the_run(fcrepo):
    _proc, written = start_writer(fcrepo)
    before = written()
    rc, runs, _ = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="hot")
    assert rc == 0
    [run] = runs
    assert run["result"] == "ok" and run["host"] == "localhost"
    assert run["strategy"] == "fcrepo_backup" and run["mode"] == "hot"
    assert run["location"].startswith(os.path.join(fcrepo["dest"], "leveldb", "leveldb-"))
    assert run["size_bytes"] > 0 and run["duration_seconds"] > 0
    assert run["details"]["records"] >= before
    assert run["details"]["binaries_copied"] == 5
    assert lb.verify_backup(run["location"])["ok"]
    # a second hot run is incremental: most tables are linked, binaries are not copied again
    rc, runs, _ = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="hot")
    assert rc == 0 and runs[0]["details"]["bytes_linked"] > 0 and runs[0]["details"]["binaries_copied"] == 0


def test_pause_strategy_pauses_waits_for_quiet_compares_counts_and_resumes(fcrepo):
    proc, written = start_writer(fcrepo)
    rc, runs, _ = run_playbook(
        fcrepo, PLAYBOOK, fcrepo_backup_strategy="pause",
        fcrepo_backup_pause_command=["kill", "-USR1", str(proc.pid)],
        fcrepo_backup_resume_command=["kill", "-USR2", str(proc.pid)])
    assert rc == 0, runs
    [run] = runs
    assert run["result"] == "ok" and run["lock_seconds"] > 0
    assert run["details"]["records"] == run["details"]["source_records"] > 1500
    assert run["details"]["quiet_wait_seconds"] >= 1
    resumed_at = written()
    deadline = time.time() + 30
    while written() == resumed_at:
        assert time.time() < deadline, "writes were not resumed"
        time.sleep(0.05)


def test_pause_strategy_fails_and_resumes_when_the_store_never_gets_quiet(fcrepo):
    proc, written = start_writer(fcrepo)
    rc, runs, _ = run_playbook(
        fcrepo, PLAYBOOK, fcrepo_backup_strategy="pause", fcrepo_backup_quiet_timeout=3,
        fcrepo_backup_pause_command=["true"], fcrepo_backup_resume_command=["kill", "-USR2", str(proc.pid)])
    assert rc != 0
    [run] = runs
    assert run["result"] == "failed" and "did not stay quiet" in run["details"]["error"]
    assert lb.list_backups(os.path.join(fcrepo["dest"], "leveldb")) == []


def test_unknown_strategy_and_bad_source_fail_the_play_and_publish_failed(fcrepo):
    rc, runs, _ = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="snapshot")
    assert rc != 0
    assert runs[0]["result"] == "failed" and "snapshot" in runs[0]["details"]["error"]
    assert runs[0]["strategy"] == "fcrepo_backup" and runs[0]["mode"] == "snapshot"
    rc, runs, _ = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="hot",
                               fcrepo_backup_leveldb_dir=str(fcrepo["tmp"]))
    assert rc != 0
    assert runs[0]["result"] == "failed" and "not a LevelDB directory" in runs[0]["details"]["error"]


def test_rest_strategy_and_rest_restore_against_the_stand_in(fcrepo):
    port = free_port()
    log = fcrepo["tmp"] / "rest.log"
    pwfile = fcrepo["tmp"] / "pw"
    canary.write_private(pwfile, FCREPO_PASSWORD)
    proc = subprocess.Popen([sys.executable, os.path.join(STANDINS, "fcrepo_rest.py"), "--port", str(port),
                             "--workdir", str(fcrepo["tmp"]), "--binaries", fcrepo["binaries"],
                             "--log", str(log), "--user", "fedoraAdmin", "--password-file", str(pwfile)])
    fcrepo["procs"].append(proc)
    url = f"http://127.0.0.1:{port}/rest"
    deadline = time.time() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback stand-in
        except urllib.error.HTTPError:
            break  # 401: it is up
        except OSError:
            assert time.time() < deadline
            time.sleep(0.1)
    auth = {"fcrepo_backup_rest_url": url, "fcrepo_backup_rest_user": "fedoraAdmin",
            "fcrepo_backup_rest_password": FCREPO_PASSWORD}
    target = str(fcrepo["tmp"] / "rest-backup")
    rc, runs, out = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="rest",
                                 fcrepo_backup_rest_target=target, **auth)
    assert rc == 0
    assert runs[0]["result"] == "ok" and runs[0]["location"] == target
    assert runs[0]["size_bytes"] > 5 * 5000  # the stand-in copies the five binaries into its backup
    assert FCREPO_PASSWORD not in json.dumps(out)
    rc, runs, _ = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="rest",
                               **dict(auth, fcrepo_backup_rest_password=canary.canary("fcrepo-wrong-pw")))
    assert rc != 0 and runs[0]["result"] == "failed"
    restore = {"fcrepo_restore_method": "rest", "fcrepo_restore_rest_url": url,
               "fcrepo_restore_rest_user": "fedoraAdmin", "fcrepo_restore_rest_password": FCREPO_PASSWORD,
               "fcrepo_restore_confirm": "localhost"}  # fcr:restore replaces the repository
    rc, _, _ = run_playbook(fcrepo, RESTORE, fcrepo_restore_rest_backup=target, **restore)
    assert rc == 0
    bogus = str(fcrepo["tmp"] / "nope")
    rc, _, _ = run_playbook(fcrepo, RESTORE, fcrepo_restore_rest_backup=bogus, **restore)
    assert rc != 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["path"], c["status"]) for c in calls if c["method"] == "POST"] == [
        ("/rest/fcr:backup", 200), ("/rest/fcr:backup", 401), ("/rest/fcr:restore", 204),
        ("/rest/fcr:restore", 500)]
    proc.send_signal(signal.SIGTERM)


def test_a_source_that_lost_most_records_never_replaces_the_good_backups(fcrepo):
    """Issue 14: two good backups, then the store loses 90 % of its records in place; two more runs
    with retain 2 are suspect (kept, not latest, the job fails naming the drop and publishes a
    suspect run) and both good backups survive. One playbook run (about 15 s) is enough for the
    play's part; the other three runs call the module's core directly."""
    leveldb_dest = os.path.join(fcrepo["dest"], "leveldb")
    os.makedirs(fcrepo["dest"], mode=0o700)
    # the two good backups straight from the core (what the playbook's module runs), to save two runs
    good = [os.path.basename(lb.backup(fcrepo["leveldb"], leveldb_dest, name=name, retain=2)["path"])
            for name in ("good-1", "good-2")]
    db = plyvel.DB(fcrepo["leveldb"])
    try:
        for i in range(150, 1500):
            db.delete(b"k%010d" % i)
    finally:
        db.close()
    with pytest.raises(lb.SuspectBackupError):  # the third run from the core, the fourth through the play
        lb.backup(fcrepo["leveldb"], leveldb_dest, name="suspect-3", retain=2)
    rc, runs, _ = run_playbook(fcrepo, PLAYBOOK, fcrepo_backup_strategy="hot", fcrepo_backup_retain=2,
                               backup_progress_interval=1)
    assert rc != 0
    [run] = runs
    assert run["result"] == "suspect", run
    assert "records fell from 1500 to 150" in run["details"]["error"]
    assert "accept_shrink: true" in run["details"]["error"]
    assert run["details"]["shrink"][0]["figure"] == "records"
    assert run["location"].startswith(os.path.join(leveldb_dest, "leveldb-"))
    backups = [os.path.basename(p) for p in lb.list_backups(leveldb_dest)]
    assert backups[:2] == good and len(backups) == 4
    assert os.readlink(os.path.join(leveldb_dest, "latest")) == good[1]
    assert [lb.backup_status(os.path.join(leveldb_dest, b)) for b in backups] == [
        "good", "good", "suspect", "suspect"]
