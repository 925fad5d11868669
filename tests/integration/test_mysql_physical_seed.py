"""The physical seed (mysql_physical_seed) between two real MariaDB servers on loopback: a real
mariadb-backup stream of the source, extracted with mbstream into the replica's datadir, prepared,
swapped in, the ignored tables emptied, replication started from the backup's own coordinates, the
tables compared. The stream command runs on this host (in production it is ssh to the source).

Then the guards: no room on the backup host and a long-running query are refused before anything is
streamed (the first through ansible-playbook, the module as a play runs it); a stream failing half
way leaves no staging directory and the replica as it was; the swap is refused while the replica's
server runs.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pymysql
import pytest
from ansible.module_utils import mysql_physical_seed as seed
from ansible.module_utils.mysql_checksum import compare_tables
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_replica import ensure_replica

from tests.lib import canary
from tests.lib.mariadb import ROOT_PASSWORD

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPL_PASSWORD = canary.canary("physical-repl-pw")
IGNORED = ["app.skipped"]

pytestmark = pytest.mark.skipif(not shutil.which("mariadb-backup") or not shutil.which("mbstream"),
                                reason="needs mariadb-backup and mbstream (scripts/setup.sh installs them)")


def stream_command(src):
    return ["mariadb-backup", "--backup", "--stream=xbstream", f"--socket={src.socket}", "--user=root",
            f"--datadir={src.datadir}"]


def run_id():
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def conn(server):
    return connect(dict(unix_socket=server.socket, user="root"))


@pytest.fixture
def pair(mariadb_factory):
    src = mariadb_factory("source", server_id=1)
    dst = mariadb_factory("replica", server_id=2,
                          extra_args=[f"--replicate-ignore-table={t}" for t in IGNORED])
    src.sql("CREATE DATABASE app")
    src.sql("CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64), payload TEXT, "
            "KEY (name)) ENGINE=InnoDB")
    src.sql("CREATE TABLE app.skipped (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    src.sql("INSERT INTO app.items (name, payload) SELECT CONCAT('item-', seq), REPEAT('x', 300) "
            "FROM seq_1_to_3000", db="app")
    src.sql("INSERT INTO app.skipped (v) VALUES (1), (2)")
    src.sql(f"CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'")
    src.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
    dst.sql("CREATE DATABASE before_seed")  # the replica's own data: set aside, then removed at finish
    return src, dst


def entries(datadir):
    return sorted(os.listdir(datadir))


def test_seeded_from_a_mariadb_backup_stream_then_replicating(pair):
    src, dst = pair
    run = run_id()
    source = conn(src)
    try:
        staged = seed.stage(stream_command(src), dst.datadir, run, source)
    finally:
        source.close()
    staging = os.path.join(dst.datadir, f".restore-staging-{run}")
    assert staged["staging"] == staging and os.path.isdir(os.path.join(staging, "app"))
    assert staged["binlog_file"].startswith("mysql-bin.") and staged["binlog_position"] > 4
    assert staged["gtid"] == src.sql("SELECT @@gtid_binlog_pos")[0][0]
    assert os.stat(staging).st_uid == os.stat(dst.datadir).st_uid

    # written after the backup: must arrive by replication
    src.sql("INSERT INTO app.items (name) VALUES ('after the backup')")
    src.sql("INSERT INTO app.skipped (v) VALUES (3)")

    with pytest.raises(seed.PhysicalSeedError, match="a process still runs in .*stop the replica's server"):
        seed.swap(dst.datadir, run)
    dst.stop()
    swapped = seed.swap(dst.datadir, run)
    assert swapped["aside"] == os.path.join(dst.datadir, f".pre-restore-{run}")
    dst.start(extra_args=["--skip-slave-start"])
    assert dst.sql("SHOW DATABASES LIKE 'before_seed'") == ()

    replica = conn(dst)
    try:
        emptied = seed.empty_ignored(replica, IGNORED + ["app.not_there"])
        assert emptied == dict(changed=True, emptied=[dict(table="app.skipped", rows=2)])
        assert dst.sql("SELECT COUNT(*) FROM app.skipped")[0][0] == 0  # before replication starts
        started = ensure_replica(replica, dict(
            source_host="127.0.0.1", source_port=src.port, source_user="repl", source_password=REPL_PASSWORD,
            source_log_file=staged["binlog_file"], source_log_pos=staged["binlog_position"], state="running",
            update_password="on_create", wait=True, max_lag_seconds=5, wait_timeout=60, flavor="auto"))
        assert started["changed"]
        source = conn(src)
        try:
            compared = compare_tables(replica, source, dict(databases=["app"], ignore_tables=IGNORED,
                                                            wait_timeout=60))
        finally:
            source.close()
    finally:
        replica.close()
    assert compared["mismatched"] == [] and compared["compared"] == 1, compared
    assert dst.sql("SELECT COUNT(*) FROM app.items WHERE name = 'after the backup'")[0][0] == 1
    assert dst.sql("SELECT COUNT(*) FROM app.skipped")[0][0] == 0  # ignored: nothing replicated into it

    assert seed.finish(dst.datadir, run)["changed"]
    assert not [e for e in entries(dst.datadir) if e.startswith((".pre-restore", ".restore-staging"))]
    assert not seed.finish(dst.datadir, run)["changed"]  # again: nothing left to do


def _module_play(tmp_path, args):
    playbook = tmp_path / "play.yml"
    canary.write_private(playbook, "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                         "    - mysql_physical_seed: " + json.dumps(args) + "\n")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="False")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
            "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=TOP, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc, out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_refused_before_streaming_and_a_failed_stream_leaves_nothing(pair, tmp_path):
    src, dst = pair
    run = run_id()
    before = entries(dst.datadir)
    pid = dst.proc.pid

    # no room on the backup host (the module through ansible-playbook): refused before the stream starts
    marker = tmp_path / "streamed"
    proc, result = _module_play(tmp_path, dict(
        step="stage", run=run, datadir=dst.datadir, reserve_bytes=2**60,
        source_host="127.0.0.1", source_port=src.port, source_user="root", source_password=ROOT_PASSWORD,
        stream_command=["sh", "-c", f"touch {marker}"]))
    assert proc.returncode != 0 and result["failed"]
    assert "no room for the physical seed's copy" in result["msg"] and "nothing was streamed" in result["msg"]
    assert not marker.exists() and ROOT_PASSWORD not in proc.stdout + proc.stderr

    # a query running longer than max_query_seconds on the source: refused. The query sleeps long;
    # the check runs once the source's own process list shows it past the limit (a fixed wait
    # raced with a slow connect on a loaded machine), and the query is killed afterwards.
    sleeper_conn = pymysql.connect(unix_socket=src.socket, user="root")
    sleeper_id = sleeper_conn.thread_id()

    def sleeper():
        try:
            sleeper_conn.cursor().execute("SELECT SLEEP(120)")
        except pymysql.MySQLError:
            pass
        finally:
            sleeper_conn.close()

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not [row for row in src.sessions()
                   if row["ID"] == sleeper_id and str(row["INFO"]).startswith("SELECT SLEEP")
                   and int(row["TIME"] or 0) >= 3]:
            assert time.monotonic() < deadline, "the long query never showed in the source's process list"
            time.sleep(0.5)
        source = conn(src)
        try:
            with pytest.raises(seed.PhysicalSeedError, match=r"queries running longer than 2s.*SLEEP\(120\).*"
                                                              r"nothing was streamed"):
                seed.stage(stream_command(src), dst.datadir, run, source, max_query_seconds=2)
        finally:
            source.close()
    finally:
        src.sql(f"KILL QUERY {sleeper_id}")
        thread.join()

    # the stream cut half way: mbstream/prepare fail, the staging directory goes, the replica is as it was
    cut = ["bash", "-o", "pipefail", "-c", " ".join(stream_command(src)) + " | head -c 300000"]
    source = conn(src)
    try:
        with pytest.raises(seed.PhysicalSeedError, match="the staging directory was removed"):
            seed.stage(cut, dst.datadir, run, source)
    finally:
        source.close()
    assert entries(dst.datadir) == before and dst.proc.pid == pid and dst.proc.poll() is None
    assert dst.sql("SHOW DATABASES LIKE 'before_seed'") == (("before_seed",),)
    with pytest.raises(seed.PhysicalSeedError, match="nothing staged"):
        seed.swap(dst.datadir, run)
