"""fs_sync: one syncfs for a batch, the file-by-file fallback, and errors that stop a publication."""
import errno
import os
import threading

import pytest
from ansible.module_utils import fs_sync


def _tree(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one").write_bytes(b"1" * 10)
    (root / "a" / "b" / "two").write_bytes(b"2" * 10)
    os.symlink("one", root / "a" / "link")
    return root


def test_syncfs_is_one_call_for_the_whole_tree(tmp_path, monkeypatch):
    calls = []
    real = fs_sync._libc_syncfs()
    assert real is not None  # glibc on the build machine has syncfs

    def counting(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(fs_sync, "_libc_syncfs", lambda: counting)
    fsyncs = []
    monkeypatch.setattr(fs_sync.os, "fsync", lambda fd: fsyncs.append(fd))
    fs_sync.sync_filesystem(str(_tree(tmp_path / "t")))
    assert calls == [str(tmp_path / "t")]
    assert fsyncs == []  # no file-by-file pass when syncfs is there


def test_without_syncfs_every_file_and_directory_is_fsynced_links_skipped(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")
    synced = []
    real_fsync = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(fs_sync, "_libc_syncfs", lambda: None)
    monkeypatch.setattr(fs_sync.os, "fsync", recording)
    fs_sync.sync_filesystem(str(root))
    assert sorted(synced) == sorted(str(p) for p in (root, root / "a", root / "a" / "b",
                                                     root / "a" / "one", root / "a" / "b" / "two"))


def test_a_failing_syncfs_raises_with_the_disk_error(tmp_path, monkeypatch):
    def failing(_fd):
        fs_sync.ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(fs_sync, "_libc_syncfs", lambda: failing)
    with pytest.raises(OSError) as info:
        fs_sync.sync_filesystem(str(_tree(tmp_path / "t")))
    assert info.value.errno == errno.EIO


def test_a_missing_path_raises(tmp_path):
    for sync in (fs_sync.sync_filesystem, fs_sync.sync_tree, fs_sync.fsync_tree, fs_sync.SyncInBackground):
        with pytest.raises(FileNotFoundError):
            sync(str(tmp_path / "missing"))


def test_a_background_sync_of_a_small_tree_covers_it_once_renamed_and_raises_at_wait(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")
    names = {str(p) for p in (root, root / "a", root / "a" / "b", root / "a" / "one",
                              root / "a" / "b" / "two")}
    gate, synced = threading.Event(), []
    real_fsync = os.fsync

    def recording(fd):
        gate.wait(10)  # the caller renames the tree first
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(fs_sync.os, "fsync", recording)
    syncing = fs_sync.SyncInBackground(str(root))
    os.rename(root, tmp_path / "moved")
    gate.set()
    syncing.wait()
    assert sorted(synced) == sorted(n.replace(str(root), str(tmp_path / "moved"), 1) for n in names)

    def failing(_fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fs_sync.os, "fsync", failing)
    open_before = len(os.listdir("/proc/self/fd"))
    syncing = fs_sync.SyncInBackground(str(tmp_path / "moved"))
    with pytest.raises(OSError) as info:
        syncing.wait()
    assert info.value.errno == errno.EIO
    assert len(os.listdir("/proc/self/fd")) == open_before  # every descriptor closed


def test_a_background_sync_of_a_big_tree_is_one_syncfs_and_raises_its_error_at_wait(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")
    monkeypatch.setattr(fs_sync, "FSYNC_EACH_UP_TO", 2)
    calls = []
    monkeypatch.setattr(fs_sync, "sync_filesystem", calls.append)
    fs_sync.SyncInBackground(str(root)).wait()
    assert calls == [str(root)]

    def failing(path):
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(fs_sync, "sync_filesystem", failing)
    syncing = fs_sync.SyncInBackground(str(root))
    with pytest.raises(OSError) as info:
        syncing.wait()
    assert info.value.errno == errno.EIO


def _recording(monkeypatch):
    events = []
    real_fsync = os.fsync

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(fs_sync.os, "fsync", fsync)
    monkeypatch.setattr(fs_sync, "sync_filesystem", lambda path: events.append(("syncfs", path)))
    return events


def test_a_small_tree_is_fsynced_file_by_file_never_with_a_syncfs(tmp_path, monkeypatch):
    """syncfs would also wait for whatever else is dirty on the filesystem: a few files are fsynced."""
    root = _tree(tmp_path / "t")
    events = _recording(monkeypatch)
    fs_sync.sync_tree(str(root))
    assert sorted(events) == sorted(("fsync", str(p)) for p in (root, root / "a", root / "a" / "b",
                                                                root / "a" / "one", root / "a" / "b" / "two"))


def test_past_the_limit_one_syncfs_and_no_fsync(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")
    events = _recording(monkeypatch)
    monkeypatch.setattr(fs_sync, "FSYNC_EACH_UP_TO", 4)  # 2 files + 3 directories
    fs_sync.sync_tree(str(root))
    assert events == [("syncfs", str(root))]
    events.clear()
    fs_sync.sync_files(str(root), [str(root / "a" / "one")], [str(root), str(root / "a")])
    assert events == [("fsync", str(root / "a" / "one")), ("fsync", str(root)), ("fsync", str(root / "a"))]
    fs_sync.sync_files(str(root), [str(root / "a" / "one")] * 3, [str(root), str(root / "a")])
    assert events[-1] == ("syncfs", str(root)) and len(events) == 4


def test_a_failing_fsync_of_a_small_batch_raises(tmp_path, monkeypatch):
    root = _tree(tmp_path / "t")

    def failing(_fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fs_sync.os, "fsync", failing)
    with pytest.raises(OSError) as info:
        fs_sync.sync_tree(str(root))
    assert info.value.errno == errno.EIO
