"""Copying and durability steps shared by the copies: a file read once and hashed as it is written,
a directory's entries, a tree, a whole filesystem.

A backup made of many files is made durable in one batch, syncfs(2) of the destination's
filesystem, instead of one fsync per file: each fsync commits the filesystem's journal, and on
ext4 hundreds of small commits cost more than the data. The order that matters is kept by the
callers: the batch is on disk before the rename that publishes it, and before anything older is
deleted. syncfs also writes whatever else is dirty on that filesystem; that is the price of one
commit instead of hundreds.
"""
import ctypes
import os
import threading

CHUNK = 1024 * 1024


def copy_hashed(src, dst, digest, fsync=False, ownership=None):
    """Copy src to the new file dst (O_EXCL: never overwrites), reading it once: each chunk goes to
    digest (a hashlib object) and is written. ownership ({uid, gid, file_mode}) is given to the new
    file before any byte is in it. Returns (digest's hex, size)."""
    size = 0
    rfd = os.open(src, os.O_RDONLY)
    try:
        wfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if ownership:
                os.fchown(wfd, ownership["uid"], ownership["gid"])
                os.fchmod(wfd, ownership["file_mode"])
            while True:
                chunk = os.read(rfd, CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(wfd, view):]
                size += len(chunk)
            if fsync:
                os.fsync(wfd)
        finally:
            os.close(wfd)
    finally:
        os.close(rfd)
    return digest.hexdigest(), size


def fsync_dir(path):
    """Make a directory's entries (names created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsync every file and directory under path (what syncfs does, file by file)."""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                continue
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def _libc_syncfs():
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None


def sync_filesystem(path):
    """Write the filesystem holding path to disk, data and metadata: one syncfs(2); where libc has
    no syncfs, an fsync of every file and directory under path. OSError when the disk reports an
    error: what was written must then not be published."""
    syncfs = _libc_syncfs()
    if syncfs is None:
        fsync_tree(path)
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)


class SyncInBackground:
    """sync_filesystem(path) in a thread, while the caller does other work on the same files (a
    verification reading them from the page cache). wait() returns once they are on disk, or raises
    the sync's OSError; call it before anything relies on them."""

    def __init__(self, path):
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(path,), name="syncfs", daemon=True)
        self._thread.start()

    def _run(self, path):
        try:
            sync_filesystem(path)
        except OSError as exc:
            self._error = exc

    def wait(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
