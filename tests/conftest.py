"""Shared test set-up.

The pure-Python cores live in plugins/module_utils and are imported by modules as
``ansible.module_utils.<name>`` (ansible.cfg: module_utils = ./plugins/module_utils). Tests import
them the same way: extend that package's search path with the project's directory.
"""
import os
import sys

import ansible.module_utils
import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MU = os.path.join(TOP, "plugins", "module_utils")
if _MU not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MU)
sys.path.insert(0, TOP)


@pytest.fixture
def mariadb_factory(tmp_path):
    """Start real MariaDB servers in tmp_path; all are stopped at teardown."""
    from tests.lib.mariadb import MariaDB

    servers = []

    def make(name="db", server_id=None, extra_args=()):
        server = MariaDB(tmp_path / name, server_id or (len(servers) + 1), extra_args)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
