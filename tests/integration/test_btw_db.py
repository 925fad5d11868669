"""Database dump backups and restores against real PostgreSQL 15 and MariaDB servers on loopback.

One server of each for the whole module (each test uses its own database names).
"""

import glob
import json
import os
import subprocess
import threading
import time

import pytest
from ansible.module_utils import btw_db, btw_fs, btw_retention, mysql_full_backups

from tests.lib import canary
from tests.lib.btw_servers import Postgres
from tests.lib.mariadb import ROOT_PASSWORD, MariaDB

WRONG_PW = canary.canary("pg-wrong-pw")
DUMP_PW = canary.canary("dump-pw")


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("btw-mariadb"), 1)
    try:
        yield server.start()
    finally:
        server.stop()


def sessions(result):
    return len(btw_fs.rdiff_sessions(result["location"]))


def staging_left(root):
    return [os.path.join(top, d) for top, dirs, _f in os.walk(root) for d in dirs if d.startswith(".staging")]


def test_pg_dump_compares_content_not_bytes_and_restores_at_a_time(tmp_path, postgres):
    pg = postgres
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE items (id int primary key, name text); INSERT INTO items VALUES (1, 'one')", "shop")
    root = str(tmp_path / "root")
    os.mkdir(root)
    args = dict(
        name="shop",
        backup_type="pg_dump",
        root=root,
        destination="db/shop",
        database="shop",
        connection=pg.conn,
    )
    first = btw_db.db_backup(**args)
    assert first["stored"] and first["full"]
    dump = os.path.join(first["location"], "shop.dump")
    assert oct(os.stat(dump).st_mode & 0o777) == "0o600"
    first_session = btw_fs.rdiff_sessions(first["location"])[-1]

    second = btw_db.db_backup(**args)  # a new dump differs in bytes (timestamp) but not in content
    assert second["changed"] is False and sessions(first) == 1
    with open(os.path.join(root, "db", "shop", "log.txt")) as f:
        assert "shop: database shop unchanged" in f.read()

    pg.psql("UPDATE items SET name = 'uno' WHERE id = 1", "shop")  # same size change
    third = btw_db.db_backup(**args)
    assert third["stored"] and not third["full"] and sessions(third) == 2
    assert staging_left(root) == []

    btw_db.db_restore(
        "shop",
        "pg_dump",
        root,
        "db/shop",
        target_database="shop_old",
        at=str(int(first_session)),
        connection=pg.conn,
        create_database=True,
    )
    assert pg.psql("SELECT name FROM items", "shop_old").strip() == "one"
    btw_db.db_restore(
        "shop",
        "pg_dump",
        root,
        "db/shop",
        target_database="shop_new",
        connection=pg.conn,
        create_database=True,
    )
    assert pg.psql("SELECT name FROM items", "shop_new").strip() == "uno"


def test_pg_globals(tmp_path, postgres):
    pg = postgres
    root = str(tmp_path / "root")
    os.mkdir(root)
    args = dict(
        name="globals", backup_type="pg_globals", root=root, destination="db/globals", connection=pg.conn
    )
    first = btw_db.db_backup(**args)
    assert first["stored"]
    assert btw_db.db_backup(**args)["changed"] is False
    pg.psql("CREATE ROLE reporting LOGIN")
    third = btw_db.db_backup(**args)
    assert third["stored"] and sessions(third) == 2
    with open(os.path.join(third["location"], "globals.sql")) as f:
        assert "CREATE ROLE reporting" in f.read()


def test_pg_missing_database_and_wrong_password_fail_clearly(tmp_path, postgres):
    root = str(tmp_path / "root")
    os.mkdir(root)
    with pytest.raises(btw_db.BtwDbError, match='pg_dump of database nope failed.*"nope" does not exist'):
        btw_db.db_backup("nope", "pg_dump", root, "db/nope", database="nope", connection=postgres.conn)
    bad = dict(postgres.conn, password=WRONG_PW)
    with pytest.raises(btw_db.BtwDbError, match="password authentication failed") as err:
        btw_db.db_backup("shop", "pg_dump", root, "db/shop", database="postgres", connection=bad)
    assert WRONG_PW not in str(err.value)
    dest = os.path.join(root, "db", "nope")
    assert btw_fs.list_chains(dest) == [] and staging_left(root) == []
    assert not any(n.endswith(".dump") for _t, _d, files in os.walk(root) for n in files)


def test_mysqldump_mariadb(tmp_path, mariadb):
    db = mariadb
    db.sql("CREATE DATABASE app")
    db.sql("CREATE TABLE t (id int primary key, v varchar(10)) ENGINE=InnoDB", db="app")
    db.sql("INSERT INTO t VALUES (1, 'a')", db="app")
    root = str(tmp_path / "root")
    os.mkdir(root)
    args = dict(
        name="app",
        backup_type="mysqldump",
        root=root,
        destination="db/app",
        database="app",
        connection=db.tcp,
    )
    first = btw_db.db_backup(**args)
    assert first["stored"]
    assert btw_db.db_backup(**args)["changed"] is False
    db.sql("UPDATE t SET v = 'b' WHERE id = 1", db="app")  # one byte, same size
    third = btw_db.db_backup(**args)
    assert third["stored"] and sessions(third) == 2
    with open(os.path.join(third["location"], "app.sql")) as f:
        assert "(1,'b')" in f.read()
    btw_db.db_restore(
        "app",
        "mysqldump",
        root,
        "db/app",
        target_database="app_copy",
        connection=db.tcp,
        create_database=True,
    )
    assert db.sql("SELECT v FROM t", db="app_copy") == (("b",),)
    with pytest.raises(btw_db.BtwDbError, match="mysqldump of database missing failed.*Unknown database"):
        btw_db.db_backup("missing", "mysqldump", root, "db/missing", database="missing", connection=db.tcp)
    assert staging_left(root) == []


def test_mysqldump_records_coordinates_a_replay_from_them_onto_the_dump_equals_the_source(tmp_path, mariadb):
    """A writer inserts rows during the dump; the dump loaded into a second server and the binlog
    replayed from the recorded position gives exactly the source's rows (too early: a duplicate key,
    too late: rows missing). A server without a binary log gives a dump without coordinates."""
    db = mariadb
    db.sql("CREATE DATABASE pit")
    db.sql("CREATE TABLE pit.w (id int primary key, v varchar(20)) ENGINE=InnoDB")
    db.sql("INSERT INTO pit.w VALUES (0, 'before')")
    root = str(tmp_path / "root")
    os.mkdir(root)
    args = dict(name="pit", backup_type="mysqldump", root=root, destination="db/pit", database="pit",
                connection=db.tcp)
    stop = threading.Event()

    def writer():
        conn, i = db.connect(), 1
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO pit.w VALUES (%s, 'during')", (i,))
                i += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        first = btw_db.db_backup(**args)
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    coords = first["coordinates"]
    assert first["stored"] and coords["binlog_file"].startswith("mysql-bin.") and coords["gtid"]
    meta = os.path.join(first["location"], "pit.meta.json")
    assert oct(os.stat(meta).st_mode & 0o777) == "0o600"
    with open(meta) as f:
        assert json.load(f)["coordinates"] == coords
    listed = mysql_full_backups.list_backups([{"kind": "btw", "path": first["destination"]}])
    assert [(b["binlog_file"], b["binlog_position"], b["gtid"]) for b in listed] == [
        (coords["binlog_file"], coords["binlog_position"], coords["gtid"])]

    scratch = MariaDB(tmp_path / "scratch", 2, extra_args=["--skip-log-bin"]).start()
    try:
        btw_db.db_restore("pit", "mysqldump", root, "db/pit", target_database="pit", connection=scratch.tcp,
                          create_database=True)
        binlogs = sorted(glob.glob(os.path.join(db.base, "binlog", "mysql-bin.[0-9]*")))
        binlogs = [b for b in binlogs if os.path.basename(b) >= coords["binlog_file"]]
        events = subprocess.run(
            ["mariadb-binlog", "--no-defaults", f"--start-position={coords['binlog_position']}", *binlogs],
            check=True, capture_output=True).stdout
        subprocess.run(["mariadb", "--no-defaults", f"--socket={scratch.socket}", "-uroot"], input=events,
                       check=True, capture_output=True)
        source = db.sql("SELECT id, v FROM pit.w ORDER BY id")
        assert len(source) > 2 and scratch.sql("SELECT id, v FROM pit.w ORDER BY id") == source

        # no writer: the coordinates are the server's binlog position at the dump
        db.sql("INSERT INTO pit.w VALUES (-1, 'after')")
        second = btw_db.db_backup(**args)
        (file, pos, *_rest), = db.sql("SHOW MASTER STATUS")
        assert second["stored"] and second["coordinates"] == {
            "binlog_file": file, "binlog_position": pos, "gtid": db.sql("SELECT @@gtid_binlog_pos")[0][0]}

        # MariaDB reads them from the consistent snapshot: a user without RELOAD or BINLOG MONITOR gets them
        db.sql(f"CREATE USER 'dumper'@'127.0.0.1' IDENTIFIED BY '{DUMP_PW}'")
        db.sql("GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON pit.* TO 'dumper'@'127.0.0.1'")
        plain_user = dict(db.tcp, user="dumper", password=DUMP_PW)
        db.sql("INSERT INTO pit.w VALUES (-2, 'by dumper')")
        third = btw_db.db_backup(**dict(args, connection=plain_user))
        (file, pos, *_rest), = db.sql("SHOW MASTER STATUS")
        assert third["coordinates"]["binlog_position"] == pos and third["coordinates"]["binlog_file"] == file

        # a server without a binary log: a dump without coordinates, and says why
        scratch_args = dict(args, root=root, destination="db/scratch", connection=scratch.tcp)
        plain = btw_db.db_backup(**scratch_args)
        assert plain["stored"] and plain["coordinates"] is None
        assert "the server has no binary log" in plain["coordinates_note"]
        assert mysql_full_backups.list_backups([{"kind": "btw", "path": plain["destination"]}]) == []
    finally:
        scratch.stop()


def test_a_dump_of_a_database_that_lost_most_tables_is_suspect_and_kept_apart(tmp_path, postgres):
    pg = postgres
    pg.psql("CREATE DATABASE shrink")
    pg.psql("; ".join(f"CREATE TABLE t{i} (id int primary key)" for i in range(10)), "shrink")
    root = str(tmp_path / "root")
    os.mkdir(root)
    args = dict(name="shrink", backup_type="pg_dump", root=root, destination="db/shrink", database="shrink",
                connection=pg.conn)
    first = btw_db.db_backup(**args)
    assert first["figures"]["tables"] == 10 and first["verdict"]["status"] == "good"
    pg.psql("INSERT INTO t0 VALUES (1)", "shrink")
    second = btw_db.db_backup(**args)
    assert second["verdict"]["status"] == "good" and second["location"] == first["location"]
    pg.psql("; ".join(f"DROP TABLE t{i}" for i in range(2, 10)), "shrink")
    third = btw_db.db_backup(**args)
    verdict = third["verdict"]
    assert third["stored"] and verdict["status"] == "suspect" and third["location"] != first["location"]
    assert "tables fell from 10 to 2 (-80 %)" in verdict["message"]
    assert "accept_shrink: true" in verdict["message"]
    # the good chain still ends with the good dump; the database stays shrunk: still suspect
    assert "CREATE TABLE public.t9" in subprocess.run(
        ["pg_restore", "--schema-only", "-f", "-", os.path.join(first["location"], "shrink.dump")],
        capture_output=True, text=True, check=True).stdout
    assert btw_db.db_backup(**args)["verdict"]["status"] == "suspect"
    dest = third["destination"]
    listed = btw_retention.with_status(dest, btw_retention.list_backups(dest))
    assert [b["status"] for b in listed] == ["good", "suspect"]
    kept = btw_retention.apply_retention(root, "db/shrink", keep_count=1, require_synced=False, min_good=1)
    assert kept["deleted"] == [] and kept["suspect"] == [os.path.basename(third["location"])]
    # the latest dump to restore is the good one; the suspect one is there when asked for by time
    restored = btw_db.db_restore("shrink", "pg_dump", root, "db/shrink", target_database="shrink_latest",
                                 connection=pg.conn, create_database=True)
    assert restored["chain"] == first["location"] and restored["skipped_suspect"] == [
        os.path.basename(third["location"])]
    assert len(pg_tables(pg, "shrink_latest")) == 10
    accepted = btw_db.db_backup(**args, accept_shrink=True)
    assert accepted["verdict"]["status"] == "good" and accepted["verdict"]["accepted"]
    assert btw_db.db_backup(**args)["verdict"]["status"] == "good"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backup_type": "oracle"}, "unknown backup type 'oracle'"),
        ({"backup_type": "pg_globals", "database": "x"}, "do not give a database"),
        ({"database": None}, "needs a database name"),
        ({"max_incremental_span": "fortnight"}, "cannot parse time span"),
    ],
)
def test_bad_input(tmp_path, kwargs, message):
    args = dict(name="x", backup_type="pg_dump", root=str(tmp_path), destination="db/x", database="x")
    args.update(kwargs)
    with pytest.raises(btw_fs.BtwError, match=message):
        btw_db.db_backup(**args)
    assert os.listdir(tmp_path) == []


# -- restores: guarded, one transaction where the server can, checked against the dump ----------


@pytest.fixture(scope="module")
def mysql_backup(mariadb, tmp_path_factory):
    """A stored mysqldump of database `shop` (table items, view cheap): (root, destination)."""
    mariadb.sql("CREATE DATABASE shop")
    mariadb.sql("CREATE TABLE shop.items (id int primary key, name varchar(20)) ENGINE=InnoDB")
    mariadb.sql("INSERT INTO shop.items VALUES (1, 'from backup')")
    mariadb.sql("CREATE VIEW shop.cheap AS SELECT id FROM shop.items")
    root = str(tmp_path_factory.mktemp("btw-my-restore"))
    btw_db.db_backup("shop", "mysqldump", root, "db/shop", database="shop", connection=mariadb.tcp)
    return root, "db/shop"


def my_restore(mariadb, backup, target, **kwargs):
    root, destination = backup
    kwargs.setdefault("connection", mariadb.tcp)
    return btw_db.db_restore("shop", "mysqldump", root, destination, target_database=target, **kwargs)


def tables(server, database):
    return sorted(r[0] for r in server.sql(f"SHOW FULL TABLES FROM `{database}`"))


def test_mysql_restore_with_credentials_file_leaves_it_alone(mariadb, mysql_backup, tmp_path):
    cnf = tmp_path / "my.cnf"  # what an operator's /root/.my.cnf holds
    content = f"[client]\nhost=127.0.0.1\nport={mariadb.port}\nuser=root\npassword={ROOT_PASSWORD}\n"
    canary.write_private(cnf, content)
    cnf.chmod(0o600)
    result = my_restore(
        mariadb, mysql_backup, "shop_cnf", connection={"defaults_file": str(cnf)}, create_database=True
    )
    assert cnf.read_text() == content and oct(cnf.stat().st_mode & 0o777) == "0o600"
    assert mariadb.sql("SELECT name FROM shop_cnf.items") == (("from backup",),)
    assert result["created"] and not result["replaced"]
    check = result["verified"]
    assert check["ok"] and check["expected"] == check["found"] == 2 and check["missing"] == []
    assert "the dump creates" in check["checked"]


def test_mysql_restore_into_a_non_empty_database_needs_force(mariadb, mysql_backup):
    mariadb.sql("CREATE DATABASE shop_live")
    mariadb.sql("CREATE TABLE shop_live.items (id int primary key, name varchar(20))")
    mariadb.sql("INSERT INTO shop_live.items VALUES (7, 'live row')")
    mariadb.sql("CREATE TABLE shop_live.orders (id int)")
    before = tables(mariadb, "shop_live")
    for check_mode in (True, False):
        with pytest.raises(btw_db.BtwDbError, match=r"shop_live is not empty \(2 object\(s\).*set force"):
            my_restore(mariadb, mysql_backup, "shop_live", check_mode=check_mode)
    assert mariadb.sql("SELECT id, name FROM shop_live.items") == ((7, "live row"),)
    assert tables(mariadb, "shop_live") == before
    with pytest.raises(btw_db.BtwDbError, match="shop_live already exists and create_database is set"):
        my_restore(mariadb, mysql_backup, "shop_live", create_database=True, force=True)
    with pytest.raises(btw_db.BtwDbError, match="shop_absent does not exist: set create_database"):
        my_restore(mariadb, mysql_backup, "shop_absent")
    assert not mariadb.sql("SHOW DATABASES LIKE 'shop_absent'")

    planned = my_restore(mariadb, mysql_backup, "shop_live", force=True, check_mode=True)
    assert planned["changed"] and planned["replaced"] and "replacing" in planned["action"]
    assert mariadb.sql("SELECT id, name FROM shop_live.items") == ((7, "live row"),)

    result = my_restore(mariadb, mysql_backup, "shop_live", force=True)
    assert mariadb.sql("SELECT id, name FROM shop_live.items") == ((1, "from backup"),)
    assert tables(mariadb, "shop_live") == ["cheap", "items", "orders"]  # orders is not in the dump: kept
    assert result["replaced"] and result["target_before"] == {"exists": True, "objects": 2}
    assert result["verified"]["ok"] and result["verified"]["other"] == ["table orders"]


def test_mysql_failed_load_drops_what_it_created(mariadb, tmp_path):
    # The view reads a table of another database; without it the dump's last statement fails.
    mariadb.sql("CREATE DATABASE elsewhere")
    mariadb.sql("CREATE TABLE elsewhere.prices (id int)")
    mariadb.sql("CREATE DATABASE shop2")
    mariadb.sql("CREATE TABLE shop2.items (id int primary key)")
    mariadb.sql("CREATE VIEW shop2.priced AS SELECT id FROM elsewhere.prices")
    root = str(tmp_path)
    btw_db.db_backup("shop2", "mysqldump", root, "db/shop2", database="shop2", connection=mariadb.tcp)
    mariadb.sql("DROP DATABASE elsewhere")
    args = dict(root=root, destination="db/shop2", connection=mariadb.tcp)
    with pytest.raises(
        btw_db.BtwDbError,
        match="shop2_new failed.*'elsewhere.prices' doesn't exist; shop2_new, created for this restore, "
        "was dropped again",
    ):
        btw_db.db_restore("shop2", "mysqldump", target_database="shop2_new", create_database=True, **args)
    assert not mariadb.sql("SHOW DATABASES LIKE 'shop2_new'")
    mariadb.sql("CREATE DATABASE shop2_empty")
    with pytest.raises(
        btw_db.BtwDbError, match="created in shop2_empty was dropped again: it is empty, as it was"
    ):
        btw_db.db_restore("shop2", "mysqldump", target_database="shop2_empty", **args)
    assert tables(mariadb, "shop2_empty") == []
    mariadb.sql("CREATE TABLE shop2_empty.orders (id int)")  # not empty: forced, the failure is only reported
    with pytest.raises(btw_db.BtwDbError, match="shop2_empty is PARTIALLY restored") as err:
        btw_db.db_restore("shop2", "mysqldump", target_database="shop2_empty", force=True, **args)
    assert "1 of the dump's 2" in str(err.value) and "view priced" in str(err.value)


@pytest.fixture(scope="module")
def pg_backup(postgres, tmp_path_factory):
    """A stored pg_dump of `wiki` (pages, a view, a sequence) whose last statement grants to a role
    that is dropped later by a test, so that a load of it fails at its very end: (root, destination)."""
    postgres.psql("CREATE DATABASE wiki")
    postgres.psql("CREATE ROLE wiki_reader")
    postgres.psql(
        "CREATE TABLE pages (id serial primary key, body text);"
        "INSERT INTO pages (body) VALUES ('from backup');"
        "CREATE VIEW titles AS SELECT id FROM pages; GRANT SELECT ON pages TO wiki_reader",
        "wiki",
    )
    root = str(tmp_path_factory.mktemp("btw-pg-restore"))
    btw_db.db_backup("wiki", "pg_dump", root, "db/wiki", database="wiki", connection=postgres.conn)
    return root, "db/wiki"


def pg_restore(postgres, backup, target, **kwargs):
    root, destination = backup
    return btw_db.db_restore(
        "wiki", "pg_dump", root, destination, target_database=target, connection=postgres.conn, **kwargs
    )


def pg_tables(postgres, database):
    sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    return postgres.psql(sql, database).split()


def test_pg_restore_guard_force_and_a_failed_load_leaves_the_target_as_it_was(postgres, pg_backup):
    pg = postgres
    pg.psql("CREATE DATABASE wiki_live")
    pg.psql(
        "CREATE TABLE pages (id int primary key, body text); INSERT INTO pages VALUES (7, 'live')",
        "wiki_live",
    )
    pg.psql("CREATE TABLE comments (id int)", "wiki_live")
    for check_mode in (True, False):
        with pytest.raises(btw_db.BtwDbError, match=r"wiki_live is not empty \(2 object\(s\).*set force"):
            pg_restore(pg, pg_backup, "wiki_live", check_mode=check_mode)
    assert pg.psql("SELECT id, body FROM pages", "wiki_live").strip() == "7|live"

    result = pg_restore(pg, pg_backup, "wiki_live", force=True)
    assert pg.psql("SELECT id, body FROM pages", "wiki_live").strip() == "1|from backup"
    assert pg_tables(pg, "wiki_live") == ["comments", "pages"]
    check = result["verified"]
    assert result["replaced"] and check["ok"] and check["missing"] == []
    assert check["expected"] == check["found"] == 3 and check["other"] == ["table public.comments"]

    # The role the dump grants to is gone: the load fails at its last statement.
    for database in ("wiki", "wiki_live"):
        pg.psql("DROP OWNED BY wiki_reader", database)
    pg.psql("DROP ROLE wiki_reader")
    pg.psql("UPDATE pages SET body = 'live again'", "wiki_live")
    with pytest.raises(btw_db.BtwDbError, match='role "wiki_reader" does not exist.*rolled back'):
        pg_restore(pg, pg_backup, "wiki_live", force=True)
    assert pg.psql("SELECT id, body FROM pages", "wiki_live").strip() == "1|live again"
    pg.psql("CREATE DATABASE wiki_empty")
    with pytest.raises(btw_db.BtwDbError, match="rolled back"):
        pg_restore(pg, pg_backup, "wiki_empty")
    assert pg_tables(pg, "wiki_empty") == []
    with pytest.raises(
        btw_db.BtwDbError, match="rolled back; wiki_new, created for this restore, was dropped"
    ):
        pg_restore(pg, pg_backup, "wiki_new", create_database=True)
    assert pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'wiki_new'").strip() == "0"


def test_pg_globals_restore_checks_the_roles(postgres, tmp_path):
    postgres.psql("CREATE ROLE globals_probe")
    root = str(tmp_path)
    btw_db.db_backup("globals", "pg_globals", root, "db/globals", connection=postgres.conn)
    postgres.psql("DROP ROLE globals_probe")
    result = btw_db.db_restore("globals", "pg_globals", root, "db/globals", connection=postgres.conn)
    assert postgres.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'globals_probe'").strip() == "1"
    assert result["verified"]["ok"] and "role globals_probe" not in result["verified"]["missing"]
    assert any('role "postgres" already exists' in note for note in result["notes"])
