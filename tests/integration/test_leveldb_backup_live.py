"""LevelDB backups against real LevelDB stores (plyvel), a real writer process and real faults."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import plyvel
import pytest
from ansible.module_utils import leveldb_backup as lb

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRITER = os.path.join(TOP, "tests", "standins", "fcrepo_writer.py")


def key(i):
    return b"k%010d" % i


def make_db(path, count, start=0, value_size=400):
    """A closed LevelDB with several table files (small write buffer and table size)."""
    db = plyvel.DB(str(path), create_if_missing=True, write_buffer_size=64 * 1024, max_file_size=128 * 1024)
    try:
        for i in range(start, start + count):
            db.put(key(i), os.urandom(value_size // 2).hex().encode())
    finally:
        db.close()
    return str(path)


def keys_of(path, scratch):
    """All keys of the LevelDB at path, read with checksums from a throwaway copy (path is untouched)."""
    check = None
    lb.hardlink_tree(path, scratch)
    try:
        check = lb.verify_db(scratch, count_keys=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert check["ok"], check["error"]
    return check["keys"]


def tables(path):
    return sorted(n for n in os.listdir(path) if lb.is_table(n))


def flip_byte(path, offset):
    """Flip one byte in place (the caller makes sure the file is not hard-linked elsewhere)."""
    assert os.stat(path).st_nlink == 1
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x10]))


class Writer:
    """The fcrepo write-load stand-in as a real separate process."""

    def __init__(self, db, progress, delay="0.001"):
        self.progress = progress
        self.proc = subprocess.Popen([sys.executable, WRITER, db, "--progress", progress, "--delay", delay])
        deadline = time.time() + 30
        while self.written() < 500:
            assert self.proc.poll() is None, "writer died"
            assert time.time() < deadline, "writer did not start"
            time.sleep(0.05)

    def written(self):
        try:
            with open(self.progress, encoding="ascii") as handle:
                return int(handle.read() or 0)
        except (OSError, ValueError):
            return 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def writer(tmp_path):
    started = []

    def start(db, delay="0.001"):
        w = Writer(db, str(tmp_path / "progress"), delay)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _compactions(source):
    with open(os.path.join(source, "LOG"), encoding="utf-8", errors="replace") as handle:
        return handle.read().count("Compacted")


def test_hot_backups_under_continuous_writes_contain_every_earlier_key(tmp_path, writer):
    source = str(tmp_path / "src")
    dest = str(tmp_path / "backups")
    w = writer(source)
    results = []
    # keep backing up until the writer has triggered at least two compactions (bounded)
    for i in range(80):
        if i >= 6 and _compactions(source) >= 2:
            break
        time.sleep(0.2)
        written_before = w.written()
        report = lb.backup(source, dest, name=f"b{i:02d}", verify="changed" if i % 2 else "full", retain=4)
        found = keys_of(os.path.join(report["path"], "data"), str(tmp_path / "scratch"))
        missing = [k for k in range(written_before) if key(k) not in found]
        assert missing == [], f"backup {i} lacks {len(missing)} keys written before it began"
        results.append(report)
    assert w.proc.poll() is None, "writer died"
    w.stop()
    assert _compactions(source) >= 2, "the writer never triggered a compaction"
    assert any(r["files_linked"] > 0 for r in results[1:]), "incremental backups linked nothing"
    assert len(lb.list_backups(dest)) == 4
    print(f"{len(results)} hot backups, attempts used: {[r['attempts'] for r in results]}")
    # every retained backup stays complete: verify each one fully from its own directory
    for path in lb.list_backups(dest):
        assert lb.verify_backup(path)["ok"]


def test_busy_source_exhausts_attempts_and_leaves_nothing(tmp_path, monkeypatch):
    source = make_db(tmp_path / "src", 2000)
    dest = str(tmp_path / "backups")
    first = lb.backup(source, dest, name="good")
    counter = iter(range(10**6))
    real = lb.manifest_fingerprint
    monkeypatch.setattr(lb, "manifest_fingerprint", lambda p: dict(real(p), tick=next(counter)))
    with pytest.raises(lb.LevelDBBackupError, match="changed during each of 3 copy attempts"):
        lb.backup(source, dest, name="busy", attempts=3)
    assert sorted(os.listdir(dest)) == ["latest", "leveldb-good"]
    assert os.readlink(os.path.join(dest, "latest")) == "leveldb-good"
    assert lb.verify_backup(first["path"])["ok"]


def test_incremental_backups_share_tables_and_survive_retention(tmp_path):
    source = make_db(tmp_path / "src", 3000)
    dest = str(tmp_path / "backups")
    full = lb.backup(source, dest, name="1", retain=2)
    assert full["files_linked"] == 0 and full["records"] == 3000
    make_db(source, 150, start=3000)  # 5% new data
    inc = lb.backup(source, dest, name="2", retain=2)
    assert inc["files_linked"] > 0
    assert inc["bytes_copied"] < full["bytes_copied"] / 3
    assert inc["records"] == 3150
    shared = [n for n in os.listdir(os.path.join(inc["path"], "data"))
              if lb.is_table(n) and os.stat(os.path.join(inc["path"], "data", n)).st_nlink > 1]
    assert shared, "no table file is hard-linked between the backups"
    make_db(source, 150, start=3150)
    third = lb.backup(source, dest, name="3", retain=2, verify="changed")
    assert third["removed"] == ["leveldb-1"]
    assert not os.path.exists(full["path"])
    # the oldest backup is gone; the two others still verify completely and hold all their keys
    assert lb.verify_backup(inc["path"])["records"] == 3150
    kept = lb.verify_backup(third["path"])
    assert kept["ok"] and kept["records"] == 3300
    # each backup is independently restorable: a plain copy of data/ opens on its own
    restored = str(tmp_path / "restored")
    shutil.copytree(os.path.join(inc["path"], "data"), restored)
    assert len(keys_of(restored, str(tmp_path / "scratch"))) == 3150


def test_second_backup_without_new_data_copies_no_table(tmp_path):
    source = make_db(tmp_path / "src", 2000)
    dest = str(tmp_path / "backups")
    lb.backup(source, dest, name="1")
    again = lb.backup(source, dest, name="2")
    assert again["files_linked"] == len(tables(source))
    copied = {n for n, f in json.load(open(os.path.join(again["path"], "backup.json")))["data_files"].items()}
    assert copied  # metadata lists the files
    small = sum(os.path.getsize(os.path.join(source, n)) for n in os.listdir(source) if not lb.is_table(n))
    assert again["bytes_copied"] == small  # CURRENT, MANIFEST, LOG and the write-ahead log only
    skipped = lb.backup(source, dest, name="3", skip_if_unchanged=True)
    assert skipped["skipped"] and not skipped["changed"]
    assert not os.path.exists(os.path.join(dest, "leveldb-3"))


def test_keep_exact_keeps_an_unmodified_copy_beside_the_verified_one(tmp_path):
    source = make_db(tmp_path / "src", 1500)
    report = lb.backup(source, str(tmp_path / "b"), name="x", keep_exact=True)
    exact, data = os.path.join(report["path"], "exact"), os.path.join(report["path"], "data")
    src_files = {n for n in os.listdir(source) if n != "LOCK"}
    assert {n for n in os.listdir(exact)} == src_files
    for name in src_files:
        assert lb.sha256_file(os.path.join(exact, name)) == lb.sha256_file(os.path.join(source, name))
    assert not [n for n in os.listdir(data) if n.endswith(".ldb")]
    assert [n for n in os.listdir(data) if n.endswith(".sst")]
    assert report["renamed_to_sst"] > 0


# -- corruption: detection, repair, report ---------------------------------------------------
def _single_copy_backup(tmp_path, count=3000):
    source = make_db(tmp_path / "src", count)
    report = lb.backup(source, str(tmp_path / "b"), name="c", incremental=False)
    return report["path"], os.path.join(report["path"], "data")


def test_bit_flip_in_a_table_is_detected_repaired_and_keys_lost_reported(tmp_path):
    backup_dir, data = _single_copy_backup(tmp_path)
    victim = max(tables(data), key=lambda n: os.path.getsize(os.path.join(data, n)))
    flip_byte(os.path.join(data, victim), os.path.getsize(os.path.join(data, victim)) // 3)
    # opening with paranoid checks alone does not notice; the checksum iteration does
    check = lb.verify_backup(backup_dir)
    assert not check["ok"] and "orrupt" in check["error"]
    strict = lb.verify_backup(backup_dir, repair=True)
    assert strict["repaired"] and strict["keys_lost"] > 0 and strict["lost_keys_sample"]
    assert not strict["ok"], "data loss must not pass with fail_on_data_loss"
    after = lb.verify_backup(backup_dir)
    assert after["records"] == 3000 - strict["keys_lost"]


def test_deleted_table_file_is_detected_and_repair_reports_the_loss(tmp_path):
    backup_dir, data = _single_copy_backup(tmp_path)
    victim = tables(data)[0]
    scratch = str(tmp_path / "scratch")
    db = None
    lb.hardlink_tree(data, scratch)
    try:
        db = plyvel.DB(scratch)
        total = sum(1 for _ in db.iterator(include_value=False))
    finally:
        if db:
            db.close()
        shutil.rmtree(scratch)
    os.unlink(os.path.join(data, victim))
    check = lb.verify_backup(backup_dir)
    assert not check["ok"] and "open failed" in check["error"]
    report = lb.verify_backup(backup_dir, repair=True, fail_on_data_loss=False)
    assert report["ok"] and report["repaired"]
    assert report["keys_lost"] == total - report["records_after_repair"] > 0


def test_truncated_manifest_is_detected_and_repaired_without_loss(tmp_path):
    backup_dir, data = _single_copy_backup(tmp_path)
    manifest = open(os.path.join(data, "CURRENT"), encoding="ascii").read().strip()
    path = os.path.join(data, manifest)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    check = lb.verify_backup(backup_dir)
    assert not check["ok"]
    report = lb.verify_backup(backup_dir, repair=True)
    assert report["ok"] and report["repaired"] and report["keys_lost"] == 0
    assert lb.verify_backup(backup_dir)["records"] == 3000


def test_corrupt_source_copy_is_rejected_and_previous_backup_kept(tmp_path):
    source = make_db(tmp_path / "src", 3000)
    dest = str(tmp_path / "b")
    good = lb.backup(source, dest, name="good")
    victim = max(tables(source), key=lambda n: os.path.getsize(os.path.join(source, n)))
    flip_byte(os.path.join(source, victim), os.path.getsize(os.path.join(source, victim)) // 2)
    with pytest.raises(lb.LevelDBBackupError, match=r"repair lost \d+ keys: backup rejected"):
        lb.backup(source, dest, name="bad")
    assert sorted(os.listdir(dest)) == ["latest", "leveldb-good"]
    assert lb.verify_backup(good["path"])["records"] == 3000
    accepted = lb.backup(source, dest, name="salvage", fail_on_data_loss=False)
    assert accepted["repaired"] and accepted["keys_lost"] > 0 and accepted["lost_keys_sample"]


# -- bad input and faults ---------------------------------------------------------------------
def test_bad_inputs_fail_clearly_before_anything_changes(tmp_path):
    dest = str(tmp_path / "b")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.txt").write_text("x")
    with pytest.raises(lb.LevelDBBackupError, match="does not exist"):
        lb.backup(str(tmp_path / "missing"), dest)
    with pytest.raises(lb.LevelDBBackupError, match="not a LevelDB directory"):
        lb.backup(str(tmp_path / "empty"), dest)
    with pytest.raises(lb.LevelDBBackupError, match="not a LevelDB directory"):
        lb.backup(str(tmp_path / "other"), dest)
    source = make_db(tmp_path / "src", 100)
    with pytest.raises(lb.LevelDBBackupError, match="inside the source"):
        lb.backup(source, os.path.join(source, "backups"))
    with pytest.raises(lb.LevelDBBackupError, match="inside the destination"):
        lb.backup(source, str(tmp_path))
    (tmp_path / "src2").mkdir()
    (tmp_path / "src2" / "CURRENT").write_text("MANIFEST-000099\n")
    with pytest.raises(lb.LevelDBBackupError, match="does not exist"):
        lb.backup(str(tmp_path / "src2"), dest)
    assert not os.path.exists(dest)
    assert not os.path.exists(os.path.join(source, "backups"))
    with pytest.raises(lb.LevelDBBackupError, match="not a backup made by leveldb_backup"):
        lb.verify_backup(source, repair=True)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("needs root to mount a 2 MB tmpfs")
    yield str(mnt)
    subprocess.run(["umount", str(mnt)], check=True)


def test_no_free_space_is_refused_up_front(tmp_path, tiny_tmpfs):
    source = make_db(tmp_path / "src", 8000)  # about 3.5 MB
    with pytest.raises(lb.LevelDBBackupError, match="not enough free space"):
        lb.backup(source, os.path.join(tiny_tmpfs, "b"))
    assert os.listdir(os.path.join(tiny_tmpfs, "b")) == []


def test_disk_full_during_copy_removes_partial_copy_and_keeps_previous(tmp_path, tiny_tmpfs, monkeypatch):
    small = make_db(tmp_path / "small", 1000)
    dest = os.path.join(tiny_tmpfs, "b")
    good = lb.backup(small, dest, name="good")
    big = make_db(tmp_path / "big", 8000)
    monkeypatch.setattr(lb, "free_bytes", lambda path: 10**12)  # let the up-front check pass
    with pytest.raises(lb.LevelDBBackupError, match="no space left"):
        lb.backup(big, dest, name="big", incremental=False)
    assert sorted(os.listdir(dest)) == ["latest", "leveldb-good"]
    assert lb.verify_backup(good["path"])["records"] == 1000


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import ansible.module_utils
    ansible.module_utils.__path__.append(sys.argv[1])
    from ansible.module_utils import leveldb_backup as lb
    real = lb.copy_file
    def slow_copy(src, dst, fsync=True):
        result = real(src, dst, fsync)
        open(sys.argv[4], "a").close()
        time.sleep(0.2)
        return result
    lb.copy_file = slow_copy
    lb.backup(sys.argv[2], sys.argv[3], name="killed", incremental=False)
""")


def test_copy_killed_half_way_leaves_no_backup_and_next_run_cleans_up(tmp_path):
    source = make_db(tmp_path / "src", 3000)
    dest = str(tmp_path / "b")
    good = lb.backup(source, dest, name="good")
    marker = str(tmp_path / "copying")
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), os.path.join(TOP, "plugins", "module_utils"),
                             source, dest, marker])
    try:
        deadline = time.time() + 60
        while not os.path.exists(marker):
            assert proc.poll() is None, "backup process ended before it was killed"
            assert time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftovers = sorted(os.listdir(dest))
    assert leftovers == [".tmp-killed", "latest", "leveldb-good"]
    assert [os.path.basename(p) for p in lb.list_backups(dest)] == ["leveldb-good"]
    assert os.readlink(os.path.join(dest, "latest")) == "leveldb-good"
    assert lb.verify_backup(good["path"])["records"] == 3000
    after = lb.backup(source, dest, name="next")
    assert after["stale_removed"] == [".tmp-killed"]
    assert sorted(os.listdir(dest)) == ["latest", "leveldb-good", "leveldb-next"]


def test_wait_until_quiet_waits_for_paused_writer_and_times_out_on_busy_one(tmp_path, writer):
    source = str(tmp_path / "src")
    w = writer(source, delay="0.002")
    with pytest.raises(lb.LevelDBBackupError, match="did not stay quiet"):
        lb.wait_until_quiet(source, quiet_seconds=1.5, timeout=3, interval=0.1)
    w.signal(signal.SIGUSR1)  # pause writes; compaction finishes on its own
    lb.wait_until_quiet(source, quiet_seconds=1.0, timeout=60, interval=0.1)
    paused_at = w.written()
    report = lb.backup(source, str(tmp_path / "b"), name="paused", count_source=True)
    assert report["records"] == report["source_records"] == paused_at
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".leveldb-count")]
    w.signal(signal.SIGUSR2)
    deadline = time.time() + 30
    while w.written() == paused_at:
        assert time.time() < deadline, "writer did not resume"
        time.sleep(0.05)


def test_manifest_next_file_number_is_above_every_live_file(tmp_path):
    source = make_db(tmp_path / "src", 3000)
    next_number = lb.manifest_next_file_number(source)
    manifest = int(open(os.path.join(source, "CURRENT")).read().strip().split("-")[1])
    assert next_number is not None and manifest < next_number
    scratch = str(tmp_path / "scratch")
    lb.hardlink_tree(source, scratch)
    linked = [n for n in os.listdir(scratch) if os.stat(os.path.join(scratch, n)).st_nlink > 1]
    assert linked and all(int(lb.table_number(n)) < next_number for n in linked)
    assert lb.verify_db(scratch)["records"] == 3000
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "CURRENT").write_text("MANIFEST-000001\n")
    (tmp_path / "broken" / "MANIFEST-000001").write_bytes(b"\xff" * 40)
    assert lb.manifest_next_file_number(str(tmp_path / "broken")) is None


def test_opening_a_scratch_copy_never_writes_through_a_hard_link_into_an_orphan(tmp_path):
    """A copy taken mid-compaction holds an orphan table under a number LevelDB will reuse (with
    O_TRUNC) when the copy is opened: the scratch copy must not share that file with the backup."""
    source = make_db(tmp_path / "src", 2000)
    first = lb.manifest_next_file_number(source)
    orphans = [os.path.join(source, f"{n:06d}.ldb") for n in range(first, first + 8)]
    for orphan in orphans:
        with open(orphan, "wb") as handle:
            handle.write(b"orphan table left by an interrupted compaction" * 100)
    before = [lb.sha256_file(o) for o in orphans]
    scratch = str(tmp_path / "scratch")
    lb.hardlink_tree(source, scratch)
    db = plyvel.DB(scratch, write_buffer_size=64 * 1024)
    try:
        for i in range(3000):
            db.put(key(10**6 + i), os.urandom(200))
    finally:
        db.close()
    assert [lb.sha256_file(o) for o in orphans] == before
    assert all(os.stat(o).st_nlink == 1 for o in orphans)


def test_verify_changed_checks_new_tables_and_catches_a_corrupt_one(tmp_path):
    source = make_db(tmp_path / "src", 3000)
    dest = str(tmp_path / "b")
    lb.backup(source, dest, name="1")
    old_tables = set(tables(source))
    make_db(source, 1500, start=3000)
    ok = lb.backup(source, dest, name="2", verify="changed")
    assert ok["files_linked"] > 0 and ok["new_table_records"] > 0
    assert lb.verify_backup(ok["path"])["ok"]
    make_db(source, 1500, start=4500)
    new = [n for n in tables(source) if n not in old_tables]
    victim = max(new, key=lambda n: os.path.getsize(os.path.join(source, n)))
    flip_byte(os.path.join(source, victim), os.path.getsize(os.path.join(source, victim)) // 3)
    with pytest.raises(lb.LevelDBBackupError, match="backup rejected"):
        lb.backup(source, dest, name="3", verify="changed")
    assert [os.path.basename(p) for p in lb.list_backups(dest)] == ["leveldb-1", "leveldb-2"]
