"""The tar method's archives hold the whole data directory: private (0600) from their creation.

Real GNU tar, slowed down so that the archive exists for a few seconds while it is written; a
thread watches its mode the whole time. LVM is stood in as in test_lvm_snapshot_copy_progress.
"""

import os
import stat
import threading

import pytest
from ansible.module_utils import lvm_snapshot_copy as C

from tests.lib.progress import recording
from tests.unit.test_lvm_snapshot_copy_progress import LvmStandIn, make_tree, snapshots, throttled


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual umask: what tar's own creation of the archive would give 0644
    yield
    os.umask(old)


def test_tar_archive_is_0600_from_its_creation_to_the_published_backup(tmp_path, umask_022):
    sources = {
        "/dev/vgdata/mysql-backup-snap": str(make_tree(tmp_path / "mysql", mib=1, seed=1)),
        "/dev/vgdata/app-backup-snap": str(make_tree(tmp_path / "app", mib=1, seed=2)),
    }
    seen = {}  # archive path -> every mode observed while tar ran
    stop = threading.Event()

    def watch(path):
        while not stop.is_set():
            try:
                seen.setdefault(path, set()).add(stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass
            stop.wait(0.005)

    watchers = []

    def watched_popen(argv, **kw):
        if argv[0] == "tar":
            path = argv[argv.index("-cf") + 1]
            thread = threading.Thread(target=watch, args=(path,), daemon=True)
            thread.start()
            watchers.append(thread)
        return throttled(argv, **kw)

    copy = C.SnapshotCopy(
        LvmStandIn(sources), snapshots(), str(tmp_path / "backups"), mount_root=str(tmp_path / "mnt"),
        poll_interval=0.2, method="tar", progress_file=str(tmp_path / "copy.progress"),
        progress_factory=recording([]), progress_interval=0.2, popen=watched_popen,
    )
    try:
        result = copy.run()
    finally:
        stop.set()
        for thread in watchers:
            thread.join()
    assert len(seen) == 2 and all(modes == {0o600} for modes in seen.values()), seen
    for label in ("mysql", "app"):
        archive = os.path.join(result["path"], f"{label}.tar")
        assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
        assert os.path.getsize(archive) == C.measure_source(sources[f"/dev/vgdata/{label}-backup-snap"])[
            "tar_bytes"]


def test_fstype_probe_is_retried_after_udev_settles_then_fails_clearly():
    """A snapshot just activated once answered blkid with exit 0 and no type (under TCG): the probe
    (blkid -p, not its cache) is retried after `udevadm settle`; a device that never answers fails
    the run naming it."""
    answers = iter([(0, "", ""), (2, "", ""), (0, "xfs\n", "")])
    calls, naps = [], []

    def runner(args):
        calls.append(args[0])
        return next(answers) if args[0] == "blkid" else (0, "", "")

    assert C.detect_fstype(runner, "/dev/vg/snap", sleep=naps.append) == "xfs"
    assert calls == ["blkid", "udevadm", "blkid", "udevadm", "blkid"] and naps == [1, 1]
    with pytest.raises(C.CopyError, match=r"cannot tell the filesystem on /dev/vg/snap after 3 probes "
                                          r"\(blkid -p: exit 0, no type\)"):
        C.detect_fstype(lambda args: (0, "", ""), "/dev/vg/snap", attempts=3, sleep=lambda s: None)
