"""Where the toolkit mounts its LVM snapshots, and which mounts are its own (for lvm_snapshot_cleanup).

A snapshot ``<vg>/<name>`` is mounted read-only on ``<mount_root>/<vg>-<name>`` (lvm_snapshot_copy).
Cleanup unmounts exactly those: a mount whose mount point is such a directory of a snapshot LV the
toolkit made (its name ends with the snapshot suffix) AND whose device is that snapshot LV. Never
``mount_root`` itself, never a mount of anything else below it (a tmpfs, a bind mount, another
volume mounted under a snapshot's name). ``mount_root`` must be a directory of the toolkit's own:
``/``, ``/run``, ``/mnt`` and the like are refused before anything is looked at.

Pure Python; commands go through an injected ``runner(args) -> (rc, out, err)``.
"""

import os
import re
import time

# System directories (and what is below /proc, /sys, /dev) never taken as the snapshots' mount root.
# roles/lvm_snapshot_backup/tasks/validate.yml refuses the same list (a unit test keeps them equal).
REFUSED_MOUNT_ROOTS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/run/lock", "/run/media", "/run/mount", "/run/shm", "/run/user", "/sbin",
    "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/backups", "/var/cache", "/var/lib",
    "/var/lock", "/var/log", "/var/run", "/var/spool", "/var/tmp",
)
REFUSED_TREES = ("/proc/", "/sys/", "/dev/")


class MountRootError(ValueError):
    """mount_root is not a directory the toolkit may own."""


def check_mount_root(path):
    """Refuse a mount_root that is not an absolute normalized path, or that is a system directory
    (directly or through a symlink). Returns the path."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") \
            or os.path.normpath(path) != path or "\0" in path or "\n" in path:
        raise MountRootError(
            f"mount_root {path!r} must be an absolute, normalized path (no trailing slash, no '.', "
            "'..' or '//'), a directory of the toolkit's own such as /run/lvm-snapshot-backup"
        )
    for candidate in dict.fromkeys((path, os.path.realpath(path))):
        if candidate in REFUSED_MOUNT_ROOTS or candidate.startswith(REFUSED_TREES):
            shown = path if candidate == path else f"{path} (that is {candidate})"
            raise MountRootError(
                f"mount_root {shown} is refused: it is a system directory holding other mounts; "
                "the snapshots are mounted, and unmounted by the cleanup, in a directory of the "
                "toolkit's own such as /run/lvm-snapshot-backup"
            )
    return path


def snapshot_mountpoint(mount_root, vg, name):
    """Where snapshot vg/name is mounted."""
    return os.path.join(mount_root, f"{vg}-{name}")


def _unescape(field):
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """[{'mountpoint', 'device': (major, minor), 'source', 'fstype'}] from /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        major, minor = fields[2].split(":")
        mounts.append({
            "mountpoint": _unescape(fields[4]),
            "device": (int(major), int(minor)),
            "fstype": fields[sep + 1],
            "source": _unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
        })
    return mounts


def _device_number(path):
    try:
        rdev = os.stat(path).st_rdev
    except OSError:
        return None
    return (os.major(rdev), os.minor(rdev)) if rdev else None


def toolkit_mounts(mount_root, snapshots, mountinfo=None, device_number=_device_number):
    """The toolkit's own snapshot mounts under mount_root: (ours, others).

    snapshots: the toolkit's snapshot LVs (dicts with vg_name, lv_name and lv_path, as read_lvs gives
    them). mountinfo: the text of /proc/self/mountinfo (read when None). ours: mount points to
    unmount, last mounted first (a mount stacked twice is listed twice).
    others: mount points below mount_root (or mount_root itself) left alone, for the report."""
    root = os.path.realpath(check_mount_root(mount_root))
    expected = {}
    for lv in snapshots:
        path = lv.get("lv_path") or f"/dev/{lv['vg_name']}/{lv['lv_name']}"
        expected[snapshot_mountpoint(root, lv["vg_name"], lv["lv_name"])] = device_number(path)
    if mountinfo is None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            mountinfo = handle.read()
    ours, others = [], []
    for mount in parse_mountinfo(mountinfo):
        point = mount["mountpoint"]
        if point != root and not point.startswith(root.rstrip("/") + "/"):
            continue
        device = expected.get(point)
        if device is not None and mount["device"] == device:
            ours.append(point)
        else:
            others.append(point)
    return list(reversed(ours)), others


def unmount(runner, mountpoints, retries=3, delay=2.0, sleep=time.sleep, is_mounted=os.path.ismount):
    """umount each (with retries), then remove its now empty directory. Returns the errors.

    A mount point that is no longer mounted when its umount fails counts as unmounted: the run that
    made it (killed, its own clean-up still running) may have unmounted it meanwhile."""
    errors = []
    for mountpoint in mountpoints:
        for attempt in range(retries + 1):
            rc, out, err = runner(["umount", mountpoint])
            if rc == 0 or not is_mounted(mountpoint):
                break
            if attempt < retries:
                sleep(delay)
        else:
            errors.append(f"umount {mountpoint}: {(err or out).strip()}")
            continue
        try:
            os.rmdir(mountpoint)  # only when empty: nothing else mounted or stored there
        except OSError:
            pass
    return errors
