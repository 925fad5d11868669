"""playbooks/btw_restore.yml is guarded: a restore into a database that exists (it replaces live data)
needs -e btw_backup_restore_confirm=<the host>, and no restore runs on two hosts at once; a restore
into a new database needs no confirmation. A real MariaDB (started once for the module), a real
mysqldump backup of it, ansible-playbook with a local connection."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils import btw_db

from tests.lib import canary
from tests.lib.mariadb import MariaDB

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("btw-restore-guard")
    server = MariaDB(base / "db", 1)
    try:
        server.start()
        server.sql("CREATE DATABASE shop")
        server.sql("CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB")
        server.sql("INSERT INTO shop.items VALUES (1, 'backed up')")
        root = base / "root"
        root.mkdir()
        backup_set = {"name": "shop", "type": "mysqldump", "database": "shop", "destination": "db/shop",
                      "connection": server.tcp}
        btw_db.db_backup("shop", "mysqldump", str(root), "db/shop", "shop", server.tcp)
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "ansible_become": False, "btw_backup_root": str(root), "btw_backup_sets": [backup_set]}
        inventories = {}
        for name, hosts in (("one", ["localhost"]), ("two", ["localhost", "backup2"])):
            path = base / f"inventory-{name}.yml"
            canary.write_private(path, yaml.safe_dump(
                {"all": {"children": {"backup_hosts": {"hosts": {h: host for h in hosts}}}}}))
            inventories[name] = str(path)
        yield {"server": server, "base": base, "inventories": inventories}
    finally:
        server.stop()


def run_restore(site, inventory="one", **extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCAL_TEMP=str(site["base"] / "ansible-tmp"))
    request = json.dumps(dict(btw_backup_restore_set="shop", **extra))
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
         "-i", site["inventories"][inventory], os.path.join(TOP, "playbooks", "btw_restore.yml"),
         "-e", request],
        cwd=TOP, env=env, capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def rows(site, database="shop"):
    return site["server"].sql(f"SELECT id, name FROM {database}.items ORDER BY id")


def changed_live_row(site):
    site["server"].sql("UPDATE shop.items SET name = 'live change' WHERE id = 1")
    return rows(site)


@pytest.mark.parametrize("confirm", [None, "backup2"], ids=["no confirmation", "another host named"])
def test_in_place_restore_is_refused_without_a_confirmation_naming_the_host(site, confirm):
    live = changed_live_row(site)
    extra = {} if confirm is None else {"btw_backup_restore_confirm": confirm}
    rc, out = run_restore(site, btw_backup_restore_target_database="shop", btw_backup_restore_force=True,
                          **extra)
    assert rc != 0
    assert "restore refused, nothing was changed" in out, out
    assert "-e btw_backup_restore_confirm=localhost" in out
    assert "the tables of the existing database shop" in out
    if confirm:
        assert "The confirmation names backup2, not this host" in out
    assert rows(site) == live


def test_a_run_on_two_hosts_is_refused_even_confirmed(site):
    live = changed_live_row(site)
    rc, out = run_restore(site, inventory="two", btw_backup_restore_target_database="shop",
                          btw_backup_restore_force=True, btw_backup_restore_confirm="localhost")
    assert rc != 0
    assert "a restore runs on one host at a time and this run targets 2 (" in out, out
    assert rows(site) == live


def test_a_new_database_needs_no_confirmation_and_a_confirmed_one_is_restored(site):
    live = changed_live_row(site)
    rc, out = run_restore(site, btw_backup_restore_target_database="shop_rehearsal",
                          btw_backup_restore_create_database=True)
    assert rc == 0, out
    assert rows(site, "shop_rehearsal") == ((1, "backed up"),) and rows(site) == live
    rc, out = run_restore(site, btw_backup_restore_target_database="shop", btw_backup_restore_force=True,
                          btw_backup_restore_confirm="localhost")
    assert rc == 0, out
    assert rows(site) == ((1, "backed up"),)
