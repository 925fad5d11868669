"""Binlog archive and point-in-time recovery against real MariaDB servers on loopback (issue 16).

The archiver runs as the systemd unit of roles/mysql_binlog_archive runs it:
``python3 binlog_archive.py run --config <source>.json`` (which execs mariadb-binlog --raw
--stop-never). Nothing of the binlogs is faked: what the tests replay is what the archiver fetched.
"""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from ansible.module_utils import binlog_archive, btw_db, mysql_pitr

from tests.lib import canary
from tests.lib.mariadb import ROOT_PASSWORD, MariaDB

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHIVER = os.path.join(TOP, "plugins", "module_utils", "binlog_archive.py")


class Archiver:
    """One archiver process for a source, started with the unit's command line."""

    def __init__(self, base, source, server_id=4242, password=ROOT_PASSWORD):
        self.directory = str(base / "archive" / "src")
        self.defaults_file = str(base / f"archiver-{server_id}.cnf")
        binlog_archive.write_option_file(
            self.defaults_file, dict(host="127.0.0.1", port=source.port, user="root", password=password)
        )
        self.config = str(base / f"archiver-{server_id}.json")
        with open(self.config, "w") as f:
            json.dump(
                dict(directory=self.directory, defaults_file=self.defaults_file, server_id=server_id), f
            )
        self.proc = None
        self.log = str(base / f"archiver-{server_id}.log")

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, ARCHIVER, "run", "--config", self.config],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),
        )
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def status(self):
        return binlog_archive.status(self.directory, self.defaults_file)

    def wait_caught_up(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            if st["lag_bytes"] == 0:
                return st
            time.sleep(0.1)
        raise AssertionError(
            f"archive not caught up in {timeout}s: {self.status()}; log: {open(self.log).read()}"
        )


def rows(server, table):
    return server.sql(f"SELECT * FROM {table} ORDER BY id")


def checksum(server, table):
    return server.sql(f"CHECKSUM TABLE {table} EXTENDED")[0][1]


def replay_all(directory, target):
    files = [os.path.join(directory, n) for n, _s in binlog_archive.archive_files(directory)]
    p1 = subprocess.Popen(["mariadb-binlog", "--no-defaults", *files], stdout=subprocess.PIPE)
    subprocess.run(
        ["mariadb", "--no-defaults", f"--socket={target.socket}", "-uroot", "--binary-mode"],
        stdin=p1.stdout,
        check=True,
    )
    assert p1.wait() == 0


def delays_behind_the_writer(source, directory, samples=8):
    """Seconds until the archive holds what the source had written at a moment, sampled while the
    writer runs: the archive keeps up when each is short."""
    delays = []
    for _ in range(samples):
        name, position = source.sql("SHOW MASTER STATUS")[0][:2]
        path = os.path.join(directory, name)
        t0 = time.monotonic()
        while not (os.path.exists(path) and os.path.getsize(path) >= position):
            if time.monotonic() - t0 > 10:
                break
            time.sleep(0.005)
        delays.append(round(time.monotonic() - t0, 3))
        time.sleep(0.05)
    return delays


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One bootstrapped datadir, copied for every server of the module (a bootstrap costs seconds)."""
    server = MariaDB(tmp_path_factory.mktemp("pitr-template"), 0)
    server.install()
    return server.datadir


def new_server(path, server_id, template):
    server = MariaDB(path, server_id)
    shutil.copytree(template, server.datadir)
    return server.start()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, template):
    """A source with an archiver running, a dump with coordinates taken after some writes, then
    more writes, a DROP TABLE and writes after it; what the source held just before the DROP."""
    base = tmp_path_factory.mktemp("pitr")
    source = new_server(base / "source", 1, template)
    archiver = None
    try:
        archiver = Archiver(base, source).start()
        source.sql("CREATE DATABASE app")
        source.sql("CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB")
        source.sql("CREATE TABLE app.u (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        for i in range(20):
            source.sql("INSERT INTO app.t VALUES (%s, %s)", (i, f"before-dump-{i}"))
        dump = base / "full-1.sql"
        with open(dump, "wb") as out:
            subprocess.run(
                [
                    "mariadb-dump",
                    "--no-defaults",
                    f"--socket={source.socket}",
                    "-uroot",
                    "--single-transaction",
                    "--master-data=2",
                    "--gtid",
                    "--databases",
                    "app",
                ],
                stdout=out,
                check=True,
            )
        os.chmod(dump, 0o600)
        dump_time = time.time()
        # the steady writer; killed -9 mid-stream, restarted, a rotation while it was down
        stop = threading.Event()

        def writer():
            n = 1000
            while not stop.is_set():
                source.sql("INSERT INTO app.u VALUES (%s, %s)", (n, n))
                source.sql("UPDATE app.t SET v = %s WHERE id = %s", (f"w{n}", n % 20))
                n += 1
                time.sleep(0.005)

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.4)
        archiver.kill(signal.SIGTERM)  # stopped as systemd stops it
        time.sleep(0.2)
        archiver.start()
        time.sleep(0.4)
        archiver.kill(signal.SIGKILL)  # killed in the middle of the stream
        source.sql("FLUSH BINARY LOGS")
        time.sleep(0.4)
        archiver.start()
        time.sleep(0.3)
        source.sql("FLUSH BINARY LOGS")
        time.sleep(0.2)
        keep_up = delays_behind_the_writer(source, archiver.directory)
        stop.set()
        thread.join()
        # the moment to recover to: a new second, then the DROP, then writes that must survive a skip
        time.sleep(1.05 - (time.time() % 1))
        before_drop = dict(t=rows(source, "app.t"), u=rows(source, "app.u"), t_sum=checksum(source, "app.t"))
        moment = time.time()
        source.sql("DROP TABLE app.t")
        drop_gtid = source.sql("SELECT @@gtid_binlog_pos")[0][0]
        source.sql("INSERT INTO app.u VALUES (1, 1), (2, 2)")
        source.sql("UPDATE app.u SET v = v + 1 WHERE id < 1100")
        status = archiver.wait_caught_up()
        yield dict(
            base=base,
            source=source,
            archiver=archiver,
            dump=str(dump),
            dump_time=dump_time,
            before_drop=before_drop,
            moment=moment,
            drop_gtid=drop_gtid,
            status=status,
            keep_up=keep_up,
        )
    finally:
        if archiver:
            archiver.kill(signal.SIGTERM)
        source.stop()


def backups(lab):
    return [dict(kind="dump", path=lab["dump"])]


def test_archive_survives_kill_and_restart_without_gap_or_duplicate(lab, tmp_path, template):
    # it kept up with the writer after the restarts: each byte written was archived within a second
    # (the benchmark's target; a loaded 2-core host, so one late sample is let pass)
    delays = sorted(lab["keep_up"])
    assert delays[-2] < 1.0 and delays[-1] < 3.0, delays
    st = lab["status"]
    assert st["continuous"], st["gaps"]
    assert st["file_count"] >= 3
    assert st["lag_bytes"] == 0 and st["lag_seconds"] == 0
    # every GTID once, consecutive: no duplicate, no hole
    index = mysql_pitr.ArchiveIndex(lab["archiver"].directory)
    seqs = [int(t["gtid"].rsplit("-", 1)[1]) for t in index.trx]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert index.trx[-1]["gtid"] == lab["source"].sql("SELECT @@gtid_binlog_pos")[0][0]
    # the proof: the whole archive replayed onto a fresh server equals the source
    fresh = new_server(tmp_path / "fresh", 7, template)
    try:
        replay_all(lab["archiver"].directory, fresh)
        assert rows(fresh, "app.u") == rows(lab["source"], "app.u")
        assert checksum(fresh, "app.u") == checksum(lab["source"], "app.u")
        assert fresh.sql("SHOW TABLES FROM app") == (("u",),)
    finally:
        fresh.stop()


def _restore(lab, tmp_path, name, **target):
    skip = target.pop("skip", None)
    p = mysql_pitr.plan(
        lab["archiver"].directory,
        backups(lab),
        mysql_pitr.parse_target(**target),
        mysql_pitr.parse_skip(gtid=skip),
    )
    result = mysql_pitr.execute(p, scratch_dir=str(tmp_path / name), scratch_user="root")
    server = MariaDB(tmp_path / name, 0)
    server.socket = result["scratch"]["socket"]
    return result, server, mysql_pitr.ScratchInstance(str(tmp_path / name), "root")


def _stop(result, scratch):
    scratch.pid = result["scratch"]["pid"]
    scratch.stop()


def test_the_drop_is_found_in_the_archive_by_table_and_time(lab):
    # what playbooks/mysql_binlog_events.yml lists: transactions in a window touching a table
    index = mysql_pitr.ArchiveIndex(lab["archiver"].directory)
    moment = int(lab["moment"])
    around = index.events(since=moment - 1, until=moment + 1, database="app", table="t")
    assert [e["gtid"] for e in around if "DROP TABLE" in (e["statement"] or "")] == [lab["drop_gtid"]]
    assert all("app.u" not in e["tables"] for e in around), around
    writes = index.events(since=moment, table="u")
    assert writes and all(e["tables"] == ["app.u"] for e in writes)
    assert lab["drop_gtid"] not in [e["gtid"] for e in writes]
    assert index.events(since=moment - 1, table="orders") == []


def test_restore_to_a_datetime_just_before_the_drop(lab, tmp_path):
    # given in another time zone: 16:02:07+02:00 is 14:02:07 UTC
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    stamp = datetime.datetime.fromtimestamp(int(lab["moment"]), plus_two).isoformat()
    result, server, scratch = _restore(lab, tmp_path, "at-datetime", datetime_=stamp)
    # the DROP's GTID as the target is the same replay (restored for real by the playbook test)
    by_gtid = mysql_pitr.plan(
        lab["archiver"].directory, backups(lab), mysql_pitr.parse_target(gtid=lab["drop_gtid"])
    )
    assert (by_gtid["ranges"], by_gtid["backup"]["path"]) == (
        [
            (r["from_file"], r["from_position"], r["to_file"], r["to_position"], r["transactions"])
            for r in result["ranges"]
        ],
        lab["dump"],
    )
    try:
        assert rows(server, "app.t") == lab["before_drop"]["t"]
        assert checksum(server, "app.t") == lab["before_drop"]["t_sum"]
        assert rows(server, "app.u") == lab["before_drop"]["u"]
        assert result["stops_before"]["gtid"] == lab["drop_gtid"]
        assert result["transactions_applied"] == result["transactions"] > 0
        assert result["last_applied"]["timestamp"] < int(lab["moment"])
    finally:
        _stop(result, scratch)


def test_restore_that_skips_the_drop_keeps_what_followed(lab, tmp_path):
    # the source minus that one statement
    result, server, scratch = _restore(lab, tmp_path, "skip", latest=True, skip=lab["drop_gtid"])
    try:
        assert result["skipped"]["gtid"] == lab["drop_gtid"]
        assert len(result["ranges"]) == 2 and result["stops_before"] is None
        assert rows(server, "app.t") == lab["before_drop"]["t"]
        assert checksum(server, "app.t") == lab["before_drop"]["t_sum"]
        assert rows(server, "app.u") == rows(lab["source"], "app.u")
        assert checksum(server, "app.u") == checksum(lab["source"], "app.u")
    finally:
        _stop(result, scratch)


def test_bad_targets_are_refused_before_anything_changes(lab, tmp_path):
    directory = lab["archiver"].directory
    scratch = tmp_path / "never"

    def refused(match, archive=directory, **target):
        with pytest.raises(mysql_pitr.PitrError, match=match) as err:
            p = mysql_pitr.plan(archive, backups(lab), mysql_pitr.parse_target(**target))
            mysql_pitr.execute(p, scratch_dir=str(scratch), scratch_user="root")
        assert not scratch.exists()
        assert "the archive covers" in str(err.value)
        return str(err.value)

    # what --check prints: the plan, decided from the archive alone, with nothing made
    plan = mysql_pitr.summary(
        mysql_pitr.plan(directory, backups(lab), mysql_pitr.parse_target(gtid=lab["drop_gtid"]))
    )
    assert plan["backup"]["name"] == "full-1.sql" and plan["stops_before"]["gtid"] == lab["drop_gtid"]
    assert plan["transactions"] == sum(r["transactions"] for r in plan["ranges"]) > 0
    assert plan["last_applied"]["timestamp"] <= lab["moment"] and "the archive covers" in plan["archive"]
    assert not scratch.exists()
    # before the oldest backup: the dump's state holds only from its last transaction on
    early = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(lab["dump_time"] - 3600))
    refused("before the oldest full backup", datetime_=early)
    late = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600))
    refused("after the archive's end", datetime_=late)
    refused("not in the archive", gtid="0-1-999999")
    # a missing archive file: a copy of the archive without its first file after the dump's
    copy = tmp_path / "holed"
    shutil.copytree(directory, copy)
    files = [n for n, _s in binlog_archive.archive_files(str(copy))]
    os.unlink(copy / files[1])
    msg = refused("needs binlogs the archive lacks", archive=str(copy), latest=True)
    assert f"{files[1]} is missing from the archive" in msg


def test_wrong_archiver_password_is_refused_and_the_archive_untouched(lab, tmp_path):
    before = binlog_archive.archive_files(lab["archiver"].directory)
    bad = Archiver(tmp_path, lab["source"], server_id=4243, password=canary.canary("not-the-pw"))
    bad.directory = lab["archiver"].directory
    with open(bad.config, "w") as f:
        json.dump(dict(directory=bad.directory, defaults_file=bad.defaults_file, server_id=4243), f)
    proc = subprocess.run(
        [sys.executable, ARCHIVER, "run", "--config", bad.config],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert b"Access denied" in proc.stderr and b"not-the-pw-7Qx" not in proc.stderr
    assert binlog_archive.archive_files(lab["archiver"].directory) == before


def test_a_binlog_purged_while_the_archiver_was_down_is_a_gap(tmp_path, template):
    source = new_server(tmp_path / "source", 11, template)
    archiver = Archiver(tmp_path, source, server_id=4244).start()
    try:
        source.sql("CREATE DATABASE g")
        source.sql("CREATE TABLE g.t (id INT PRIMARY KEY)")
        archiver.wait_caught_up()
        archiver.kill()
        lost = source.sql("SHOW BINARY LOGS")[-1][0]
        source.sql("INSERT INTO g.t VALUES (1)")
        source.sql("FLUSH BINARY LOGS")
        source.sql("INSERT INTO g.t VALUES (2)")
        source.sql("FLUSH BINARY LOGS")
        newest = source.sql("SHOW BINARY LOGS")[-1][0]
        deadline = time.time() + 10  # the server keeps a binlog until its binlog checkpoint is past it
        while len(source.sql("SHOW BINARY LOGS")) > 1 and time.time() < deadline:
            source.sql(f"PURGE BINARY LOGS TO '{newest}'")
            time.sleep(0.1)
        assert [r[0] for r in source.sql("SHOW BINARY LOGS")] == [newest]
        second = lost[:-6] + f"{int(lost[-6:]) + 1:06d}"
        st = archiver.status()
        assert not st["continuous"]
        # the rest of the file being archived and the whole next one are lost
        assert {(g["kind"], g["file"]) for g in st["gaps"]} == {("truncated", lost), ("missing", second)}
        archiver.start()
        st = archiver.wait_caught_up()
        assert st["files"][-1]["name"] == newest
        missing = [g for g in st["gaps"] if g["kind"] == "missing"]
        assert [g["file"] for g in missing] == [second] and not missing[0]["on_source"], st["gaps"]
        assert "purged on the source before it was archived" in missing[0]["detail"]
    finally:
        archiver.kill(signal.SIGTERM)
        source.stop()


def test_restore_from_a_datadir_backup_in_the_lvm_layout(tmp_path, template):
    """The lvm kind's path: a datadir copied into the scratch instance, then the archive replayed.
    The datadir is a cold copy (clean shutdown) laid out as roles/lvm_snapshot_backup writes it
    (<dest>/<stamp>/mysql/, metadata.json with the coordinates); the snapshot itself is the VM's."""
    source = new_server(tmp_path / "source", 21, template)
    archiver = Archiver(tmp_path, source, server_id=4245).start()
    scratch = None
    try:
        source.sql("CREATE DATABASE l")
        source.sql("CREATE TABLE l.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        source.sql("INSERT INTO l.t VALUES (1, 1), (2, 2)")
        binlog_file, position = source.sql("SHOW MASTER STATUS")[0][:2]
        gtid = source.sql("SELECT @@gtid_binlog_pos")[0][0]
        archiver.wait_caught_up()
        archiver.kill(signal.SIGTERM)
        source.stop()
        backup = tmp_path / "lvm" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        shutil.copytree(source.datadir, backup / "mysql")
        (backup / "metadata.json").write_text(
            json.dumps(dict(coordinates=dict(binlog_file=binlog_file, binlog_position=position, gtid=gtid)))
        )
        source.start()
        archiver.start()
        source.sql("INSERT INTO l.t VALUES (3, 3)")
        source.sql("UPDATE l.t SET v = v * 10")
        expected = rows(source, "l.t")
        source.sql("DROP TABLE l.t")
        drop_gtid = source.sql("SELECT @@gtid_binlog_pos")[0][0]
        archiver.wait_caught_up()
        p = mysql_pitr.plan(
            archiver.directory,
            [dict(kind="lvm", path=str(tmp_path / "lvm"))],
            mysql_pitr.parse_target(gtid=drop_gtid),
        )
        assert p["backup"]["kind"] == "lvm" and p["first_applied"]["file"] != binlog_file
        result = mysql_pitr.execute(p, scratch_dir=str(tmp_path / "scratch"), scratch_user="root")
        scratch = mysql_pitr.ScratchInstance(str(tmp_path / "scratch"), "root")
        scratch.pid = result["scratch"]["pid"]
        restored = MariaDB(tmp_path / "scratch", 0)
        restored.socket = result["scratch"]["socket"]
        assert rows(restored, "l.t") == expected == ((1, 10), (2, 20), (3, 30))
        assert result["transactions_applied"] == p["transactions"] >= 3
    finally:
        if scratch:
            scratch.stop()
        archiver.kill(signal.SIGTERM)
        source.stop()


def test_restore_of_one_database_from_a_btw_mysqldump_set(tmp_path, template):
    """A btw mysqldump set of shop (btw_db.db_backup, the product's code path) newer than a full dump
    of every database: with database shop the btw dump is the base, the scratch instance holds shop
    alone, and the replay filtered to shop equals the source just before a DROP, row for row, while
    crm's writes after the dump (in their own transactions, and in one transaction with shop's)
    neither arrive nor break the replay."""
    source = new_server(tmp_path / "source", 31, template)
    archiver = Archiver(tmp_path, source, server_id=4246).start()
    scratch = None
    try:
        for statement in (
            "CREATE DATABASE shop",
            "CREATE DATABASE crm",
            "CREATE TABLE shop.orders (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB",
            "CREATE TABLE crm.people (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB",
            "INSERT INTO shop.orders VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO crm.people VALUES (1, 'x')",
        ):
            source.sql(statement)
        full = tmp_path / "all.sql"  # older, of every database: not the base when a btw dump is newer
        with open(full, "wb") as out:
            subprocess.run(["mariadb-dump", "--no-defaults", f"--socket={source.socket}", "-uroot",
                            "--single-transaction", "--master-data=2", "--gtid", "--all-databases"],
                           stdout=out, check=True)
        source.sql("INSERT INTO shop.orders VALUES (3, 'c')")
        root = tmp_path / "btw"
        root.mkdir()
        stored = btw_db.db_backup("shop", "mysqldump", str(root), "db/shop", database="shop",
                                  connection=source.tcp)
        assert stored["stored"] and stored["coordinates"]["binlog_file"]
        # after the dump: shop and crm written, crm in ways that would fail on a server without crm
        source.sql("INSERT INTO shop.orders VALUES (4, 'd')")
        source.sql("UPDATE shop.orders SET v = 'B' WHERE id = 2")
        source.sql("INSERT INTO crm.people VALUES (2, 'y')")
        source.sql("CREATE TABLE crm.tags (id INT PRIMARY KEY)")
        source.sql("INSERT INTO crm.tags VALUES (1)")
        conn = source.connect()
        with conn.cursor() as cur:  # one transaction writing both databases
            cur.execute("BEGIN")
            cur.execute("INSERT INTO shop.orders VALUES (5, 'e')")
            cur.execute("UPDATE crm.people SET v = 'z'")
            cur.execute("COMMIT")
        conn.close()
        source.sql("ALTER TABLE orders ADD COLUMN note VARCHAR(10) DEFAULT 'n'", db="shop")
        source.sql("DELETE FROM shop.orders WHERE id = 1")
        expected = rows(source, "shop.orders")
        expected_sum = checksum(source, "shop.orders")
        source.sql("DROP TABLE orders", db="shop")
        drop_gtid = source.sql("SELECT @@gtid_binlog_pos")[0][0]
        source.sql("INSERT INTO crm.people VALUES (3, 'after')")
        archiver.wait_caught_up()
        specs = [dict(kind="dump", path=str(full)), dict(kind="btw", path=stored["destination"])]
        target = mysql_pitr.parse_target(gtid=drop_gtid)
        with pytest.raises(mysql_pitr.PitrError, match="database crm: no btw mysqldump set .* hold: shop"):
            mysql_pitr.plan(archiver.directory, specs, target, database="crm")
        p = mysql_pitr.plan(archiver.directory, specs, target, database="shop")
        assert (p["backup"]["kind"], p["database"]) == ("btw", "shop")
        result = mysql_pitr.execute(p, scratch_dir=str(tmp_path / "scratch"), scratch_user="root")
        scratch = mysql_pitr.ScratchInstance(str(tmp_path / "scratch"), "root")
        scratch.pid = result["scratch"]["pid"]
        restored = MariaDB(tmp_path / "scratch", 0)
        restored.socket = result["scratch"]["socket"]
        assert result["backup"]["database"] == "shop" and result["restores"].startswith("database shop only")
        assert result["stops_before"]["gtid"] == drop_gtid
        assert result["transactions_applied"] == p["transactions"] == 8  # 3 of them crm's alone
        assert rows(restored, "shop.orders") == expected
        assert expected == ((2, "B", "n"), (3, "c", "n"), (4, "d", "n"), (5, "e", "n"))
        assert checksum(restored, "shop.orders") == expected_sum
        assert "crm" not in {d for (d,) in restored.sql("SHOW DATABASES")}
    finally:
        if scratch:
            scratch.stop()
        archiver.kill(signal.SIGTERM)
        source.stop()


# -- the playbooks: health check (run_backup strategy), restore (check mode, real, guarded) --------


def run_playbook(lab, playbooks, check=False, **extra):
    import yaml

    base = lab["base"]
    conf = base / "conf"
    if not conf.exists():
        conf.mkdir(mode=0o700)
        shutil.copy(lab["archiver"].defaults_file, conf / "src.cnf")
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "mysql_binlog_archive_root": str(base / "archive"),
        "mysql_binlog_archive_conf_dir": str(conf),
        "mysql_binlog_archive_sources": [
            {
                "name": "src",
                "host": "127.0.0.1",
                "port": lab["source"].port,
                "user": "root",
                "password": ROOT_PASSWORD,
                "server_id": 4242,
            }
        ],
        "mysql_binlog_archive_full_backups": {"src": backups(lab)},
        "mysql_binlog_archive_metrics_dir": str(base),
        "mysql_binlog_archive_pitr_scratch_user": "root",
    }
    inventory = base / "inventory.yml"
    canary.write_private(inventory,
        yaml.safe_dump({"all": {"children": {"mysql_binlog_archive": {"hosts": {"localhost": host}}}}})
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(base / "ansible-tmp"),
    )
    argv = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i",
        str(inventory),
        *[
            os.path.join(TOP, "playbooks", p)
            for p in ([playbooks] if isinstance(playbooks, str) else playbooks)
        ],
        "-e",
        json.dumps(extra),
    ]
    proc = subprocess.run(
        argv + (["--check"] if check else []),
        cwd=TOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_playbooks_health_check_then_restore_to_the_drop_gtid_then_guarded_in_place(lab, tmp_path):
    # one ansible-playbook run for two playbooks (its start-up is most of a run's cost): the health
    # check (run_backup strategy), then a restore to the DROP's GTID into a scratch instance
    scratch = tmp_path / "play"
    rc, out = run_playbook(
        lab,
        ["mysql_binlog_archive_health.yml", "mysql_pitr_restore.yml"],
        mysql_binlog_archive_pitr_source="src",
        mysql_binlog_archive_pitr_target_gtid=lab["drop_gtid"],
        mysql_binlog_archive_pitr_scratch_dir=str(scratch),
        mysql_binlog_archive_pitr_scratch_keep_running=False,
    )
    assert rc == 0, out
    metrics = (lab["base"] / "mysql_binlog_archive_src.prom").read_text()
    assert 'mysql_binlog_archive_lag_bytes{source="src"} 0' in metrics
    assert 'mysql_binlog_archive_gaps{source="src"} 0' in metrics
    assert 'mysql_binlog_archive_healthy{source="src"} 1' in metrics
    assert "Restored dump backup full-1.sql" in out and "stops before" in out
    server = mysql_pitr.ScratchInstance(str(scratch), "root", ["--skip-grant-tables"])
    server.start()
    try:
        restored = MariaDB(scratch, 0)
        restored.socket = server.socket
        assert rows(restored, "app.t") == lab["before_drop"]["t"]
        assert checksum(restored, "app.t") == lab["before_drop"]["t_sum"]
        assert rows(restored, "app.u") == lab["before_drop"]["u"]
    finally:
        server.stop()
    # into an existing server: refused without a confirmation naming the host, nothing changed
    target = lab["base"] / "target.cnf"
    binlog_archive.write_option_file(str(target), dict(socket=lab["source"].socket, user="root"))
    before = rows(lab["source"], "app.u")
    rc, out = run_playbook(
        lab,
        "mysql_pitr_restore.yml",
        mysql_binlog_archive_pitr_source="src",
        mysql_binlog_archive_pitr_target_latest=True,
        mysql_binlog_archive_pitr_target_defaults_file=str(target),
    )
    assert rc != 0
    assert (
        "restore refused, nothing was changed" in out
        and "-e mysql_binlog_archive_pitr_confirm=localhost" in out
    ), out
    assert rows(lab["source"], "app.u") == before
