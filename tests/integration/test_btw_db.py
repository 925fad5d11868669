"""Database dump backups against real PostgreSQL 15 and MariaDB servers on loopback."""

import os

import pytest
from ansible.module_utils import btw_db, btw_fs

from tests.lib.btw_servers import postgres  # noqa: F401  (fixture)


def sessions(result):
    return len(btw_fs.rdiff_sessions(result["location"]))


def staging_left(root):
    return [os.path.join(top, d) for top, dirs, _f in os.walk(root) for d in dirs if d.startswith(".staging")]


def test_pg_dump_compares_content_not_bytes_and_restores_at_a_time(tmp_path, postgres):  # noqa: F811
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


def test_pg_globals(tmp_path, postgres):  # noqa: F811
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


def test_pg_missing_database_and_wrong_password_fail_clearly(tmp_path, postgres):  # noqa: F811
    root = str(tmp_path / "root")
    os.mkdir(root)
    with pytest.raises(btw_db.BtwDbError, match='pg_dump of database nope failed.*"nope" does not exist'):
        btw_db.db_backup("nope", "pg_dump", root, "db/nope", database="nope", connection=postgres.conn)
    bad = dict(postgres.conn, password="wrong-secret-pw")
    with pytest.raises(btw_db.BtwDbError, match="password authentication failed") as err:
        btw_db.db_backup("shop", "pg_dump", root, "db/shop", database="postgres", connection=bad)
    assert "wrong-secret-pw" not in str(err.value)
    dest = os.path.join(root, "db", "nope")
    assert btw_fs.list_chains(dest) == [] and staging_left(root) == []
    assert not any(n.endswith(".dump") for _t, _d, files in os.walk(root) for n in files)


def test_mysqldump_mariadb(tmp_path, mariadb_factory):
    db = mariadb_factory("btw")
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
