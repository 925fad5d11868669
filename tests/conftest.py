"""Shared test set-up.

The pure-Python cores live in plugins/module_utils and are imported by modules as
``ansible.module_utils.<name>`` (ansible.cfg: module_utils = ./plugins/module_utils). Tests import
them the same way: extend that package's search path with the project's directory.
"""
import os
import shutil
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


# -- a passed test's directory is removed once it has passed ---------------------------------------
# Integration tests start MariaDB, PostgreSQL and LevelDB stores in tmp_path; kept for the whole run
# (pytest's default), hundreds of them add up to gigabytes. A failed test's directory is kept for
# the post-mortem (scripts/pytest.sh names the base directory).
_OUTCOMES = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    outcomes = item.stash.setdefault(_OUTCOMES, {})
    outcomes[report.when] = report.passed
    if report.when == "call":
        outcomes["tmp_path"] = (getattr(item, "funcargs", None) or {}).get("tmp_path")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)  # the fixtures' teardown first: servers stopped, containers removed
    finally:
        outcomes = item.stash.get(_OUTCOMES, {})
        path = outcomes.get("tmp_path")
        if path is not None and outcomes.get("setup") and outcomes.get("call"):
            shutil.rmtree(path, ignore_errors=True)


# -- the failed tests, named at the end of make test (tests/lib/failures.py) -----------------------
def pytest_runtest_logreport(report):
    """A failure is recorded by the controlling process only (xdist's workers report to it)."""
    if not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from tests.lib.failures import record_failure

    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    lines = str(getattr(crash, "message", None) or report.longrepr or "").strip().splitlines()
    record_failure(f"{report.nodeid} ({report.when}): {lines[0] if lines else ''}")
