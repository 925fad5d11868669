"""Unit tests of the LevelDB backup core's pure parts (no LevelDB library involved)."""
import os

import pytest
from ansible.module_utils import leveldb_backup as lb

from tests.lib.progress import recording


def fake_leveldb(path, manifest="MANIFEST-000004", tables=("000005.ldb", "000007.ldb")):
    path.mkdir()
    (path / "CURRENT").write_text(manifest + "\n")
    (path / manifest).write_bytes(b"manifest-bytes")
    (path / "000006.log").write_bytes(b"log")
    (path / "LOCK").write_bytes(b"")
    for i, name in enumerate(tables):
        (path / name).write_bytes(b"table" * (i + 1))
    return str(path)


def test_check_leveldb_dir_accepts_a_store_and_names_its_manifest(tmp_path):
    assert lb.check_leveldb_dir(fake_leveldb(tmp_path / "db")) == "MANIFEST-000004"


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("x"), "is not a directory"),
    (lambda p: p.mkdir(), "no CURRENT file"),
    (lambda p: (p.mkdir(), (p / "CURRENT").write_text("garbage\n")), "does not name a manifest"),
    (lambda p: (p.mkdir(), (p / "CURRENT").write_text("MANIFEST-../../x\n")), "does not name a manifest"),
    (lambda p: (p.mkdir(), (p / "CURRENT").write_text("MANIFEST-000009\n")), "which does not exist"),
])
def test_check_leveldb_dir_rejects_what_is_not_a_store(tmp_path, setup, message):
    target = tmp_path / "x"
    setup(target)
    with pytest.raises(lb.LevelDBBackupError, match=message):
        lb.check_leveldb_dir(str(target))


def test_manifest_fingerprint_changes_with_manifest_and_current(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    first = lb.manifest_fingerprint(db)
    assert set(first) == {"CURRENT", "MANIFEST-000004"}
    with open(os.path.join(db, "MANIFEST-000004"), "ab") as handle:
        handle.write(b"edit")
    assert lb.manifest_fingerprint(db) != first


def test_check_destination_refuses_nesting(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    with pytest.raises(lb.LevelDBBackupError, match="inside the source"):
        lb.check_destination(db, os.path.join(db, "sub", "b"))
    with pytest.raises(lb.LevelDBBackupError, match="inside the destination"):
        lb.check_destination(db, str(tmp_path))
    with pytest.raises(lb.LevelDBBackupError, match="parent directory"):
        lb.check_destination(db, str(tmp_path / "no" / "such" / "dir"))
    lb.check_destination(db, str(tmp_path / "backups"))
    # a sibling whose name merely starts with the source's name is not inside it
    lb.check_destination(db, str(tmp_path / "db-backups"))


def test_consistent_copy_copies_manifest_first_and_skips_lock(tmp_path, monkeypatch):
    db = fake_leveldb(tmp_path / "db")
    order = []
    real = lb.copy_file
    monkeypatch.setattr(lb, "copy_file", lambda s, d, fsync=True: (order.append(os.path.basename(s)),
                                                                     real(s, d, fsync))[1])
    files, attempts, fingerprint = lb.consistent_copy(db, str(tmp_path / "copy"), fsync=False)
    assert attempts == 1
    assert order[:2] == ["CURRENT", "MANIFEST-000004"]
    assert "LOCK" not in files and "LOCK" not in os.listdir(tmp_path / "copy")
    assert fingerprint == lb.manifest_fingerprint(db)


def test_consistent_copy_retries_then_gives_up_and_removes_the_copy(tmp_path, monkeypatch):
    db = fake_leveldb(tmp_path / "db")
    ticks = iter(range(100))
    real = lb.manifest_fingerprint
    monkeypatch.setattr(lb, "manifest_fingerprint", lambda p: dict(real(p), t=next(ticks)))
    sleeps = []
    with pytest.raises(lb.LevelDBBackupError, match="changed during each of 4 copy attempts"):
        lb.consistent_copy(db, str(tmp_path / "copy"), attempts=4, fsync=False, sleep=sleeps.append)
    assert len(sleeps) == 3
    assert not os.path.exists(tmp_path / "copy")


def test_consistent_copy_succeeds_on_a_later_attempt(tmp_path, monkeypatch):
    db = fake_leveldb(tmp_path / "db")
    calls = {"n": 0}
    real = lb.manifest_fingerprint

    def flaky(path):
        calls["n"] += 1
        return dict(real(path), busy=calls["n"] == 2)  # changes during the first attempt only

    monkeypatch.setattr(lb, "manifest_fingerprint", flaky)
    _files, attempts, _ = lb.consistent_copy(db, str(tmp_path / "copy"), fsync=False, sleep=lambda s: None)
    assert attempts == 2


def test_incremental_copy_links_only_identical_tables(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    prev = tmp_path / "prev"
    (prev / "data").mkdir(parents=True)
    (prev / "data" / "000005.sst").write_bytes(b"table")        # same content, renamed to .sst
    (prev / "data" / "000007.sst").write_bytes(b"tablXtablX")   # same size, different content
    meta = {"status": "ok", "data_files": {
        "000005.sst": {"size": 5, "sha256": lb.sha256_file(str(prev / "data" / "000005.sst"))[0],
                       "verified": True},
        "000007.sst": {"size": 10, "sha256": lb.sha256_file(str(prev / "data" / "000007.sst"))[0]}}}
    (prev / "backup.json").write_text(__import__("json").dumps(meta))
    files, _, _ = lb.consistent_copy(db, str(tmp_path / "copy"), previous_dir=str(prev), fsync=False)
    assert files["000005.ldb"]["linked"] and files["000005.ldb"]["verified"]
    assert not files["000007.ldb"]["linked"]
    assert os.stat(tmp_path / "copy" / "000005.ldb").st_ino == os.stat(prev / "data" / "000005.sst").st_ino
    assert (tmp_path / "copy" / "000007.ldb").read_bytes() == b"tabletable"


def test_wait_until_quiet_with_a_fake_clock(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
        if now[0] < 3:  # something writes during the first 3 seconds
            with open(os.path.join(db, "000006.log"), "ab") as handle:
                handle.write(b"x")

    waited = lb.wait_until_quiet(db, quiet_seconds=2, timeout=60, interval=0.5, clock=lambda: now[0],
                                 sleep=sleep)
    assert waited == 4.5  # last change seen at 2.5 s, then 2 s of quiet
    now[0] = 0.0
    with pytest.raises(lb.LevelDBBackupError, match="did not stay quiet for 5"):
        lb.wait_until_quiet(db, quiet_seconds=5, timeout=2, interval=0.5, clock=lambda: now[0], sleep=sleep)


def test_backup_rejects_bad_parameters_before_touching_anything(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    dest = str(tmp_path / "b")
    with pytest.raises(lb.LevelDBBackupError, match="invalid backup name"):
        lb.backup(db, dest, name="../evil")
    with pytest.raises(lb.LevelDBBackupError, match="verify must be"):
        lb.backup(db, dest, name="x", verify="sometimes")
    with pytest.raises(lb.LevelDBBackupError, match="attempts"):
        lb.backup(db, dest, name="x", attempts=0)
    assert not os.path.exists(dest)


def test_retention_keeps_newest_complete_backups_only(tmp_path):
    dest = tmp_path / "b"
    for i, name in enumerate(["a", "b", "c", "d"]):
        (dest / f"leveldb-{name}").mkdir(parents=True)
        (dest / f"leveldb-{name}" / "backup.json").write_text(f'{{"status": "ok", "created_epoch": {i}}}')
    (dest / "leveldb-broken").mkdir()   # no metadata: not a backup, never counted nor deleted
    (dest / ".tmp-e").mkdir()
    assert lb.apply_retention(str(dest), 2) == ["leveldb-a", "leveldb-b"]
    assert sorted(os.listdir(dest)) == [".tmp-e", "leveldb-broken", "leveldb-c", "leveldb-d"]
    assert lb.apply_retention(str(dest), 0) == []
    assert lb.remove_stale_temps(str(dest)) == [".tmp-e"]


def test_plan_counts_bytes_to_copy_and_to_link(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    report = lb.plan(db, str(tmp_path / "b"))
    assert report["bytes_to_link"] == 0
    assert report["bytes_to_copy"] == sum(os.path.getsize(os.path.join(db, n)) for n in os.listdir(db))
    assert report["previous"] is None


def test_unchanged_source_table_is_linked_without_reading_it_again(tmp_path, monkeypatch):
    db = fake_leveldb(tmp_path / "db", tables=("000005.ldb",))
    prev = tmp_path / "prev"
    (prev / "data").mkdir(parents=True)
    (prev / "data" / "000005.sst").write_bytes(b"table")
    st = os.stat(os.path.join(db, "000005.ldb"))
    meta = {"status": "ok", "data_files": {"000005.sst": {
        "size": 5, "sha256": lb.sha256_file(str(prev / "data" / "000005.sst"))[0], "verified": True,
        "src": [st.st_ino, st.st_mtime_ns]}}}
    (prev / "backup.json").write_text(__import__("json").dumps(meta))

    real = lb.sha256_file

    def no_table_read(path):
        assert not path.endswith(".ldb"), f"{path} was hashed again"
        return real(path)

    monkeypatch.setattr(lb, "sha256_file", no_table_read)
    files, _, _ = lb.consistent_copy(db, str(tmp_path / "copy"), previous_dir=str(prev), fsync=False)
    assert files["000005.ldb"]["linked"]
    monkeypatch.undo()
    # rehash=True reads it anyway (and still links: same content)
    files, _, _ = lb.consistent_copy(db, str(tmp_path / "copy2"), previous_dir=str(prev), fsync=False,
                                     rehash=True)
    assert files["000005.ldb"]["linked"]


# -- progress of the copy (roles/backup_progress polls the file) -------------------------------


def test_backup_reports_copy_progress_done_grows_to_the_total_then_done(tmp_path):
    from ansible.module_utils.progress import read_progress

    db = fake_leveldb(tmp_path / "db", tables=("000005.ldb", "000007.ldb", "000008.ldb"))
    to_copy = lb.plan(db, str(tmp_path / "b"))["bytes_to_copy"]
    log, path = [], str(tmp_path / "copy.progress")
    report = lb.backup(db, str(tmp_path / "b"), name="one", verify="none", fsync=False, progress_file=path,
                       progress_factory=recording(log))
    copy = [s for s in log if s["step"] == "LevelDB copy"]
    assert copy and {s["total_bytes"] for s in copy} == {to_copy}
    running = [s["done_bytes"] for s in copy if s["state"] == "running"]
    assert running == sorted(running) and running[0] == 0 and len(set(running)) >= 4  # grows file by file
    assert copy[-1]["state"] == "done" and copy[-1]["done_bytes"] == report["bytes_copied"] == to_copy
    assert read_progress(path)["state"] == "done"

    # an incremental run counts only what it copies: linked tables are in neither done nor total
    log.clear()
    report = lb.backup(db, str(tmp_path / "b"), name="two", verify="none", fsync=False, progress_file=path,
                       progress_factory=recording(log))
    assert report["bytes_linked"] > 0
    assert log[-1]["state"] == "done"
    assert log[-1]["done_bytes"] == report["bytes_copied"] == log[-1]["total_bytes"]


def test_backup_failure_is_written_to_the_progress_file(tmp_path):
    from ansible.module_utils.progress import read_progress

    path = str(tmp_path / "copy.progress")
    with pytest.raises(lb.LevelDBBackupError, match="not a LevelDB directory"):
        lb.backup(str(tmp_path), str(tmp_path / "b"), name="x", progress_file=path)
    state = read_progress(path)
    assert state["state"] == "failed" and "not a LevelDB directory" in state["message"]


def test_backup_without_progress_file_writes_none(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    before = set(os.listdir(tmp_path))
    lb.backup(db, str(tmp_path / "b"), name="one", verify="none", fsync=False)
    assert set(os.listdir(tmp_path)) == before | {"b"}


def test_progress_file_in_a_missing_directory_fails_before_anything(tmp_path):
    db = fake_leveldb(tmp_path / "db")
    with pytest.raises(lb.LevelDBBackupError, match="progress file"):
        lb.backup(db, str(tmp_path / "b"), name="one", progress_file=str(tmp_path / "no" / "p"))
    assert not os.path.exists(tmp_path / "b")


# -- a cancelled wait for a quiet directory ------------------------------------------------------
WAITER = r"""
import os, sys, threading, time
import ansible.module_utils
ansible.module_utils.__path__.append(sys.argv[1])
from ansible.module_utils import leveldb_backup as lb
src, progress = sys.argv[2], sys.argv[3]
def busy():  # a store that never goes quiet
    i = 0
    while True:
        with open(os.path.join(src, "000005.log"), "a") as handle:
            handle.write(str(i))
        i += 1
        time.sleep(0.05)
threading.Thread(target=busy, daemon=True).start()
try:
    lb.wait_for_quiet(src, 5, 600, progress)
except lb.LevelDBBackupError as exc:
    print(exc)
    sys.exit(4)
"""


def test_wait_for_quiet_cancelled_by_sigterm_fails_clearly(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from ansible.module_utils.progress import read_progress

    src = tmp_path / "db"
    src.mkdir()
    for name in ("CURRENT", "MANIFEST-000002", "000005.log"):
        (src / name).write_text("x")
    (src / "CURRENT").write_text("MANIFEST-000002\n")
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    module_utils = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "plugins", "module_utils")
    progress = tmp_path / "p"
    proc = subprocess.Popen([sys.executable, str(script), module_utils, str(src), str(progress)],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not progress.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the wait did not start"
        time.sleep(0.02)
    assert read_progress(str(progress))["step"] == "waiting for a quiet LevelDB directory"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 4, out  # a clean error, not a traceback nor death by the signal
    assert "backup cancelled while waiting for a quiet LevelDB directory" in out
    final = read_progress(str(progress))
    assert final["state"] == "failed" and "nothing was copied" in final["message"]


def test_the_copy_is_on_disk_before_it_is_published_a_failing_sync_publishes_nothing(tmp_path, monkeypatch):
    db = fake_leveldb(tmp_path / "db", tables=("000005.ldb", "000007.ldb", "000008.ldb"))
    dest = tmp_path / "b"
    seen = []

    class Recording:
        def __init__(self, path):
            seen.append(("started", sorted(os.listdir(path))))
            self.path = path

        def wait(self):
            seen.append(("waited", sorted(os.listdir(dest))))

    monkeypatch.setattr(lb, "SyncInBackground", Recording)
    monkeypatch.setattr(lb, "sync_tree", lambda path: seen.append(("synced", sorted(os.listdir(dest)))))
    report = lb.backup(db, str(dest), name="one", verify="none")
    # started once the whole copy was there; waited for, then the rest synced, before the rename
    assert seen[0] == ("started", ["000005.ldb", "000006.log", "000007.ldb", "000008.ldb", "CURRENT",
                                   "MANIFEST-000004"])
    assert seen[1:] == [("waited", [".tmp-one"]), ("synced", [".tmp-one"])]
    assert os.path.isdir(report["path"])

    class Failing(Recording):
        def wait(self):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(lb, "SyncInBackground", Failing)
    with pytest.raises(lb.LevelDBBackupError, match="Input/output error"):
        lb.backup(db, str(dest), name="two", verify="none")
    assert sorted(os.listdir(dest)) == ["latest", "leveldb-one"]  # nothing published, no partial copy left
    assert os.readlink(dest / "latest") == "leveldb-one"
