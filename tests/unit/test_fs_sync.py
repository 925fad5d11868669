"""fs_sync: one syncfs for a batch, the file-by-file fallback, and errors that stop a publication."""
import errno
import os

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
    with pytest.raises(FileNotFoundError):
        fs_sync.sync_filesystem(str(tmp_path / "missing"))


def test_a_background_sync_returns_at_wait_or_raises_its_error(tmp_path, monkeypatch):
    fs_sync.SyncInBackground(str(_tree(tmp_path / "t"))).wait()

    def failing(path):
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(fs_sync, "sync_filesystem", failing)
    syncing = fs_sync.SyncInBackground(str(tmp_path / "t"))
    with pytest.raises(OSError) as info:
        syncing.wait()
    assert info.value.errno == errno.EIO
