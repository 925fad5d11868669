"""Host-side parts of the LVM snapshot copy: manifest, retention, destination guard, the
throwaway-server verification on a real MariaDB data directory copied with rsync, and the cleanup's
choice of mounts on real mounts (loop devices standing in for the snapshot LVs).
Mounting and copying real snapshots runs in the molecule scenario `lvm`."""

import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils import lvm_snapshot_copy as C
from ansible.module_utils.mysql_datadir_verify import VerifyError, verify_datadir

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_tree(root):
    (root / "mysql" / "db").mkdir(parents=True)
    (root / "mysql" / "db" / "t.ibd").write_bytes(os.urandom(4096))
    (root / "app.tar").write_bytes(b"x" * 1000)


def test_manifest_is_sha256sum_compatible_and_detects_a_flipped_byte(tmp_path):
    make_tree(tmp_path)
    files, size = C.write_manifest(str(tmp_path))
    assert files == 2 and size == 5096
    assert oct(os.stat(tmp_path / C.MANIFEST).st_mode & 0o777) == "0o600"
    check = subprocess.run(["sha256sum", "-c", "--quiet", C.MANIFEST], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert C.check_manifest(str(tmp_path)) == []
    data = bytearray((tmp_path / "mysql/db/t.ibd").read_bytes())
    data[100] ^= 1
    (tmp_path / "mysql/db/t.ibd").write_bytes(bytes(data))
    (tmp_path / "app.tar").unlink()
    assert sorted(C.check_manifest(str(tmp_path))) == [
        ("app.tar", "missing"),
        ("mysql/db/t.ibd", "checksum differs"),
    ]


def test_retention_keeps_newest_and_ignores_partials_and_others(tmp_path):
    names = ["20261120T010000Z", "20261121T010000Z", "20261122T010000Z", "20261119T010000Z"]
    for name in names + [".partial-20261122T020000Z", "notes"]:
        (tmp_path / name).mkdir()
    assert C.apply_retention(str(tmp_path), 2, check_mode=True) == ["20261119T010000Z", "20261120T010000Z"]
    assert len(os.listdir(tmp_path)) == 6
    assert C.apply_retention(str(tmp_path), 2) == ["20261119T010000Z", "20261120T010000Z"]
    assert sorted(os.listdir(tmp_path)) == [
        ".partial-20261122T020000Z",
        "20261121T010000Z",
        "20261122T010000Z",
        "notes",
    ]
    assert C.apply_retention(str(tmp_path), 0) == []
    assert C.stale_partials(str(tmp_path)) == [".partial-20261122T020000Z"]


def block_device_of(path):
    """The /dev node holding path's filesystem, if there is one (e.g. /dev/vda on this machine)."""
    dev = os.stat(path).st_dev
    for name in sorted(os.listdir("/dev")):
        node = os.path.join("/dev", name)
        try:
            st = os.stat(node)
        except OSError:
            continue
        if st.st_rdev == dev and not os.path.isdir(node):
            return node
    return None


def test_destination_on_the_volume_being_backed_up_is_refused(tmp_path):
    device = block_device_of(tmp_path)
    if device is None:
        pytest.skip("the test directory's filesystem has no device node here")
    with pytest.raises(C.CopyError, match=f"is on {device}, one of the volumes being backed up"):
        C.check_destination(str(tmp_path / "not" / "yet" / "there"), [device])
    C.check_destination(str(tmp_path), ["/dev/null-does-not-exist"])
    with pytest.raises(C.CopyError, match="absolute path"):
        C.check_destination("relative/dir", [])


def test_mount_options():
    assert C.mount_options("ext4") == "ro,noload"
    assert C.mount_options("xfs") == "ro,nouuid,norecovery"
    assert C.mount_options("btrfs") == "ro"


def test_verify_starts_a_throwaway_server_on_a_copied_datadir(mariadb_factory, tmp_path):
    server = mariadb_factory("src")
    server.sql("CREATE DATABASE app")
    server.sql("CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
    server.sql("INSERT INTO app.t VALUES (1,'a'),(2,'b'),(3,'c')")
    server.sql("CREATE TABLE app.m (id INT PRIMARY KEY) ENGINE=Aria")
    server.sql("CREATE TABLE app.big (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB")
    server.sql("INSERT INTO app.big SELECT seq, REPEAT('x', 200) FROM seq_1_to_3000", db="app")
    # hold FTWRL while the copy is made, as the backup does around its snapshot
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("FLUSH TABLES WITH READ LOCK")
        copy = tmp_path / "copy"
        subprocess.run(["rsync", "-a", server.datadir + "/", str(copy) + "/"], check=True)
        cur.execute("UNLOCK TABLES")
    conn.close()
    result = verify_datadir(str(copy), ["app.t"])
    assert result["row_counts"] == {"app.t": 3} and result["tables_checked"] == 3
    assert not os.path.exists(copy / "verify.sock")
    # the shrink guard's figures: the biggest table's rows, and those of the tables the last good
    # backup counted (one gone since is listed, not counted); a table to count must exist
    result = verify_datadir(str(copy), biggest=1, recount=["app.m", "app.dropped"])
    assert result["biggest_tables"] == ["app.big"]
    assert result["row_counts"] == {"app.big": 3000, "app.m": 0} and result["tables_gone"] == ["app.dropped"]
    with pytest.raises(VerifyError, match="tables to count are not in the copy: app.typo"):
        verify_datadir(str(copy), ["app.typo"])
    with pytest.raises(VerifyError, match="does not look like a MySQL data directory"):
        verify_datadir(str(tmp_path / "copy" / "app"))


# the module as Ansible runs it (its main(), arguments as JSON), in a process of its own; the project's
# module_utils found as ansible.cfg makes Ansible find them
RUN_MODULE = """
import sys
import ansible.module_utils
ansible.module_utils.__path__.append(sys.argv[1])
import runpy
sys.argv = [sys.argv[2], sys.argv[3]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_module(name, args, env):
    proc = subprocess.run(
        [sys.executable, "-c", RUN_MODULE, os.path.join(TOP, "plugins", "module_utils"),
         os.path.join(TOP, "library", f"{name}.py"), json.dumps({"ANSIBLE_MODULE_ARGS": args})],
        env=env, text=True, capture_output=True, check=False, timeout=120)
    return json.loads(proc.stdout)


FAKE_LVS = """#!/bin/sh
case "$0" in
  *lvremove) echo "$@" >> {work}/lvremove.calls; exit 0 ;;
esac
cat <<'JSON'
{report}
JSON
"""


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)  # noqa: S603


@pytest.fixture
def loop_volumes(tmp_path):
    """Two small ext4 filesystems on loop devices: the stand-ins for two snapshot LVs."""
    devices = []
    try:
        for name in ("mysql", "app"):
            image = tmp_path / f"{name}.img"
            with open(image, "wb") as handle:
                handle.truncate(8 * 1024 * 1024)
            run(["mkfs.ext4", "-q", "-F", str(image)])
            devices.append(run(["losetup", "--find", "--show", str(image)]).stdout.strip())
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        for device in devices:
            subprocess.run(["losetup", "-d", device], check=False)
        pytest.skip(f"no loop devices here: {exc}")
    yield devices
    for device in devices:
        subprocess.run(["losetup", "-d", device], check=False)


def mount_points():
    with open("/proc/self/mountinfo") as handle:
        return [line.split()[4] for line in handle]


def test_cleanup_unmounts_only_the_toolkits_own_snapshot_mounts(tmp_path, loop_volumes):
    """mount_root is itself a mount (tmpfs); under it: the mysql snapshot mounted where the toolkit
    mounts it (unmounted), a tmpfs where the app snapshot would be mounted but not that device, and an
    unrelated tmpfs (both left alone, like mount_root). A mount root that is not normalized is refused
    before anything is looked at (system directories such as /, and the role's validation:
    tests/unit/test_lvm_snapshot_mounts.py, which never runs the module on them)."""
    mysql_dev, app_dev = loop_volumes
    root = tmp_path / "mnt"
    root.mkdir()
    lvs = [{"lv_name": f"{name}-backup-snap", "vg_name": "vgdata", "lv_attr": "swi-a-s---",
            "lv_size": "104857600", "origin": name, "data_percent": "1.00", "pool_lv": "",
            "lv_path": device, "segtype": "linear", "lv_snapshot_invalid": ""}
           for name, device in (("mysql", mysql_dev), ("app", app_dev))]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = FAKE_LVS.format(work=tmp_path, report=json.dumps({"report": [{"lv": lvs}]}))
    for name in ("lvs", "lvremove"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    mounted = []
    try:
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "rootfs-standin", str(root)])
        mounted.append(str(root))
        for name in ("vgdata-mysql-backup-snap", "vgdata-app-backup-snap", "other"):
            (root / name).mkdir()
        run(["mount", "-o", "ro", mysql_dev, str(root / "vgdata-mysql-backup-snap")])
        for source, point in (("not-the-snapshot", "vgdata-app-backup-snap"), ("unrelated", "other")):
            run(["mount", "-t", "tmpfs", "-o", "size=1m", source, str(root / point)])
        mounted += [str(root / n) for n in ("vgdata-mysql-backup-snap", "vgdata-app-backup-snap", "other")]
        env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ["PATH"]]))
        # never "/" or another system directory here: a module that regressed would unmount the host's
        # own mounts (the module before this check unmounted /proc and removed its directory); a root
        # that is not normalized holds only this test's mounts
        refused = run_module("lvm_snapshot_cleanup", {"mount_root": f"{root}/", "vgs": ["vgdata"]}, env)
        assert refused["failed"] and "must be an absolute, normalized path" in refused["msg"], refused
        assert refused["msg"].endswith("nothing was unmounted or removed")
        assert all(point in mount_points() for point in mounted)
        args = {"mount_root": str(root), "vgs": ["vgdata"], "retries": 0}
        cleaned = run_module("lvm_snapshot_cleanup", args, env)
        assert not cleaned.get("failed") and cleaned["changed"], cleaned
        assert cleaned["unmounted"] == [str(root / "vgdata-mysql-backup-snap")]
        assert sorted(cleaned["left_mounted"]) == sorted(
            [str(root), str(root / "vgdata-app-backup-snap"), str(root / "other")])
        assert cleaned["removed_snapshots"] == ["vgdata/mysql-backup-snap", "vgdata/app-backup-snap"]
        assert (tmp_path / "lvremove.calls").read_text().split() == [
            "-y", "vgdata/mysql-backup-snap", "-y", "vgdata/app-backup-snap"]
        points = mount_points()
        assert str(root / "vgdata-mysql-backup-snap") not in points
        assert not (root / "vgdata-mysql-backup-snap").exists()  # its empty directory removed
        assert {str(root), str(root / "vgdata-app-backup-snap"), str(root / "other")} <= set(points)
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", point], check=False, capture_output=True)
