"""File-system backups with real GNU tar and rdiff-backup."""

import os
import subprocess
import time

import pytest
from ansible.module_utils import btw_fs, btw_retention


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"alpha")
    write(str(src / "sub" / "b.txt"), b"bravo")
    write(str(src / "cache" / "big.bin"), b"x" * 1000)
    write(str(src / "cache" / btw_fs.DEFAULT_EXCLUDE_TAG), b"")
    os.symlink("a.txt", str(src / "link"))
    root = tmp_path / "root"
    root.mkdir()
    return str(src), str(root)


def same_size_same_mtime_change(path, data):
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def listing(dest):
    return sorted(n for n in os.listdir(dest) if n != "log.txt")


def test_tar_unchanged_tree_logs_a_note_and_stores_nothing(tree):
    src, root = tree
    first = btw_fs.fs_backup("home", src, root, "fs/home", "tar")
    assert first["changed"] and first["stored"]
    dest = os.path.join(root, "fs", "home")
    before = listing(dest)
    mtime = os.stat(first["location"]).st_mtime_ns
    second = btw_fs.fs_backup("home", src, root, "fs/home", "tar")
    assert second["changed"] is False and second["stored"] is False
    assert listing(dest) == before  # no new file
    assert os.stat(first["location"]).st_mtime_ns == mtime
    with open(os.path.join(dest, "log.txt")) as f:
        log = f.read()
    assert "home: source" in log and "unchanged" in log and "nothing stored" in log
    assert second["scan"]["hashed"] <= 2  # cheap pass: only possibly racy files re-hashed


def test_tar_archive_content_and_exclude_tag(tree, tmp_path):
    src, root = tree
    result = btw_fs.fs_backup("home", src, root, "fs/home", "tar", compression="zstd")
    assert result["location"].endswith(".tar.zst")
    assert oct(os.stat(result["location"]).st_mode & 0o777) == "0o600"
    target = str(tmp_path / "restored")
    btw_fs.fs_restore(root, "fs/home", target)
    assert open(os.path.join(target, "sub", "b.txt"), "rb").read() == b"bravo"
    assert os.readlink(os.path.join(target, "link")) == "a.txt"
    assert not os.path.exists(os.path.join(target, "cache"))  # tagged directory left out
    with pytest.raises(btw_fs.BtwError, match="already exists"):
        btw_fs.fs_restore(root, "fs/home", target)


def test_rdiff_change_is_an_increment_restorable_at_a_time(tree, tmp_path):
    src, root = tree
    first = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff")
    assert first["full"] and os.path.basename(first["location"]).startswith("chain-")
    first_session = btw_fs.rdiff_sessions(first["location"])[-1]
    write(os.path.join(src, "sub", "b.txt"), b"bravo two")
    second = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff")
    assert second["stored"] and not second["full"] and second["location"] == first["location"]
    assert second["changes"]["examples"] == ["sub/b.txt"]
    old = str(tmp_path / "old")
    btw_fs.fs_restore(root, "fs/home", old, at=str(int(first_session)))
    assert open(os.path.join(old, "sub", "b.txt"), "rb").read() == b"bravo"
    assert not os.path.exists(os.path.join(old, "cache"))  # tagged directory left out
    new = str(tmp_path / "new")
    btw_fs.fs_restore(root, "fs/home", new)
    assert open(os.path.join(new, "sub", "b.txt"), "rb").read() == b"bravo two"
    third = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff")  # unchanged: no new session
    assert not third["changed"] and len(btw_fs.rdiff_sessions(second["location"])) == 2


def test_rdiff_same_size_same_mtime_change_is_detected_and_really_stored(tree, tmp_path):
    """rdiff-backup alone skips such a change (it compares size and mtime): we start a new chain."""
    src, root = tree
    first = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff")
    # Restores are chosen by time at one-second resolution: keep the two backups in different
    # seconds, or "as of the first backup" would rightly mean the newer of the two.
    time.sleep(1.1)
    same_size_same_mtime_change(os.path.join(src, "a.txt"), b"ALPHA")
    second = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff")
    assert second["changed"] and second["stored"]
    assert second["changes"]["modified"] == 1 and second["changes"]["stealth_examples"] == ["a.txt"]
    assert second["full"] and "rdiff-backup would not see" in second["chain_reason"]
    new = str(tmp_path / "new")
    btw_fs.fs_restore(root, "fs/home", new)
    assert open(os.path.join(new, "a.txt"), "rb").read() == b"ALPHA"
    old = str(tmp_path / "old")
    btw_fs.fs_restore(root, "fs/home", old, at=str(int(btw_fs.rdiff_sessions(first["location"])[-1])))
    assert open(os.path.join(old, "a.txt"), "rb").read() == b"alpha"


def test_rdiff_incremental_count_and_span_start_new_chains(tree):
    src, root = tree
    dest = os.path.join(root, "fs", "home")
    for i in range(3):
        write(os.path.join(src, f"n{i}"), b"%d" % i)
        r = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff", max_incremental_count=1)
    assert [len(btw_fs.rdiff_sessions(p)) for _n, p in btw_fs.list_chains(dest)] == [2, 1]
    assert "max_incremental_count 1" in r["chain_reason"] and r["full"]
    write(os.path.join(src, "later"), b"x")
    r = btw_fs.fs_backup(
        "home", src, root, "fs/home", "rdiff", max_incremental_span="7d", now=time.time() + 8 * 86400
    )
    assert r["full"] and "max_incremental_span" in r["chain_reason"]
    assert len(btw_fs.list_chains(dest)) == 3


def test_failed_tar_leaves_no_partial_and_previous_backup_untouched(tree):
    src, root = tree
    first = btw_fs.fs_backup("home", src, root, "fs/home", "tar")
    dest = os.path.dirname(first["location"])
    manifest = open(os.path.join(dest, btw_fs.MANIFEST), "rb").read()
    write(os.path.join(src, "new"), b"n")

    class FailingTar(btw_fs.Runner):
        def run(self, argv, **kw):
            rc, out, err = super().run(argv, **kw)  # tar really writes part of the archive...
            return 2, out, "tar: simulated write error"  # ...then fails

    with pytest.raises(btw_fs.BtwError, match="tar failed.*simulated"):
        btw_fs.fs_backup("home", src, root, "fs/home", "tar", runner=FailingTar())
    assert listing(dest) == sorted([os.path.basename(first["location"]), btw_fs.MANIFEST])
    assert open(os.path.join(dest, btw_fs.MANIFEST), "rb").read() == manifest
    # A SIGKILLed run leaves a hidden partial file: it is never listed and is cleaned next time.
    write(os.path.join(dest, btw_fs.PARTIAL_PREFIX + "home-20260101T000000Z.tar"), b"half")
    assert [b["name"] for b in btw_retention.list_backups(dest)] == [os.path.basename(first["location"])]
    second = btw_fs.fs_backup("home", src, root, "fs/home", "tar")
    assert second["stored"]
    assert not any(n.startswith(".partial") for n in os.listdir(dest))


def test_deleted_previous_backup_forces_a_new_one(tree):
    src, root = tree
    first = btw_fs.fs_backup("home", src, root, "fs/home", "tar")
    os.unlink(first["location"])
    again = btw_fs.fs_backup("home", src, root, "fs/home", "tar")
    assert again["stored"] and "missing" in again["reason"]


def test_ownership_is_applied(tree):
    src, root = tree
    r = btw_fs.fs_backup("home", src, root, "fs/home", "rdiff", owner="nobody:nogroup")
    import grp
    import pwd

    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    for top, _dirs, files in os.walk(r["location"]):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            assert (st.st_uid, st.st_gid) == (uid, gid)
    st = os.stat(os.path.join(root, "fs", "home", btw_fs.MANIFEST))
    assert (st.st_uid, st.st_gid) == (uid, gid)


def test_check_mode_changes_nothing(tree):
    src, root = tree
    r = btw_fs.fs_backup("home", src, root, "fs/home", "tar", check_mode=True)
    assert r["changed"] and not r["stored"]
    assert not os.path.exists(os.path.join(root, "fs"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "/nonexistent/src"}, "does not exist"),
        ({"destination": "../outside"}, "escapes root"),
        ({"destination": "/abs"}, "must be a path relative"),
        ({"backup_type": "zip"}, "unknown backup type 'zip'"),
        ({"max_incremental_span": "soon"}, "cannot parse time span 'soon'"),
        ({"max_incremental_count": "many"}, "is not a number"),
        ({"owner": "no-such-user-xyz"}, "unknown user or group"),
        ({"name": "bad name"}, "backup set name"),
    ],
)
def test_bad_input_fails_before_anything_changes(tree, kwargs, message):
    src, root = tree
    args = dict(name="home", source=src, root=root, destination="fs/home", backup_type="tar")
    args.update(kwargs)
    with pytest.raises(btw_fs.BtwError, match=message):
        btw_fs.fs_backup(**args)
    assert os.listdir(root) == []


def test_destination_inside_source_is_refused(tmp_path):
    src = tmp_path / "data"
    write(str(src / "f"), b"1")
    with pytest.raises(btw_fs.BtwError, match="inside the source"):
        btw_fs.fs_backup("data", str(src), str(tmp_path), "data/backups", "tar")
    assert not (src / "backups").exists()


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs: a backup root that runs out of space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def rdiff_repo_state(repo):
    """(complete sessions, current_mirror markers (2 = a failed session), rdiff-backup temp files)."""
    names = os.listdir(os.path.join(repo, "rdiff-backup-data"))
    markers = [n for n in names if n.startswith("current_mirror.")]
    temps = [n for _top, _dirs, names in os.walk(repo) for n in names if "rdiff-backup.tmp" in n]
    return len(btw_fs.rdiff_sessions(repo)), len(markers), temps


def test_rdiff_out_of_space_in_an_increment_is_said_and_regressed(tmp_path, small_fs):
    src = str(tmp_path / "src")
    write(os.path.join(src, "a.bin"), os.urandom(400_000))
    btw_fs.fs_backup("big", src, small_fs, "fs/big", "rdiff")
    # rewritten in a later second: same size and mtime to the second would be a stealth change, which
    # (rightly) starts a new chain
    time.sleep(1.05 - time.time() % 1)
    write(os.path.join(src, "a.bin"), os.urandom(400_000))
    second = btw_fs.fs_backup("big", src, small_fs, "fs/big", "rdiff")
    repo = second["location"]
    assert not second["full"] and rdiff_repo_state(repo)[:2] == (2, 1)
    write(os.path.join(src, "b.bin"), os.urandom(2_500_000))  # does not fit
    with pytest.raises(btw_fs.BtwError) as failed:
        btw_fs.fs_backup("big", src, small_fs, "fs/big", "rdiff")
    message = str(failed.value)
    assert message.startswith(f"out of space on the file system of {small_fs}/fs/big ("), message
    assert "while rdiff-backup stored an increment of chain-" in message
    assert "the chain was regressed to its last complete backup" in message and "Traceback" not in message
    assert rdiff_repo_state(repo) == (2, 1, [])  # back to the last good session, no leftovers
    verify = subprocess.run(["rdiff-backup", "verify", repo], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # space made: the next run stores into the same chain, without warnings
    os.unlink(os.path.join(src, "b.bin"))
    write(os.path.join(src, "c.bin"), os.urandom(1000))
    third = btw_fs.fs_backup("big", src, small_fs, "fs/big", "rdiff")
    assert third["stored"] and third["location"] == repo and third["warnings"] == []
    assert rdiff_repo_state(repo)[:2] == (3, 1)


def test_rdiff_exit_2_after_its_own_regress_is_judged_by_the_stored_session(tmp_path, small_fs):
    """A failed session nobody regressed: rdiff-backup repairs it itself, stores, and exits 2."""
    src = str(tmp_path / "src")
    repo = os.path.join(small_fs, "repo")
    write(os.path.join(src, "a.bin"), os.urandom(400_000))
    for _ in range(2):
        btw_fs.rdiff_backup(btw_fs.Runner(), src, repo)
        time.sleep(1.05 - time.time() % 1)
        write(os.path.join(src, "a.bin"), os.urandom(400_000))
    write(os.path.join(src, "b.bin"), os.urandom(2_500_000))
    failed = subprocess.run(["rdiff-backup", "backup", src, repo], capture_output=True, text=True)
    assert failed.returncode != 0 and "No space left on device" in failed.stderr
    assert rdiff_repo_state(repo)[:2] == (2, 2)  # the failed session is still in the chain
    subprocess.run(["mount", "-o", "remount,size=20m", small_fs], check=True)
    warnings = btw_fs.rdiff_backup(btw_fs.Runner(), src, repo)
    assert len(warnings) == 1 and "rc=2" in warnings[0] and "regressing" in warnings[0], warnings
    assert rdiff_repo_state(repo) == (3, 1, [])
