"""Which mounts lvm_snapshot_cleanup may unmount, and which mount roots are refused
(plugins/module_utils/lvm_snapshot_mounts.py; real mounts: tests/integration/test_lvm_copy_host.py)."""

import os

import pytest
import yaml
from ansible.module_utils import lvm_snapshot_copy as C
from ansible.module_utils import lvm_snapshot_mounts as M
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REFUSED = ["/", "/run", "/mnt", "/proc", "/sys", "/dev", "/srv", "/var", "/home", "/tmp", "/var/lib",
           "/dev/shm", "/proc/1", "/sys/fs/cgroup", "/run/user"]
MALFORMED = ["", "relative/dir", "/mnt/", "/run//lvm", "/srv/snap/../x", "/srv/./snap", "//srv/snap",
             "/srv/sn\nap"]
ACCEPTED = ["/run/lvm-snapshot-backup", "/srv/snapshot-mounts", "/mnt/lvm-backup", "/snapmounts"]


@pytest.mark.parametrize("path", REFUSED)
def test_system_directories_are_refused(path):
    with pytest.raises(M.MountRootError, match=f"mount_root {path} is refused: it is a system directory"):
        M.check_mount_root(path)


@pytest.mark.parametrize("path", MALFORMED)
def test_malformed_mount_roots_are_refused(path):
    with pytest.raises(M.MountRootError, match="must be an absolute, normalized path"):
        M.check_mount_root(path)


@pytest.mark.parametrize("path", ACCEPTED)
def test_a_directory_of_the_toolkits_own_is_accepted(path):
    assert M.check_mount_root(path) == path


def test_a_symlink_to_a_system_directory_is_refused(tmp_path):
    (tmp_path / "snapmounts").symlink_to("/run")
    with pytest.raises(M.MountRootError, match=r"snapmounts \(that is /run\) is refused"):
        M.check_mount_root(str(tmp_path / "snapmounts"))


def role_validation():
    """The role's validation (validate.yml's assert on lvm_snapshot_backup_mount_root), evaluated by
    Ansible's own templar: path -> accepted."""
    with open(os.path.join(TOP, "roles", "lvm_snapshot_backup", "tasks", "validate.yml")) as handle:
        tasks = yaml.safe_load(handle)
    task = next(t for t in tasks if "lvm_snapshot_backup_mount_root" in t["name"])
    that = [trust_as_template(c) for c in task["ansible.builtin.assert"]["that"]]
    templar = Templar(loader=DataLoader())

    def accepts(path):
        templar.available_variables = {"lvm_snapshot_backup_mount_root": path}
        return all(templar.evaluate_conditional(c) for c in that)

    return accepts


def test_the_roles_validation_refuses_what_the_modules_refuse():
    role_accepts = role_validation()
    for path in REFUSED + MALFORMED[:-1] + list(M.REFUSED_MOUNT_ROOTS):
        assert not role_accepts(path), path
    for path in ACCEPTED:
        assert role_accepts(path), path


MOUNTINFO = r"""22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
25 22 0:5 / /proc rw,nosuid - proc proc rw
60 22 0:40 / /run/lvm-snapshot-backup rw,relatime shared:30 - tmpfs tmpfs rw
61 60 253:7 / /run/lvm-snapshot-backup/vgdata-mysql-backup-snap ro,relatime shared:31 - ext4 /dev/dm-7 ro
62 60 0:41 / /run/lvm-snapshot-backup/vgdata-app-backup-snap rw shared:32 - tmpfs other rw
63 60 253:3 / /run/lvm-snapshot-backup/vgdata-mysql rw shared:33 - ext4 /dev/mapper/vgdata-mysql rw
64 60 253:9 / /run/lvm-snapshot-backup/with\040space-backup-snap ro shared:34 - ext4 /dev/mapper/with-x ro
65 61 253:7 / /run/lvm-snapshot-backup/vgdata-mysql-backup-snap ro shared:35 - ext4 /dev/dm-7 ro
66 22 253:8 / /run/lvm-snapshot-backup-other/vgdata-data-backup-snap ro - ext4 /dev/mapper/x ro
"""


def snapshot_lvs():
    return [{"vg_name": "vgdata", "lv_name": f"{name}-backup-snap",
             "lv_path": f"/dev/vgdata/{name}-backup-snap"} for name in ("mysql", "app", "data")]


def test_only_the_toolkits_snapshot_mounts_are_chosen_last_mounted_first():
    devices = {"/dev/vgdata/mysql-backup-snap": (253, 7), "/dev/vgdata/app-backup-snap": (253, 8),
               "/dev/vgdata/data-backup-snap": (253, 8)}
    ours, others = M.toolkit_mounts("/run/lvm-snapshot-backup", snapshot_lvs(), mountinfo=MOUNTINFO,
                                    device_number=devices.get)
    # the snapshot mounted twice on its mount point: unmounted twice; the app snapshot's mount point
    # holds a tmpfs, not the snapshot: left alone; so is the root itself and everything else
    assert ours == ["/run/lvm-snapshot-backup/vgdata-mysql-backup-snap"] * 2
    assert others == ["/run/lvm-snapshot-backup", "/run/lvm-snapshot-backup/vgdata-app-backup-snap",
                      "/run/lvm-snapshot-backup/vgdata-mysql",
                      "/run/lvm-snapshot-backup/with space-backup-snap"]


def test_toolkit_mounts_refuses_a_system_directory_before_reading_anything():
    with pytest.raises(M.MountRootError, match="mount_root / is refused"):
        M.toolkit_mounts("/", snapshot_lvs(), mountinfo="not even read")


def test_unmount_retries_then_reports_and_keeps_a_directory_that_is_not_empty(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "kept").write_text("x")
    calls = []

    def runner(args):
        calls.append(args)
        return (0, "", "") if args[1].endswith("/a") else (32, "", "target is busy")

    errors = M.unmount(runner, [str(tmp_path / "a"), str(tmp_path / "b")], retries=2, delay=0,
                       sleep=lambda _s: None, is_mounted=lambda path: True)
    assert errors == [f"umount {tmp_path / 'b'}: target is busy"]
    assert len(calls) == 1 + 3
    assert not (tmp_path / "a").exists() and (tmp_path / "b" / "kept").exists()


def test_a_mount_unmounted_meanwhile_by_the_run_that_made_it_is_not_an_error(tmp_path):
    """Seen in the VM: a killed run's own clean-up unmounted the snapshot while the next run's step 0
    cleaned up, whose umount then said "no mount point specified"."""
    (tmp_path / "a").mkdir()
    calls = []

    def runner(args):
        calls.append(args)
        return 32, "", f"umount: {args[1]}: no mount point specified."

    errors = M.unmount(runner, [str(tmp_path / "a")], retries=2, delay=0, sleep=lambda _s: None,
                       is_mounted=lambda path: False)
    assert errors == [] and len(calls) == 1
    assert not (tmp_path / "a").exists()  # its empty directory removed as after a umount


def test_the_copy_refuses_a_system_mount_root_before_anything():
    calls = []
    copy = C.SnapshotCopy(lambda args: calls.append(args) or (1, "", ""), [], "/srv/backup/lvm",
                          mount_root="/mnt")
    with pytest.raises(C.CopyError, match="mount_root /mnt is refused"):
        copy.run()
    assert calls == []
