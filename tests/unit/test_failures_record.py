"""make test's list of failed tests (tests/lib/failures.py) and the lab server's crash report."""
import signal
import subprocess
import sys

from tests.lib.failures import record_failure
from tests.lib.mariadb import MariaDB

CRASH_LOG = """2026-12-03 10:41:26 0 [Note] /usr/sbin/mariadbd: ready for connections.
261203 10:41:28 [ERROR] /usr/sbin/mariadbd got signal 11 ;
Sorry, we probably made a mistake, and this is a bug.
Thread pointer: 0x770328000c68
Query (0x770328010f40): SELECT ID, TIME FROM information_schema.PROCESSLIST

Writing a core file...
"""


def test_a_failure_is_one_line_appended_to_the_file(tmp_path, monkeypatch):
    path = tmp_path / "failures"
    monkeypatch.setenv("BT_FAILURES", str(path))
    record_failure("tests/x.py::t (call): AssertionError:\n  two\tlines")
    record_failure("y" * 400)
    lines = path.read_text().splitlines()
    assert lines == ["tests/x.py::t (call): AssertionError: two lines", "y" * 300]


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("BT_FAILURES", raising=False)
    monkeypatch.chdir(tmp_path)
    record_failure("x")
    assert list(tmp_path.iterdir()) == []


def _dead(tmp_path, log, how):
    server = MariaDB(tmp_path / "db", 1)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "error.log").write_text(log)
    server.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server.proc.send_signal(how)
    server.proc.wait()
    return server


def test_a_crashed_server_is_named_with_its_signal_and_query(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_FAILURES", str(tmp_path / "failures"))
    server = _dead(tmp_path, CRASH_LOG, signal.SIGSEGV)
    server.stop()
    line = (tmp_path / "failures").read_text()
    assert "crashed (exit -11)" in line and "got signal 11" in line
    assert "Query (0x770328010f40): SELECT ID, TIME FROM information_schema.PROCESSLIST" in line


def test_a_server_a_test_killed_is_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_FAILURES", str(tmp_path / "failures"))
    server = _dead(tmp_path, "2026-12-03 12:00:02 0 [Note] ready for connections.\n", signal.SIGKILL)
    server.stop()
    assert not (tmp_path / "failures").exists()


SHUTDOWN = "2026-12-03 17:36:33 0 [Note] /usr/sbin/mariadbd (initiated by: unknown): Normal shutdown\n"


def test_a_server_shut_down_by_a_signal_its_test_did_not_send_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_FAILURES", str(tmp_path / "failures"))
    log = "2026-12-03 17:36:29 0 [Note] ready for connections.\n" + SHUTDOWN
    server = _dead(tmp_path, log, signal.SIGTERM)
    server.stop()
    line = (tmp_path / "failures").read_text()
    assert "was shut down by a signal its test did not send" in line and "17:36:33" in line


def test_only_the_shutdowns_since_the_last_start_count(tmp_path, monkeypatch):
    # a restart's own stop logs the same line: it is before the log position of the last start
    monkeypatch.setenv("BT_FAILURES", str(tmp_path / "failures"))
    log = SHUTDOWN + "2026-12-03 17:36:35 0 [Note] ready for connections.\n"
    server = _dead(tmp_path, log, signal.SIGKILL)
    server.log_start = len(SHUTDOWN)
    server.stop()
    assert not (tmp_path / "failures").exists()
