"""Copying and durability steps shared by the copies: a file read once and hashed as it is written,
a directory's entries, a tree, a whole filesystem.

A backup made of many files is made durable in one batch, syncfs(2) of the destination's
filesystem, instead of one fsync per file: each fsync commits the filesystem's journal, and on
ext4 hundreds of small commits cost more than the data. But syncfs also writes whatever else is
dirty on that filesystem, and waits for it: on a backup host where something else writes (another
job, a database, a VM's disk image), one syncfs took 2-4 s here where an fsync of the same 1 MiB
file took 3 ms. So a batch of at most FSYNC_EACH_UP_TO files is synced file by file (its cost
bounded by its own size), a bigger one with one syncfs (sync_files, sync_tree). The order that
matters is kept by the callers: the batch is on disk before the rename that publishes it, and
before anything older is deleted.
"""
import ctypes
import os
import threading

CHUNK = 1024 * 1024
FSYNC_EACH_UP_TO = 128  # files; a batch of more is synced with one syncfs of its filesystem


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


def _fsync(path, flags):
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    """Make a directory's entries (names created, renamed or removed in it) durable."""
    _fsync(path, 0)


def fsync_file(path):
    """fsync one file (not following a symbolic link)."""
    _fsync(path, os.O_NOFOLLOW)


def _walk(path, limit=None):
    """(files, directories) under path, symbolic links left out; None once they are more than limit
    together (the walk stops there: the caller syncs the whole filesystem instead)."""
    files, dirs = [], []

    def fail(exc):
        raise exc  # a missing or unreadable directory is an error, never an empty tree

    for dirpath, _subdirs, names in os.walk(path, onerror=fail):
        dirs.append(dirpath)
        files.extend(full for full in (os.path.join(dirpath, name) for name in names)
                     if not os.path.islink(full))
        if limit is not None and len(files) + len(dirs) > limit:
            return None
    return files, dirs


def _fsync_each(files, dirs):
    for full in files:
        fsync_file(full)
    for dirpath in dirs:
        fsync_dir(dirpath)


def fsync_tree(path):
    """fsync every file and directory under path (what syncfs does, file by file)."""
    _fsync_each(*_walk(path))


def sync_files(root, files, dirs=()):
    """Make files, and the entries of dirs, durable: one fsync each when they are at most
    FSYNC_EACH_UP_TO together, else one syncfs of root's filesystem (sync_filesystem). OSError as
    the disk reports it."""
    files, dirs = list(files), list(dirs)
    if len(files) + len(dirs) > FSYNC_EACH_UP_TO:
        sync_filesystem(root)
    else:
        _fsync_each(files, dirs)


def sync_tree(path):
    """Make every file and directory under path durable: sync_files' rule on the tree."""
    tree = _walk(path, limit=FSYNC_EACH_UP_TO)
    if tree is None:
        sync_filesystem(path)
    else:
        sync_files(path, *tree)


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
    """sync_tree(path) in a thread, while the caller does other work on the same files (a
    verification reading them from the page cache, a rename of the tree). For a small tree the
    files and directories are opened here, before the caller goes on, and their descriptors
    fsynced in the thread: what is renamed or removed meanwhile is still synced. wait() returns once
    they are on disk, or raises the sync's OSError; call it before anything relies on them."""

    def __init__(self, path):
        self._error = None
        self._fds = []
        tree = _walk(path, limit=FSYNC_EACH_UP_TO)
        if tree is not None:
            files, dirs = tree
            try:
                for full in files:
                    self._fds.append(os.open(full, os.O_RDONLY | os.O_NOFOLLOW))
                for dirpath in dirs:
                    self._fds.append(os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY))
            except OSError:
                self._close()
                raise
            target, args = self._fsync_all, ()
        else:
            target, args = sync_filesystem, (path,)
        self._thread = threading.Thread(target=self._run, args=(target, args), name="sync", daemon=True)
        self._thread.start()

    def _fsync_all(self):
        for fd in self._fds:
            os.fsync(fd)

    def _close(self):
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _run(self, target, args):
        try:
            target(*args)
        except OSError as exc:
            self._error = exc
        finally:
            self._close()

    def wait(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
