"""The LVM copy is on disk before it is published and before retention removes an older backup.

Real rsync and GNU tar copy real trees; LVM is stood in as in test_lvm_snapshot_copy_progress. The
sync step is the real sync_filesystem (fs_sync.sync_tree on this host), wrapped to record what the
destination looked like at the moment it ran."""

import os
import subprocess

import pytest
from ansible.module_utils import fs_sync
from ansible.module_utils import lvm_snapshot_copy as C

from tests.unit.test_lvm_snapshot_copy_progress import LvmStandIn, make_tree, snapshots

OLDER = "20200101T000000Z"


@pytest.mark.parametrize("method", ["rsync", "tar"])
def test_copy_synced_before_the_rename_and_before_retention(tmp_path, method):
    sources = {
        "/dev/vgdata/mysql-backup-snap": str(make_tree(tmp_path / "mysql", mib=1, seed=1)),
        "/dev/vgdata/app-backup-snap": str(make_tree(tmp_path / "app", mib=1, seed=2)),
    }
    dest = tmp_path / "backups"
    (dest / OLDER).mkdir(parents=True)
    seen = []

    def recording_sync(path):
        C.sync_filesystem(path)
        names = sorted(os.listdir(dest))
        seen.append({
            "path": path,
            "names": names,
            "bytes": C.du_bytes(path),
            "manifest": os.path.exists(os.path.join(path, C.MANIFEST)),
            "metadata": os.path.exists(os.path.join(path, C.METADATA)),
        })

    copy = C.SnapshotCopy(LvmStandIn(sources), snapshots(), str(dest), method=method,
                          mount_root=str(tmp_path / "mnt"), poll_interval=0.2, keep=1, min_good=1,
                          popen=subprocess.Popen, sync=recording_sync)
    result = copy.run()
    assert len(seen) == 1, seen
    at_sync = seen[0]
    # the copy complete but still partial, the older backup still there: nothing relies on it yet
    assert os.path.basename(at_sync["path"]) == C.PARTIAL_PREFIX + copy.name
    assert at_sync["names"] == sorted([OLDER, C.PARTIAL_PREFIX + copy.name])
    assert at_sync["manifest"] and at_sync["metadata"]
    assert at_sync["bytes"] == C.du_bytes(result["path"])  # every byte of the copy was written
    assert result["retention_removed"] == [OLDER]
    assert os.listdir(dest) == [copy.name]


def test_a_failing_sync_publishes_nothing_and_keeps_the_older_backup(tmp_path):
    sources = {"/dev/vgdata/mysql-backup-snap": str(make_tree(tmp_path / "mysql", mib=1, seed=1)),
               "/dev/vgdata/app-backup-snap": str(make_tree(tmp_path / "app", mib=1, seed=2))}
    dest = tmp_path / "backups"
    (dest / OLDER).mkdir(parents=True)

    def failing_sync(path):
        raise C.CopyError(f"writing the copy in {path} to disk failed (Input/output error); not published")

    copy = C.SnapshotCopy(LvmStandIn(sources), snapshots(), str(dest), mount_root=str(tmp_path / "mnt"),
                          poll_interval=0.2, keep=1, popen=subprocess.Popen, sync=failing_sync)
    with pytest.raises(C.CopyError, match="Input/output error"):
        copy.run()
    assert os.listdir(dest) == [OLDER]


def test_sync_filesystem_on_a_real_tree_and_its_errors(tmp_path):
    make_tree(tmp_path / "tree", mib=1)
    C.sync_filesystem(str(tmp_path / "tree"))
    fs_sync.fsync_tree(str(tmp_path / "tree"))  # the file-by-file fallback walks the same tree
    with pytest.raises(C.CopyError, match=r"writing the copy in .*missing to disk failed \(No such file"):
        C.sync_filesystem(str(tmp_path / "missing"))
