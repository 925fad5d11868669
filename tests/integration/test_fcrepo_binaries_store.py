"""Binary store backups on a real generated store: only new files copied, fixity checked."""
import hashlib
import os
import random
import subprocess

import pytest
from ansible.module_utils import fcrepo_binaries as fb


def make_store(root, count, seed=1, start=0):
    rng = random.Random(seed)
    made = []
    for i in range(start, start + count):
        content = rng.randbytes(4097 + rng.randrange(8192)) + str(i).encode()
        sha = hashlib.sha1(content).hexdigest()  # noqa: S324
        path = os.path.join(root, fb.shard_path(sha))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
        made.append(fb.shard_path(sha))
    return made


def test_first_run_copies_all_second_copies_nothing_then_only_new(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = make_store(src, 40)
    first = fb.backup(src, dst)
    assert first["copied"] == 40 and first["changed"] and first["mismatches"] == []
    for rel in made:
        with open(os.path.join(dst, rel), "rb") as a, open(os.path.join(src, rel), "rb") as b:
            assert a.read() == b.read()
    again = fb.backup(src, dst)
    assert again["copied"] == 0 and again["already_present"] == 40 and not again["changed"]
    make_store(src, 5, seed=2, start=40)
    third = fb.backup(src, dst)
    assert third["copied"] == 5 and third["already_present"] == 40


def test_corrupt_source_binary_is_reported_and_not_installed(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = make_store(src, 10)
    victim = os.path.join(src, made[3])
    with open(victim, "r+b") as handle:  # bit rot in the live store
        handle.seek(100)
        handle.write(b"\x00\x01")
    report = fb.backup(src, dst)
    assert report["copied"] == 9
    assert [m["file"] for m in report["mismatches"]] == [made[3]]
    assert report["mismatches"][0]["where"] == "source"
    assert not os.path.exists(os.path.join(dst, made[3]))
    assert not [f for _d, _s, files in os.walk(dst) for f in files if f.startswith(fb.TMP_PREFIX)]


def test_fixity_audit_of_existing_backup_finds_bit_rot(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = make_store(src, 10)
    fb.backup(src, dst)
    with open(os.path.join(dst, made[7]), "r+b") as handle:
        handle.write(b"rot")
    quick = fb.backup(src, dst)
    assert quick["mismatches"] == []  # only new files are hashed by default
    audit = fb.backup(src, dst, verify_existing=True)
    assert audit["verified_existing"] == 10
    assert audit["mismatches"] == [{"file": made[7], "where": "backup",
                                    "sha1": fb.sha1_file(os.path.join(dst, made[7]))[0]}]


def test_leftover_temp_of_a_killed_run_is_removed_and_never_counts(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = make_store(src, 3)
    shard = os.path.dirname(os.path.join(dst, made[0]))
    os.makedirs(shard)
    partial = os.path.join(shard, fb.TMP_PREFIX + os.path.basename(made[0]))
    with open(partial, "wb") as handle:
        handle.write(b"half")
    report = fb.backup(src, dst)
    assert report["stale_removed"] == [os.path.relpath(partial, dst)]
    assert report["copied"] == 3 and not os.path.exists(partial)


def test_no_space_left_fails_clearly_and_leaves_no_partial_binary(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    src = str(tmp_path / "src")
    make_store(src, 300)  # about 3.6 MB
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount tmpfs")
    try:
        with pytest.raises(fb.FcrepoBinariesError, match="No space left"):
            fb.backup(src, str(mnt / "b"))
        files = [f for _d, _s, fs in os.walk(mnt) for f in fs]
        assert files and not [f for f in files if f.startswith(fb.TMP_PREFIX)]
        for _d, _s, fs in os.walk(mnt):
            for f in fs:
                assert fb.sha1_file(os.path.join(_d, f))[0] == f
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
