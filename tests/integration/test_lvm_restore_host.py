"""LVM backup restores (plugins/module_utils/lvm_restore.py) on the host, against real MariaDB servers:
a backup in lvm_snapshot_copy's layout made from a real datadir (binlog inside it, so its index holds
absolute paths into the live datadir), restored into a scratch directory while the live server runs,
and in place into a datadir that is a mount point (a tmpfs: the contents are swapped, not the mount),
with a failure half way (an entry that cannot be moved: a mount point inside the datadir) rolled
back from what is on disk. The playbook around the in-place steps runs in the lab VM."""

import json
import os
import shutil
import socket
import subprocess
import tempfile

import pymysql
import pytest
from ansible.module_utils import lvm_restore as R
from ansible.module_utils.lvm_snapshot_copy import METADATA, write_manifest

from tests.lib.mariadb import MariaDB

NAME = "20261201T010000Z"
ROWS = 300


@pytest.fixture(scope="module")
def site():
    """A live server with rows, binlog in its datadir, and one backup of it (taken while stopped)."""
    # the scratch server runs as the unprivileged mysql user: its directories must be reachable
    base = tempfile.mkdtemp(prefix="bt-lvmrestore-", dir="/var/tmp")
    os.chmod(base, 0o711)
    live = MariaDB(os.path.join(base, "live"), 41)
    try:
        live.start(extra_args=[f"--log-bin={os.path.join(base, 'live', 'data', 'mysql-bin')}"])
        live.sql("CREATE DATABASE app")
        live.sql("CREATE TABLE app.events (id INT PRIMARY KEY, note VARCHAR(40))")
        live.sql("CREATE TABLE app.settings (k VARCHAR(20) PRIMARY KEY, v TEXT) ENGINE=Aria")
        live.sql(f"INSERT INTO app.events SELECT seq, CONCAT('e', seq) FROM seq_1_to_{ROWS}", db="app")
        live.sql("INSERT INTO app.settings VALUES ('a', '1'), ('b', '2')")
        live.sql("FLUSH BINARY LOGS")
        live.stop()
        dest = os.path.join(base, "backups")
        backup = os.path.join(dest, NAME)
        os.makedirs(os.path.join(backup, "mysql"))
        subprocess.run(["rsync", "-a", live.datadir + "/", os.path.join(backup, "mysql") + "/"], check=True)
        write_manifest(backup)
        with open(os.path.join(backup, METADATA), "w") as f:
            json.dump({"name": NAME, "verification": {"row_counts": {"app.events": ROWS}}}, f)
        live.start(extra_args=[f"--log-bin={os.path.join(base, 'live', 'data', 'mysql-bin')}"])
        yield dict(base=base, live=live, dest=dest, backup=backup)
    finally:
        live.stop()
        shutil.rmtree(base, ignore_errors=True)


def live_state(live):
    (uptime,) = live.sql("SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1:]
    return dict(pid=live.proc.pid, uptime=int(uptime), rows=live.sql("SELECT COUNT(*) FROM app.events")[0][0])


def test_scratch_restore_proves_the_copy_and_leaves_the_live_server_alone(site):
    live = site["live"]
    live.sql("INSERT INTO app.events VALUES (100000, 'after the backup')")
    before = live_state(live)
    scratch = os.path.join(site["base"], "scratch1")
    r = R.scratch_restore(site["dest"], "latest", "mysql", ".", scratch, live_datadir=live.datadir,
                          user="mysql")
    assert r["name"] == NAME and r["files_checked"] > 10
    assert r["tables_checked"] == 2
    # every table counted, and the count the backup recorded compared (the live server is further on)
    assert r["row_counts"] == {"app.events": ROWS, "app.settings": 2}
    assert r["row_counts_compared"] == ["app.events"]
    assert not os.path.exists(scratch)  # not kept: removed
    after = live_state(live)
    assert after["pid"] == before["pid"] and after["uptime"] >= before["uptime"]
    assert after["rows"] == ROWS + 1


def test_a_kept_scratch_server_runs_as_mysql_on_its_own_port_with_the_binlog_index_inside_the_copy(site):
    scratch = os.path.join(site["base"], "scratch2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = R.scratch_restore(site["dest"], NAME, "mysql", ".", scratch, live_datadir=site["live"].datadir,
                          user="mysql", port=port, keep=True)
    try:
        assert r["kept"] and r["port"] == port
        with open(f"/proc/{r['pid']}/status") as f:
            uid = [line.split()[1] for line in f if line.startswith("Uid:")][0]
        assert int(uid) == R.Scratch(scratch).ids()[0]  # the unprivileged user, not root
        conn = pymysql.connect(unix_socket=r["socket"], user="root")
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM app.events")
            assert cur.fetchone()[0] == ROWS
        conn.close()
        with open(os.path.join(scratch, "data", "mysql-bin.index")) as f:
            entries = f.read().split()
        assert entries and all(e.startswith(os.path.join(scratch, "data") + "/") for e in entries)
        assert oct(os.stat(r["defaults_file"]).st_mode & 0o777) == "0o600"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        # the port is now taken: a second kept restore on it is refused before anything is made
        other = os.path.join(site["base"], "scratch3")
        with pytest.raises(R.RestoreError, match=f"scratch port {port} is in use"):
            R.scratch_restore(site["dest"], NAME, "mysql", ".", other, user="mysql", port=port, keep=True)
        assert not os.path.exists(other)
    finally:
        R._terminate(r["pid"])
        shutil.rmtree(scratch, ignore_errors=True)


def test_bad_input_is_refused_before_anything_is_made(site, tmp_path):
    live = site["live"]
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("operator's")
    cases = [
        (dict(scratch_dir=str(used)), "exists and is not empty"),
        (dict(scratch_dir=os.path.join(live.datadir, "scratch")), "is the live datadir"),
        (dict(scratch_dir=os.path.join(site["dest"], "x")), "is the backup directory"),
        (dict(scratch_dir=str(tmp_path / "s"), name="20200101T000000Z"), "not found in"),
        (dict(scratch_dir=str(tmp_path / "s"), user="no-such-user-x"), "does not exist on this host"),
        (dict(scratch_dir=str(tmp_path / ("x" * 120))), "too long a path"),
    ]
    for extra, message in cases:
        args = dict(dest=site["dest"], name="latest", label="mysql", subdir=".", live_datadir=live.datadir,
                    user="mysql")
        args.update(extra)
        with pytest.raises(R.RestoreError, match=message):
            R.scratch_restore(**args)
    assert sorted(os.listdir(tmp_path)) == ["used"] and os.listdir(used) == ["keep.txt"]
    with pytest.raises(R.RestoreError, match="no backup to restore"):
        R.scratch_restore(str(tmp_path / "none"), "latest", "mysql", ".", str(tmp_path / "s"))


def test_a_backup_failing_its_manifest_is_not_restored(site, tmp_path):
    bad_dest = tmp_path / "dest"
    shutil.copytree(site["backup"], bad_dest / NAME, symlinks=True)
    victim = bad_dest / NAME / "mysql" / "app" / "events.ibd"
    data = bytearray(victim.read_bytes())
    data[20000] ^= 0xFF
    victim.write_bytes(bytes(data))
    scratch = tmp_path / "scratch"
    with pytest.raises(R.RestoreError, match=r"fails its manifest \(1 file\(s\): mysql/app/events.ibd"):
        R.scratch_restore(str(bad_dest), "latest", "mysql", ".", str(scratch), user="mysql")
    assert not scratch.exists()


@pytest.fixture
def mounted_datadir(site):
    """A second server whose datadir is a mount point (tmpfs), as the role's default layout has it."""
    base = os.path.join(site["base"], "inplace")
    server = MariaDB(base, 42)
    os.makedirs(server.datadir)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m,mode=0750", "tmpfs", server.datadir], check=True)
    try:
        server.start()
        server.sql("CREATE DATABASE app")
        server.sql("CREATE TABLE app.events (id INT PRIMARY KEY, note VARCHAR(40))")
        server.sql("INSERT INTO app.events VALUES (1, 'the live data, newer than the backup')")
        server.sql("CREATE DATABASE onlylive")
        server.stop()
        yield server
    finally:
        server.stop()
        subprocess.run(["umount", "-R", server.datadir], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_in_place_into_a_mount_point_datadir_swaps_the_contents(site, mounted_datadir):
    server, run = mounted_datadir, "20261203T041500Z"
    st = os.stat(server.datadir)
    p = R.prepare_in_place(site["dest"], "latest", "mysql", ".", server.datadir, run)
    staging = os.path.join(server.datadir, f".restore-staging-{run}")
    assert p["staging"] == staging and os.path.isdir(staging)
    assert os.stat(staging).st_dev == st.st_dev  # on the datadir's own filesystem
    server.start()
    with pytest.raises(R.RestoreError, match="still runs in"):
        R.swap_in_place(server.datadir, run)  # the server must be stopped first
    server.stop()
    s = R.swap_in_place(server.datadir, run)
    assert s["aside"] == os.path.join(server.datadir, f".pre-restore-{run}")
    assert os.path.ismount(server.datadir)  # the mount is still there
    assert os.path.isdir(os.path.join(s["aside"], "onlylive"))
    with open(os.path.join(server.datadir, "mysql-bin.index")) as f:
        assert all(e.startswith(server.datadir + "/") for e in f.read().split())
    server.start()
    assert server.sql("SELECT COUNT(*) FROM app.events")[0][0] == ROWS
    assert ("onlylive",) not in server.sql("SHOW DATABASES")
    server.stop()
    done = R.finish_in_place(server.datadir, run, keep_previous=True)
    assert done["previous"] == s["aside"] and os.path.isdir(s["aside"])
    assert os.stat(os.path.join(server.datadir, "app")).st_uid == st.st_uid


def test_a_swap_failing_half_way_is_rolled_back_from_what_is_on_disk(site, mounted_datadir):
    server, run = mounted_datadir, "20261203T041600Z"
    before = sorted(os.listdir(server.datadir))
    # an entry that cannot be moved (a mount point inside the datadir): the set-aside stops half way
    blocker = os.path.join(server.datadir, "zz_blocker")
    os.mkdir(blocker)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", blocker], check=True)
    try:
        R.prepare_in_place(site["dest"], "latest", "mysql", ".", server.datadir, run)
        with pytest.raises(OSError):
            R.swap_in_place(server.datadir, run)
        aside = os.path.join(server.datadir, f".pre-restore-{run}")
        assert os.listdir(aside)  # some entries were moved, not all
        r = R.rollback_in_place(server.datadir, run)
        assert r["state"] == "rolled_back" and r["failed_dir"] is None  # nothing restored had moved in
    finally:
        subprocess.run(["umount", blocker], check=False)
        os.rmdir(blocker)
    assert sorted(os.listdir(server.datadir)) == before
    server.start()
    assert server.sql("SELECT note FROM app.events")[0][0] == "the live data, newer than the backup"
    server.stop()


def test_a_restore_that_fails_after_the_swap_puts_the_live_data_back(site, mounted_datadir):
    server, run = mounted_datadir, "20261203T041700Z"
    R.prepare_in_place(site["dest"], "latest", "mysql", ".", server.datadir, run)
    R.swap_in_place(server.datadir, run)
    r = R.rollback_in_place(server.datadir, run)  # e.g. the restored server did not check clean
    failed = os.path.join(server.datadir, f".failed-restore-{run}")
    assert r["state"] == "rolled_back" and r["failed_dir"] == failed
    assert os.path.isdir(os.path.join(failed, "app"))
    assert os.path.isdir(os.path.join(server.datadir, "onlylive"))
    assert not os.path.exists(os.path.join(server.datadir, f".pre-restore-{run}"))
    server.start()
    assert server.sql("SELECT note FROM app.events")[0][0] == "the live data, newer than the backup"
    server.stop()
    # a second rollback finds nothing set aside: it says so and changes nothing
    assert R.rollback_in_place(server.datadir, run)["state"] == "untouched"
