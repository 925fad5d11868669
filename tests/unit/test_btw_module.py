"""The result handling the btw modules share (btw_module.ModuleRun), with the real cores' errors."""

import os

import pytest
from ansible.module_utils import btw_module, btw_retention
from ansible.module_utils.btw_fs import BtwError
from ansible.module_utils.btw_s3 import BtwS3Error


class Exited(Exception):
    pass


class Module:
    """What ModuleRun uses of AnsibleModule: exit_json/fail_json end the module (here: raise)."""

    def __init__(self):
        self.result = None

    def exit_json(self, **kw):
        self.result = dict(kw, failed=False)
        raise Exited

    def fail_json(self, **kw):
        self.result = dict(kw, failed=True)
        raise Exited


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_failure_publishes_a_failed_backup_run():
    module, clock = Module(), Clock()
    run = btw_module.ModuleRun(
        module, "file-system backup www failed: ", {"strategy": "fs_backup", "set": "www", "type": "tar"},
        clock,
    )

    def core():
        clock.now += 2.5
        raise BtwError("source /srv/www does not exist")

    with pytest.raises(Exited):
        run.call(core)
    assert module.result == {
        "failed": True,
        "msg": "file-system backup www failed: source /srv/www does not exist",
        "backup_run": {
            "strategy": "fs_backup",
            "set": "www",
            "type": "tar",
            "location": None,
            "result": "failed",
            "size_bytes": 0,
            "duration_seconds": 2.5,
            "details": "source /srv/www does not exist",
        },
    }


def test_failure_keeps_a_known_location_and_takes_details_and_extra_keys():
    module = Module()
    run = btw_module.ModuleRun(module, "off-site sync failed: ", {"strategy": "offsite_sync", "set": "h1"})
    run.run["location"] = "s3://b/h1"
    with pytest.raises(Exited):
        run.fail(BtwS3Error("S3 endpoint unreachable"), details="unreachable; 2 pending", pending=["a"])
    assert module.result["backup_run"]["location"] == "s3://b/h1"
    assert module.result["backup_run"]["details"] == "unreachable; 2 pending"
    assert module.result["pending"] == ["a"]
    assert module.result["msg"] == "off-site sync failed: S3 endpoint unreachable"


def test_without_a_run_only_the_message():
    module = Module()
    with pytest.raises(Exited):
        btw_module.ModuleRun(module, "restore failed: ").call(os.listdir, "/nonexistent-btw-dir")
    assert set(module.result) == {"failed", "msg"}
    assert module.result["msg"].startswith("restore failed: [Errno 2]")


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        btw_module.ModuleRun(Module()).call(lambda: 1 / 0)


def test_success_returns_the_core_result_and_exit_stored_publishes_ok():
    module = Module()
    run = btw_module.ModuleRun(module, "x", {"strategy": "db_backup", "set": "wiki", "type": "pg_dump"})
    result = run.call(dict, stored=False, reason="unchanged", location="/b/db/wiki", size_bytes=0,
                      duration_seconds=0.4, changed=False)
    with pytest.raises(Exited):
        run.exit_stored(result)
    assert module.result["backup_run"] == {
        "strategy": "db_backup",
        "set": "wiki",
        "type": "pg_dump",
        "result": "ok",
        "size_bytes": 0,
        "duration_seconds": 0.4,
        "details": "not stored: unchanged",
        "location": "/b/db/wiki",
    }
    assert module.result["changed"] is False and module.result["reason"] == "unchanged"


def test_a_corrupt_sync_journal_fails_retention_cleanly(tmp_path):
    root = tmp_path / "root"
    (root / "fs" / "www").mkdir(parents=True)
    (root / ".btw-sync").mkdir()
    (root / ".btw-sync" / "journal-x.jsonl").write_text('{"op":"target"}\nnot json\n{"op":"x"}\n')
    module = Module()
    with pytest.raises(Exited):
        btw_module.ModuleRun(module).call(btw_retention.apply_retention, str(root), "fs/www", 1, None, True)
    assert module.result["failed"] and "is corrupt at line 2" in module.result["msg"]


@pytest.mark.parametrize(
    "kind,key", [("mysqldump", "defaults_file"), ("pg_dump", "passfile"), ("pg_globals", "passfile")]
)
def test_connection_from_options(kind, key):
    params = {name: None for name in btw_module.CONNECTION_SPEC}
    params.update(type=kind, login_host="db1", login_password="pw", credentials_file="/etc/backup/cred")
    conn = btw_module.connection_from(params)
    base = {"host": "db1", "port": None, "user": None, "password": "pw", "socket": None}
    assert conn == dict(base, **{key: "/etc/backup/cred"})
    params["credentials_file"] = None
    assert btw_module.connection_from(params) == base
    assert btw_module.CONNECTION_SPEC["login_password"]["no_log"] is True
