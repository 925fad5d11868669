"""A set's connection.password (the per-set form docs/btw-backup.md shows) never reaches the output.

The btw playbooks run for real with the default callback, as an operator runs them, at -v: every
loop result then prints its item. A real MariaDB (started once for the module) holds the database
the mysqldump set dumps, with a backup user whose password is the canary.
"""

import os
import subprocess
import sys

import pytest
import yaml

from tests.lib import canary
from tests.lib.mariadb import MariaDB

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANARY = canary.canary("btw-set-pw")


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("btw-secrets") / "db", 1)
    try:
        server.start()
        server.sql("CREATE DATABASE shop")
        server.sql("CREATE TABLE shop.items (id INT PRIMARY KEY) ENGINE=InnoDB")
        server.sql(f"CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY '{CANARY}'")
        server.sql("GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON *.* TO 'backup'@'127.0.0.1'")
        server.sql("GRANT ALL ON `shop_restored`.* TO 'backup'@'127.0.0.1'")
        yield server
    finally:
        server.stop()


def run_verbose(tmp_path, playbook, host_vars):
    inventory = tmp_path / "inventory.yml"
    host = dict(ansible_connection="local", ansible_python_interpreter=sys.executable, ansible_become=False)
    host.update(host_vars)
    hosts = {"backup_hosts": {"hosts": {"localhost": host}}}
    canary.write_private(inventory, yaml.safe_dump({"all": {"children": hosts}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-v", "-i", str(inventory),
         os.path.join(TOP, "playbooks", playbook)],
        cwd=TOP, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def mysqldump_set(mariadb, **kw):
    return dict(
        {"name": "shop", "type": "mysqldump", "database": "shop", "destination": "db/shop",
         "connection": {"host": "127.0.0.1", "port": mariadb.port, "user": "backup", "password": CANARY}},
        **kw,
    )


def test_an_invalid_set_is_named_with_its_reason_and_no_password(tmp_path, mariadb):
    root = tmp_path / "root"
    root.mkdir()
    sets = [mysqldump_set(mariadb), mysqldump_set(mariadb, name="broken", database="")]
    rc, out = run_verbose(tmp_path, "db_backup.yml", {"btw_backup_root": str(root), "btw_backup_sets": sets})
    assert rc != 0
    assert "backup set broken is invalid" in out and "a database (pg_dump, mysqldump)" in out, out
    assert CANARY not in out, out
    assert os.listdir(root) == []


def test_a_backup_and_a_restore_at_verbose_print_no_password(tmp_path, mariadb):
    root = tmp_path / "root"
    root.mkdir()
    site = {"btw_backup_root": str(root), "btw_backup_sets": [mysqldump_set(mariadb)]}
    rc, out = run_verbose(tmp_path, "db_backup.yml", site)
    assert rc == 0, out
    assert "TASK [btw_backup : Delete old backups by count and age" in out and "(item=shop)" in out, out
    assert os.path.exists(root / "db" / "shop")
    assert CANARY not in out, out
    rc, out = run_verbose(tmp_path, "btw_restore.yml", dict(
        site, btw_backup_restore_set="shop", btw_backup_restore_target_database="shop_restored",
        btw_backup_restore_create_database=True))
    assert rc == 0, out
    assert mariadb.sql("SHOW TABLES FROM shop_restored") == (("items",),)
    assert CANARY not in out, out
