"""MySQL secrets and connections against real MariaDB servers on loopback (issue 15).

Three servers, started once for the module: a source, a target and a decoy.

* The MySQL client children read only the option file we write: a ~/.my.cnf never redirects them.
  The children get a temporary HOME whose .my.cnf names the decoy's port, socket and password in
  [client], the group every client reads. With --defaults-extra-file that file was read after ours
  and won: the Seafile seed dumped from / imported into the decoy, btw dumped from it.
* SHOW GRANTS of an account with several authentication methods: every hash is masked before it
  reaches the replication_user_grants facts.
"""

import concurrent.futures
import os
import re
import shutil

import pytest
from ansible.module_utils import btw_db
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_health import gather_facts
from ansible.module_utils.mysql_seed import run_seed

from tests.lib import canary
from tests.lib.mariadb import ROOT_PASSWORD, MariaDB


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """source (with data), target (empty: the seed's import target) and decoy (what ~/.my.cnf names)."""
    base = tmp_path_factory.mktemp("option-files")
    names = ("source", "target", "decoy")
    started = [MariaDB(base / name, server_id) for server_id, name in enumerate(names, 1)]
    try:
        # one bootstrap, copied (parallel bootstraps collide on temp-table names in /tmp), then
        # the three servers start side by side
        started[0].install()
        for server in started[1:]:
            shutil.copytree(started[0].datadir, server.datadir)
        with concurrent.futures.ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(MariaDB.start, started))
        source, _target, decoy = started
        for server, origin in ((source, "source"), (decoy, "decoy")):
            server.sql("CREATE DATABASE app")
            server.sql("CREATE TABLE app.items (id INT PRIMARY KEY, origin VARCHAR(16)) ENGINE=InnoDB")
            server.sql(f"INSERT INTO app.items VALUES (1, '{origin}')")
        yield tuple(started)
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def decoy_home(servers, tmp_path, monkeypatch):
    """HOME for the children, with a root-style ~/.my.cnf pointing at the decoy."""
    decoy = servers[-1]
    home = tmp_path / "home"
    home.mkdir()
    canary.write_private((home / ".my.cnf"),
        "[client]\n"
        "host=127.0.0.1\n"
        f"port={decoy.port}\n"
        f"socket={decoy.socket}\n"
        "user=root\n"
        f"password={ROOT_PASSWORD}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    return home


def origins(server, database):
    return server.sql(f"SELECT origin FROM `{database}`.items ORDER BY id")


@pytest.mark.parametrize("credentials", ["options", "config_file"])
def test_seed_dump_and_import_ignore_a_home_my_cnf(servers, decoy_home, credentials):
    """With credentials="config_file" the user and password come from that same ~/.my.cnf (the
    module's config_file): the children get them too, and still nothing else of it."""
    source, target, decoy = servers
    params = dict(
        login_host="127.0.0.1",
        login_port=source.port,
        databases=["app"],
        ignore_tables=[],
        consistency="auto",
        lock_wait_timeout=60,
        max_query_seconds=300,
        extra_dump_args=[],
        compress="gzip",
        connect_timeout=5,
        config_file=None,
        mode="import",
        target_unix_socket=target.socket,
        target_user="root",
    )
    if credentials == "options":
        params.update(login_user="root", login_password=ROOT_PASSWORD)
    else:
        params.update(config_file=str(decoy_home / ".my.cnf"))
    target.sql("DROP DATABASE IF EXISTS app")
    result = run_seed(params)
    assert result["binlog_file"]
    assert origins(target, "app") == (("source",),)  # dumped from the source, imported into the target
    assert origins(decoy, "app") == (("decoy",),)  # nothing read from or written to the decoy


def test_btw_mysqldump_and_restore_ignore_a_home_my_cnf(servers, decoy_home, tmp_path):
    source, _target, decoy = servers
    root = str(tmp_path / "root")
    os.mkdir(root)
    connection = source.tcp
    result = btw_db.db_backup(
        name="app", backup_type="mysqldump", root=root, destination="db/app", database="app",
        connection=connection,
    )
    assert result["stored"]
    with open(os.path.join(result["location"], "app.sql")) as f:
        dump = f.read()
    assert "'source'" in dump and "'decoy'" not in dump
    btw_db.db_restore(
        "app", "mysqldump", root, "db/app", target_database="app_restored", connection=connection,
        create_database=True,
    )
    assert origins(source, "app_restored") == (("source",),)
    assert not decoy.sql("SHOW DATABASES LIKE 'app_restored'")


def test_every_hash_of_a_multi_method_account_is_masked_in_the_grant_facts(servers):
    source, target, _decoy = servers
    if not source.sql("SELECT 1 FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'"):
        source.sql("INSTALL SONAME 'auth_ed25519'")
    source.sql("DROP USER IF EXISTS 'repl'@'127.0.0.1', 'repl'@'localhost'")
    source.sql(
        "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('canary-ed-pw') "
        "OR mysql_native_password USING PASSWORD('canary-native-pw')"
    )
    source.sql(
        "CREATE USER 'repl'@'localhost' IDENTIFIED VIA unix_socket "
        "OR mysql_native_password USING PASSWORD('canary-local-pw')"
    )
    source.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1', 'repl'@'localhost'")
    raw = " ".join(
        row[0]
        for host in ("127.0.0.1", "localhost") for row in source.sql(f"SHOW GRANTS FOR 'repl'@'{host}'")
    )
    secrets = re.findall(r"USING '([^']+)'", raw)  # what the server prints: ed25519 key, two hashes
    assert len(secrets) == 3 and source.sql("SELECT PASSWORD('canary-local-pw')")[0][0] in secrets

    replica, primary = connect(dict(unix_socket=target.socket, user="root")), connect(
        dict(unix_socket=source.socket, user="root")
    )
    try:
        facts = gather_facts(replica, primary, {"replication_user": "repl", "databases": []})
    finally:
        replica.close()
        primary.close()
    grants = facts["replication_user_grants"]
    text = repr(grants)
    assert [s for s in secrets if s in text] == []
    assert sorted(grants) == ["'repl'@'127.0.0.1'", "'repl'@'localhost'"]
    first = grants["'repl'@'127.0.0.1'"][0]
    assert "VIA ed25519 USING '********' OR mysql_native_password USING '********'" in first, first
    assert "unix_socket OR mysql_native_password USING '********'" in grants["'repl'@'localhost'"][0]
