"""The throwaway-server verification's recovery of transactions left prepared in a snapshot.

A real occurrence needs InnoDB's commit record to be still in its log buffer when the snapshot is
taken (seen under load in tests/integration/test_lvm_copy_host.py, not reproducible on demand),
so the server is a small script here that answers like mariadbd does in that case.
"""
import os
import stat

import pytest
from ansible.module_utils import mysql_datadir_verify as verify

FAKE_SERVER = """#!/bin/sh
# Stand-in for mariadbd: refuses to start while a transaction is prepared, like the real one.
for a in "$@"; do
  case "$a" in
    --log-error=*) log="${a#--log-error=}" ;;
    --datadir=*) datadir="${a#--datadir=}" ;;
    --tc-heuristic-recover=*) mode="${a#--tc-heuristic-recover=}" ;;
  esac
done
rm -f "$datadir/../up"
echo "$@" >> "$datadir/../calls"
if [ -n "$mode" ]; then
  echo "$mode" > "$datadir/../recovered"
  echo "Please restart without --tc-heuristic-recover" >> "$log"; exit 1
fi
if [ ! -e "$datadir/../recovered" ] && [ -e "$datadir/../prepared" ]; then
  echo "[ERROR] Found 1 prepared transactions! It means that server was not shut down" >> "$log"
  exit 1
fi
touch "$datadir/../up"  # accepting connections from here on
exec sleep 2  # "shuts down" soon after the checks
"""


class FakeCursor:
    def __init__(self):
        self.rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=None):
        if sql.startswith("SELECT TABLE_SCHEMA"):
            self.rows = [("app", "t")]
        elif sql.startswith("CHECK TABLE"):
            self.rows = [("app.t", "check", "status", "OK")]
        elif sql.startswith("SELECT COUNT"):
            self.rows = [(3,)]
        else:
            self.rows = []

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0]


class FakeConnection:
    def cursor(self):
        return FakeCursor()

    def close(self):
        pass


@pytest.fixture
def datadir(tmp_path, monkeypatch):
    server = tmp_path / "mariadbd"
    server.write_text(FAKE_SERVER)
    server.chmod(server.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(verify, "server_binary", lambda: str(server))
    data = tmp_path / "data"
    (data / "mysql").mkdir(parents=True)
    return data


def slow_connect(tmp_path):
    def connect(sock):
        if not (tmp_path / "up").exists():
            raise OSError("not up yet")
        return FakeConnection()
    return connect


def test_prepared_transactions_are_committed_then_the_copy_is_checked(datadir, tmp_path):
    (tmp_path / "prepared").write_text("1")
    result = verify.verify_datadir(str(datadir), ["app.t"], start_timeout=20, connect=slow_connect(tmp_path))
    assert result["row_counts"] == {"app.t": 3}
    assert (tmp_path / "recovered").read_text().strip() == "COMMIT"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 3 and "--tc-heuristic-recover=COMMIT" in calls[1]
    assert "--tc-heuristic-recover" not in calls[2]


def test_a_copy_without_prepared_transactions_starts_once(datadir, tmp_path):
    verify.verify_datadir(str(datadir), ["app.t"], start_timeout=20, connect=slow_connect(tmp_path))
    assert len((tmp_path / "calls").read_text().splitlines()) == 1
    assert not os.path.exists(tmp_path / "recovered")


def test_other_start_failures_are_not_retried(datadir, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(verify, "server_binary", lambda: str(broken))
    with pytest.raises(verify.VerifyError, match="exited"):
        verify.verify_datadir(str(datadir), start_timeout=20, connect=slow_connect(tmp_path))
