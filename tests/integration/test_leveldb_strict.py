"""LevelDB backups as strict at backup time as at rest (issue 14), against real corrupt stores.

The tests build a store with plyvel, then damage copies of it the ways the at-rest verification
catches: a bit flip in each table file, a missing table, a truncated MANIFEST, no CURRENT. Every
case is refused by the backup core with repair off and with repair on, and a repair's keys_lost is
the true loss (keys the undamaged store had that the repaired copy lacks)."""
import json
import os
import shutil
import subprocess

import plyvel
import pytest
from ansible.module_utils import leveldb_backup as lb
from ansible.module_utils import leveldb_keys as lk

RECORDS = 1500


def key(i):
    return b"k%06d" % i


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A closed store of RECORDS keys in about 20 table files, and its key set."""
    path = str(tmp_path_factory.mktemp("pristine") / "db")
    db = plyvel.DB(path, create_if_missing=True, write_buffer_size=64 * 1024, max_file_size=128 * 1024)
    try:
        for i in range(RECORDS):
            db.put(key(i), os.urandom(200).hex().encode())
    finally:
        db.close()
    db = plyvel.DB(path)  # recover the log into a table, so the store is in tables only
    db.close()
    state = lk.read_manifest(path)
    return {"path": path, "keys": {key(i) for i in range(RECORDS)},
            "tables": sorted(n for n in os.listdir(path) if lb.is_table(n)
                             and int(lb.table_number(n)) in state["live_tables"])}


def damaged(pristine, tmp_path, case):
    src = str(tmp_path / "src")
    shutil.copytree(pristine["path"], src)
    kind, _, arg = case.partition(":")
    if kind == "flip":
        path = os.path.join(src, arg)
        with open(path, "r+b") as handle:
            handle.seek(os.path.getsize(path) // 3)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0x10]))
    elif kind == "missing":
        os.unlink(os.path.join(src, arg))
    elif kind == "truncated-manifest":
        manifest = os.path.join(src, open(os.path.join(src, "CURRENT")).read().strip())
        os.truncate(manifest, os.path.getsize(manifest) // int(arg))
    elif kind == "no-current":
        os.unlink(os.path.join(src, "CURRENT"))
    elif kind == "missing-manifest":
        os.unlink(os.path.join(src, open(os.path.join(src, "CURRENT")).read().strip()))
    return src


def true_loss(pristine, src, tmp_path):
    """Keys of the undamaged store missing after RepairDB of a copy of the damaged one."""
    scratch = str(tmp_path / "truth")
    shutil.copytree(src, scratch)
    plyvel.repair_db(scratch, paranoid_checks=True)
    db = plyvel.DB(scratch)
    try:
        after = set(db.iterator(include_value=False))
    finally:
        db.close()
    return len(pristine["keys"] - after)


def structural_cases():
    return ["truncated-manifest:2", "truncated-manifest:40", "no-current", "missing-manifest"]


def test_every_table_bit_flip_is_refused_with_repair_off_and_on_and_the_loss_is_exact(pristine, tmp_path):
    assert len(pristine["tables"]) >= 10
    for number, table in enumerate(pristine["tables"]):
        case_dir = tmp_path / table
        case_dir.mkdir()
        src = damaged(pristine, case_dir, "flip:" + table)
        with pytest.raises(lb.LevelDBBackupError, match="verification of the copy failed"):
            lb.backup(src, str(case_dir / "off"), name="x", repair=False, fsync=False)
        with pytest.raises(lb.LevelDBBackupError, match="repair lost") as refused:
            lb.backup(src, str(case_dir / "on"), name="x", repair=True, fsync=False)
        loss = true_loss(pristine, src, case_dir)
        assert loss > 0
        assert f"repair lost {loss} keys" in str(refused.value), (table, loss, str(refused.value))
        if number % 3:
            shutil.rmtree(case_dir)
            continue
        # with fail_on_data_loss off the repaired backup is published, with the exact loss
        report = lb.backup(src, str(case_dir / "lossy"), name="x", repair=True, fail_on_data_loss=False,
                           fsync=False)
        assert report["repaired"] and report["keys_lost"] == loss
        assert report["records"] == RECORDS - loss
        for dest in ("off", "on"):
            assert lb.list_backups(str(case_dir / dest)) == []
            assert not os.path.lexists(str(case_dir / dest / "latest"))
        shutil.rmtree(case_dir)


@pytest.mark.parametrize("repair", [False, True])
@pytest.mark.parametrize("case", ["missing:0"] + structural_cases())
def test_structural_damage_is_refused_with_repair_off_and_on(pristine, tmp_path, case, repair):
    if case == "missing:0":
        case = "missing:" + pristine["tables"][len(pristine["tables"]) // 2]
    src = damaged(pristine, tmp_path, case)
    with pytest.raises(lb.LevelDBBackupError,
                       match="truncated|missing|no CURRENT|does not exist|cannot be read") as refused:
        lb.backup(src, str(tmp_path / "b"), name="x", repair=repair, fail_on_data_loss=True, fsync=False)
    assert "Traceback" not in str(refused.value)
    assert lb.list_backups(str(tmp_path / "b")) == []


def test_reference_keys_read_every_key_of_a_store_with_bad_blocks(pristine, tmp_path):
    assert lk.reference_keys(pristine["path"]) == pristine["keys"]
    src = damaged(pristine, tmp_path, "flip:" + pristine["tables"][3])
    assert lk.reference_keys(src) == pristine["keys"]


def test_a_truncated_source_after_two_good_backups_is_suspect_and_retention_keeps_the_good_ones(
        pristine, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(pristine["path"], src)
    dest = str(tmp_path / "b")
    lb.backup(src, dest, name="1", retain=2, fsync=False)
    lb.backup(src, dest, name="2", retain=2, fsync=False)
    # the source loses most of its keys in a way LevelDB cannot see (a bad deploy, a wrong mount)
    db = plyvel.DB(src)
    try:
        for i in range(RECORDS // 10, RECORDS):
            db.delete(key(i))
    finally:
        db.close()
    for name in ("3", "4"):
        with pytest.raises(lb.SuspectBackupError) as suspect:
            lb.backup(src, dest, name=name, retain=2, fsync=False)
        message = str(suspect.value)
        assert "records fell from 1500 to 150" in message and "accept_shrink: true" in message
        assert suspect.value.report["result"] == "suspect"
    assert [os.path.basename(p) for p in lb.list_backups(dest)] == [
        "leveldb-1", "leveldb-2", "leveldb-3", "leveldb-4"]
    assert os.readlink(os.path.join(dest, "latest")) == "leveldb-2"
    at_rest = lb.verify_backup(os.path.join(dest, "leveldb-4"))
    assert at_rest["ok"] and at_rest["result"] == "suspect"
    assert lb.verify_backup(os.path.join(dest, "latest"))["result"] == "good"
    # the operator accepts the drop once: the run is good, latest moves, retention counts it
    accepted = lb.backup(src, dest, name="5", retain=2, fsync=False, accept_shrink=True)
    assert accepted["result"] == "good" and accepted["shrink_accepted"]
    assert os.readlink(os.path.join(dest, "latest")) == "leveldb-5"
    # suspect backups newer than the oldest good one kept stay for the operator to look at
    assert [os.path.basename(p) for p in lb.list_backups(dest)] == [
        "leveldb-2", "leveldb-3", "leveldb-4", "leveldb-5"]
    assert lb.backup(src, dest, name="6", retain=2, fsync=False)["removed"] == [
        "leveldb-2", "leveldb-3", "leveldb-4"]


def test_an_unwritable_destination_is_reported_as_the_backups_message(pristine, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(str(ro), os.W_OK):  # root: a read-only bind would be needed; use a file as parent
            (tmp_path / "file").write_text("x")
            target = str(tmp_path / "file" / "sub" / "dest")
        else:
            target = str(ro / "dest")
        with pytest.raises(lb.LevelDBBackupError) as failed:
            lb.backup(pristine["path"], target, name="x", fsync=False)
        assert not isinstance(failed.value, OSError)
    finally:
        os.chmod(ro, 0o700)


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of a given size (root only), unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounts = []

    def make(name, options):
        mnt = tmp_path / name
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], check=True)
        mounts.append(mnt)
        return mnt

    yield make
    for mnt in mounts:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_destination_that_does_not_exist_yet_is_the_backups_message(pristine, small_fs):
    read_only = small_fs("ro", "ro,size=1m")
    with pytest.raises(lb.LevelDBBackupError, match="Read-only file system") as failed:
        lb.backup(pristine["path"], str(read_only / "dest"), name="x", fsync=False)
    assert "backup failed" in str(failed.value)


def test_out_of_space_during_a_repair_is_reported_as_out_of_space(pristine, tmp_path, small_fs):
    src = damaged(pristine, tmp_path, "flip:" + pristine["tables"][2])
    need = lb.plan(src, str(tmp_path / "unused"))["bytes_to_copy"]
    full = small_fs("full", f"size={need + 512 * 1024}")
    dest = str(full / "dest")
    # leave room for the copy and the small files, not for the rewritten table
    free = lb.free_bytes(str(full))
    with open(full / "filler", "wb") as handle:
        handle.write(b"\0" * (free - need - 40 * 1024))
    with pytest.raises(lb.LevelDBBackupError, match="out of space while repairing") as failed:
        lb.backup(src, dest, name="x", repair=True, fail_on_data_loss=False, fsync=False)
    assert "lost" not in str(failed.value)
    assert lb.list_backups(dest) == [] and not os.path.lexists(os.path.join(dest, "latest"))


def test_a_backup_made_before_the_guard_is_compared_by_its_record_count(pristine, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(pristine["path"], src)
    dest = str(tmp_path / "b")
    old = lb.backup(src, dest, name="old", fsync=False)["path"]
    meta_path = os.path.join(old, lb.META_FILE)
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    for field in ("figures", "result", "shrink", "shrink_accepted"):
        meta.pop(field)
    with open(meta_path, "w", encoding="utf-8") as handle:
        json.dump(meta, handle)
    db = plyvel.DB(src)
    try:
        for i in range(RECORDS // 2, RECORDS):
            db.delete(key(i))
    finally:
        db.close()
    with pytest.raises(lb.SuspectBackupError, match=f"records fell from {RECORDS} to {RECORDS // 2}"):
        lb.backup(src, dest, name="new", fsync=False)
    assert os.readlink(os.path.join(dest, "latest")) == "leveldb-old"
