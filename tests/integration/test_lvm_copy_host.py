"""Host-side parts of the LVM snapshot copy: manifest, retention, destination guard, and the
throwaway-server verification on a real MariaDB data directory copied with rsync.
Mounting and copying real snapshots runs in the molecule scenario `lvm`."""

import os
import subprocess

import pytest
from ansible.module_utils import lvm_snapshot_copy as C
from ansible.module_utils.mysql_datadir_verify import VerifyError, verify_datadir


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
    # hold FTWRL while the copy is made, as the backup does around its snapshot
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("FLUSH TABLES WITH READ LOCK")
        copy = tmp_path / "copy"
        subprocess.run(["rsync", "-a", server.datadir + "/", str(copy) + "/"], check=True)
        cur.execute("UNLOCK TABLES")
    conn.close()
    result = verify_datadir(str(copy), ["app.t"])
    assert result["row_counts"] == {"app.t": 3} and result["tables_checked"] == 2
    assert not os.path.exists(copy / "verify.sock")
    with pytest.raises(VerifyError, match="does not look like a MySQL data directory"):
        verify_datadir(str(tmp_path / "copy" / "app"))
