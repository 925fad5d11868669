"""The shrink guard of btw file-system sets (issue 14), with real GNU tar: a set that loses 80 % of
its files is suspect, kept, not counted as good by retention, and the module publishes a suspect run."""

import os

import pytest
from ansible.module_utils import btw_fs, btw_module, btw_retention


class Exited(Exception):
    pass


class Module:
    def exit_json(self, **kw):
        self.result = dict(kw, failed=False)
        raise Exited

    def fail_json(self, **kw):
        self.result = dict(kw, failed=True)
        raise Exited


def backup(src, root, stamp, accept=False):
    result = btw_fs.fs_backup("www", src, root, "fs/www", "tar", now=stamp)
    verdict = btw_retention.shrink_guard(result["destination"], result["location"], result["figures"],
                                         result["stored"], 0.4, accept, now=stamp)
    return result, verdict


def test_a_file_set_losing_80_percent_of_its_files_is_suspect_and_never_counts_as_good(tmp_path):
    src, root = tmp_path / "src", tmp_path / "root"
    root.mkdir()
    for i in range(50):
        (src / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 5}" / f"f{i}").write_bytes(b"x" * (100 + i))
    first, verdict = backup(str(src), str(root), 1_000_000_000)
    assert verdict["status"] == "good" and first["figures"]["files"] == 50
    (src / "d0" / "f0").write_bytes(b"y" * 120)
    second, verdict = backup(str(src), str(root), 1_000_000_100)
    assert verdict["status"] == "good"
    for i in range(50):
        if i % 5:
            os.unlink(src / f"d{i % 5}" / f"f{i}")  # 40 of 50 files gone: -80 %
    third, verdict = backup(str(src), str(root), 1_000_000_200)
    assert third["stored"] and verdict["status"] == "suspect"
    assert "files fell from 50 to 10 (-80 %)" in verdict["message"]
    assert "accept_shrink: true" in verdict["message"]
    # the source stays shrunk: nothing new is stored, the run is still suspect
    _unchanged, verdict = backup(str(src), str(root), 1_000_000_300)
    assert verdict["status"] == "suspect"
    dest = third["destination"]
    listed = btw_retention.with_status(dest, btw_retention.list_backups(dest))
    assert [(b["name"], b["status"]) for b in listed] == [
        (os.path.basename(first["location"]), "good"), (os.path.basename(second["location"]), "good"),
        (os.path.basename(third["location"]), "suspect")]
    result = btw_retention.apply_retention(str(root), "fs/www", keep_count=1, require_synced=False)
    assert result["deleted"] == []  # keep_count 1, but two good backups stay (min_good) beside the suspect
    assert result["suspect"] == [os.path.basename(third["location"])]
    # accepted once: recorded as good, the next run compares with it
    _accepted, verdict = backup(str(src), str(root), 1_000_000_400, accept=True)
    assert verdict["status"] == "good" and verdict["accepted"]
    result = btw_retention.apply_retention(str(root), "fs/www", keep_count=1, require_synced=False)
    assert [d["name"] for d in result["deleted"]] == [os.path.basename(first["location"])]


def test_the_module_publishes_a_suspect_run_and_fails_naming_the_drop():
    module = Module()
    run = btw_module.ModuleRun(module, "file-system backup www failed: ",
                               {"strategy": "fs_backup", "set": "www", "type": "tar"})
    result = {"stored": True, "reason": "40 removed", "location": "/b/fs/www/www-x.tar", "size_bytes": 10,
              "duration_seconds": 0.2, "changed": True}
    with pytest.raises(Exited):
        run.exit_suspect(result, "the backup of www is suspect: files fell from 50 to 10 (-80 %)")
    assert module.result["failed"] and "files fell from 50 to 10" in module.result["msg"]
    assert module.result["backup_run"]["result"] == "suspect"
    assert module.result["backup_run"]["location"] == "/b/fs/www/www-x.tar"
