"""Unit tests of the fcrepo binary store core (pure file handling)."""
import hashlib
import os

import pytest
from ansible.module_utils import fcrepo_binaries as fb


def put(root, content, name=None, where=None):
    sha = name or hashlib.sha1(content).hexdigest()  # noqa: S324
    rel = where or fb.shard_path(sha)
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
    return rel


def test_shard_path_follows_fcrepo_layout():
    sha = "a1b2c369563c0465ab82cdb2789d45ce1c3585b1"
    assert fb.shard_path(sha) == "a1/b2/c3/a1b2c369563c0465ab82cdb2789d45ce1c3585b1"


def test_scan_store_classifies_files(tmp_path):
    root = str(tmp_path)
    good = put(root, b"x" * 5000)
    wrong_shard = put(root, b"y" * 5000, where="00/00/00/" + hashlib.sha1(b"y" * 5000).hexdigest())  # noqa: S324
    put(root, b"z", where="tmp/upload.part")
    put(root, b"partial", where="a1/b2/c3/.fcrepo-tmp-a1b2c3")
    binaries, misplaced, unrecognised = fb.scan_store(root)
    assert binaries == {good: 5000}
    assert misplaced == [wrong_shard]
    assert unrecognised == ["tmp/upload.part"]


def test_plan_lists_only_missing_files(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    a = put(src, b"a" * 4100)
    b = put(src, b"b" * 4200)
    put(dst, b"a" * 4100)
    report = fb.plan(src, dst)
    assert report["to_copy"] == [b] and report["bytes_to_copy"] == 4200 and a not in report["to_copy"]


def test_check_mode_changes_nothing(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    put(src, b"a" * 4100)
    report = fb.backup(src, dst, check_mode=True)
    assert report["copied"] == 1 and report["changed"]
    assert not os.path.exists(dst)


@pytest.mark.parametrize("dest_of, message", [
    (lambda src, tmp: os.path.join(src, "backup"), "inside the binary directory"),
    (lambda src, tmp: str(tmp), "inside the destination"),
    (lambda src, tmp: str(tmp / "no" / "such" / "dir"), "parent directory"),
])
def test_bad_destinations_are_refused(tmp_path, dest_of, message):
    src = str(tmp_path / "src")
    put(src, b"a" * 4100)
    with pytest.raises(fb.FcrepoBinariesError, match=message):
        fb.backup(src, dest_of(src, tmp_path))


def test_missing_binary_directory_is_a_clear_error(tmp_path):
    with pytest.raises(fb.FcrepoBinariesError, match="does not exist"):
        fb.backup(str(tmp_path / "nope"), str(tmp_path / "dst"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(fb.FcrepoBinariesError, match="not a directory"):
        fb.backup(str(tmp_path / "file"), str(tmp_path / "dst"))


def test_a_store_that_lost_most_binaries_is_suspect_and_the_mirror_keeps_every_file(tmp_path):
    src, dst = str(tmp_path / "store"), str(tmp_path / "backup")
    rels = [put(src, b"binary %d " % i * 300) for i in range(10)]
    first = fb.backup(src, dst, shrink_threshold=0.4)
    assert first["result"] == "good" and first["figures"]["files"] == 10
    for rel in rels[2:]:
        os.unlink(os.path.join(src, rel))
    suspect = fb.backup(src, dst, shrink_threshold=0.4)
    assert suspect["result"] == "suspect"
    assert "files fell from 10 to 2" in suspect["shrink_message"]
    assert "accept_shrink: true" in suspect["shrink_message"]
    assert len(fb.scan_store(dst)[0]) == 10  # nothing left the mirror, the run record is not a binary
    # still compared with the last good run, until the drop is accepted once
    assert fb.backup(src, dst, shrink_threshold=0.4)["result"] == "suspect"
    assert fb.backup(src, dst, shrink_threshold=0.4, accept_shrink=True)["result"] == "good"
    assert fb.backup(src, dst, shrink_threshold=0.4)["result"] == "good"
    assert [r["result"] for r in fb.read_runs(dst)] == ["good", "suspect", "suspect", "good", "good"]


def test_check_mode_judges_without_recording_and_a_restore_records_nothing(tmp_path):
    src, dst = str(tmp_path / "store"), str(tmp_path / "backup")
    put(src, b"a" * 5000)
    assert fb.backup(src, dst, check_mode=True, shrink_threshold=0.4)["result"] == "good"
    assert fb.read_runs(dst) == []
    assert "result" not in fb.backup(src, dst)
    assert not os.path.exists(os.path.join(dst, fb.FIGURES_FILE))
    with pytest.raises(fb.FcrepoBinariesError, match="threshold"):
        fb.backup(src, dst, shrink_threshold=2)


def _temps(root):
    return [f for _d, _s, fs in os.walk(root) for f in fs if f.startswith(fb.TMP_PREFIX)]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_copy_failing_in_one_worker_leaves_no_temp_and_only_whole_binaries(tmp_path, monkeypatch, failure):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = [put(src, b"%d" % i * 2000) for i in range(60)]
    assert len({rel.split("/")[0] for rel in made}) > 20  # many top-level shards: many worker tasks
    # the first copy in the middle top-level shard fails. The results are taken in shard order, so
    # the batches of the shards before it are installed first whichever worker ran ahead, and the
    # shards after it may have copies no batch claimed (failing the 30th call instead raced: when
    # that call fell in the first shard, nothing was installed)
    tops = sorted({rel.split("/")[0] for rel in made})
    failing_top, real, failed = tops[len(tops) // 2], fb._copy_with_sha1, []
    assert len([rel for rel in made if rel.split("/")[0] < failing_top]) >= 7  # a whole batch before it

    def failing_in_the_middle_shard(src_path, tmp, ownership=None):
        if os.path.relpath(src_path, src).split("/")[0] == failing_top and not failed:
            failed.append(src_path)
            with open(tmp, "wb") as handle:  # half a file under the temp name, as a full disk leaves it
                handle.write(b"half")
            raise failure
        return real(src_path, tmp, ownership)

    monkeypatch.setattr(fb, "_copy_with_sha1", failing_in_the_middle_shard)
    with pytest.raises(fb.FcrepoBinariesError if isinstance(failure, OSError) else KeyboardInterrupt):
        fb.backup(src, dst, batch_files=7)
    assert _temps(dst) == []
    installed = [os.path.join(d, f) for d, _s, fs in os.walk(dst) for f in fs]
    assert installed  # the batches installed before the failure stay
    for path in installed:
        assert fb.sha1_file(path)[0] == os.path.basename(path)
    monkeypatch.setattr(fb, "_copy_with_sha1", real)
    again = fb.backup(src, dst)
    assert again["copied"] == 60 - len(installed) and again["already_present"] == len(installed)
    assert not again["stale_removed"]


@pytest.mark.parametrize("limit", [1000, 5])
def test_each_binary_on_disk_before_its_name_appears_the_names_at_the_end(tmp_path, monkeypatch, limit):
    """A small run: an fsync of each temp file before any rename, then of each directory that got a
    name (up to dest's parent); a run past fs_sync's limit: one syncfs before the renames, one at
    the end, and no fsync of a file."""
    from ansible.module_utils import fs_sync
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    made = [put(src, b"%d" % i * 2000) for i in range(8)]
    events = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a, b):
        events.append(("rename", str(b)))
        real_rename(a, b)

    monkeypatch.setattr(fs_sync, "FSYNC_EACH_UP_TO", limit)
    monkeypatch.setattr(fs_sync.os, "fsync", fsync)
    monkeypatch.setattr(fb.os, "rename", rename)
    monkeypatch.setattr(fs_sync, "sync_filesystem", lambda path: events.append(("syncfs", path)))
    report = fb.backup(src, dst)
    assert report["copied"] == 8
    renames = [i for i, e in enumerate(events) if e[0] == "rename"]
    assert sorted(events[i][1] for i in renames) == sorted(os.path.join(dst, rel) for rel in made)
    before, after = events[:renames[0]], events[renames[-1] + 1:]
    if limit == 1000:
        assert all(e[0] == "fsync" for e in before + after)
        assert len([e for e in before if fb.TMP_PREFIX in os.path.basename(e[1])]) == 8 == len(before)
        named = {os.path.dirname(os.path.join(dst, rel)) for rel in made}
        synced = {e[1] for e in after}
        assert named <= synced and {dst, str(tmp_path)} <= synced  # shards, dest, dest's parent
        assert all(p == str(tmp_path) or p.startswith(dst) for p in synced)
    else:
        assert before == [("syncfs", dst)] and after == [("syncfs", dst)]
