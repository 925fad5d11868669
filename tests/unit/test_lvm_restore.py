"""The LVM restore core (plugins/module_utils/lvm_restore.py): choosing and checking a backup, the binlog
index, the in-place swap and its rollback judged by what is on disk (plain directories here; the real
servers and a mount-point datadir are in tests/integration/test_lvm_restore_host.py and _vm.py)."""

import os

import pytest
from ansible.module_utils import lvm_restore as R
from ansible.module_utils.lvm_snapshot_copy import write_manifest

RUN = "20261203T050000Z"


def make_backup(dest, name, files=None):
    backup = dest / name
    for rel, text in (files or {"mysql/mysql/user.frm": "u", "mysql/app/t.ibd": "rows",
                                "mysql/ibdata1": "sys", "app/index.html": "hi"}).items():
        (backup / rel).parent.mkdir(parents=True, exist_ok=True)
        (backup / rel).write_text(text)
    write_manifest(str(backup))
    return backup


def test_choose_takes_the_newest_complete_backup_or_the_named_one(tmp_path):
    for name in ("20261201T010000Z", "20261202T010000Z", ".partial-20261203T010000Z", "notes"):
        (tmp_path / name).mkdir()
    assert R.choose(str(tmp_path)).endswith("20261202T010000Z")
    assert R.choose(str(tmp_path), "20261201T010000Z").endswith("20261201T010000Z")
    with pytest.raises(R.RestoreError, match=r"20261203T010000Z not found .*available: 20261201T010000Z, "):
        R.choose(str(tmp_path), "20261203T010000Z")
    with pytest.raises(R.RestoreError, match="no backup to restore in"):
        R.choose(str(tmp_path / "notes"))
    with pytest.raises(R.RestoreError, match="does not exist"):
        R.choose(str(tmp_path / "nowhere"))


def test_source_of_a_tree_or_an_archive(tmp_path):
    (tmp_path / "mysql" / "data").mkdir(parents=True)
    assert R.source_of(str(tmp_path), "mysql", "data") == ("tree", str(tmp_path / "mysql" / "data"), ".")
    (tmp_path / "db.tar").write_bytes(b"")
    assert R.source_of(str(tmp_path), "db", "data") == ("tar", str(tmp_path / "db.tar"), "data")
    with pytest.raises(R.RestoreError, match="no mysql/nope directory"):
        R.source_of(str(tmp_path), "mysql", "nope")
    with pytest.raises(R.RestoreError, match="holds no volume labelled x"):
        R.source_of(str(tmp_path), "x")


def test_the_manifest_check_covers_the_restored_volume_only(tmp_path):
    backup = make_backup(tmp_path, "20261201T010000Z")
    assert R.check_backup(str(backup), "mysql") == 3
    (backup / "app" / "index.html").write_text("changed")  # another volume: not this restore's concern
    assert R.check_backup(str(backup), "mysql") == 3
    (backup / "mysql" / "app" / "t.ibd").write_text("rowz")
    (backup / "mysql" / "ibdata1").unlink()
    with pytest.raises(R.RestoreError, match=r"2 file\(s\): mysql/ibdata1 \(missing\), "
                                             r"mysql/app/t.ibd \(checksum differs\)"):
        R.check_backup(str(backup), "mysql")
    with pytest.raises(R.RestoreError, match="lists no file of volume other"):
        R.check_backup(str(backup), "other")
    (backup / "MANIFEST.sha256").unlink()
    with pytest.raises(R.RestoreError, match="not a complete backup"):
        R.check_backup(str(backup), "mysql")


def test_the_binlog_index_is_repointed_and_other_index_files_left_alone(tmp_path):
    (tmp_path / "mysql-bin.000001").write_text("")
    (tmp_path / "mysql-bin.000002").write_text("")
    (tmp_path / "mysql-bin.index").write_text(
        "/var/lib/mysql/mysql-bin.000001\n/var/lib/mysql/mysql-bin.000002\n/var/lib/mysql/mysql-bin.000003\n")
    os.chmod(tmp_path / "mysql-bin.index", 0o640)
    (tmp_path / "other.index").write_text("not a binlog list\n")
    done = R.repoint_binlog_index(str(tmp_path), "/srv/restore/data")
    assert done == {"mysql-bin.index": 2}  # the third is not in the copy
    assert (tmp_path / "mysql-bin.index").read_text() == (
        "/srv/restore/data/mysql-bin.000001\n/srv/restore/data/mysql-bin.000002\n")
    assert oct(os.stat(tmp_path / "mysql-bin.index").st_mode & 0o777) == "0o640"
    assert (tmp_path / "other.index").read_text() == "not a binlog list\n"


def test_counts_compared_with_the_backups_record():
    assert R.compare_counts({"a.t": 3}, {"a.t": 3, "a.u": 9}) == []
    assert R.compare_counts({"a.t": 3, "b.x": 1}, {"a.t": 2}) == [
        "a.t: backup recorded 3, restored 2", "b.x: backup recorded 1, restored None"]


def live_datadir(tmp_path):
    datadir = tmp_path / "data"
    for rel in ("mysql/user.frm", "shop/orders.ibd", "ibdata1"):
        (datadir / rel).parent.mkdir(parents=True, exist_ok=True)
        (datadir / rel).write_text("live")
    (datadir / "lost+found").mkdir()
    (datadir / ".pre-restore-20261101T000000Z").mkdir()  # an earlier restore's, left by the operator
    return datadir


def stage(datadir, entries=("mysql", "ibdata1")):
    staging = datadir / f".restore-staging-{RUN}"
    for name in entries:
        if name == "mysql":
            (staging / name).mkdir(parents=True)
            (staging / name / "user.frm").write_text("restored")
        else:
            staging.mkdir(exist_ok=True)
            (staging / name).write_text("restored")
    return staging


def test_swap_moves_the_contents_and_keeps_lost_found_and_earlier_set_asides(tmp_path):
    datadir = live_datadir(tmp_path)
    stage(datadir)
    r = R.swap_in_place(str(datadir), RUN)
    assert (r["moved_aside"], r["moved_in"]) == (3, 2)
    assert sorted(os.listdir(datadir)) == [".pre-restore-20261101T000000Z", f".pre-restore-{RUN}", "ibdata1",
                                           "lost+found", "mysql"]
    assert (datadir / "ibdata1").read_text() == "restored"
    aside = datadir / f".pre-restore-{RUN}"
    assert sorted(os.listdir(aside)) == [R.MOVING_IN, "ibdata1", "mysql", "shop"]
    # a rollback now (e.g. the restored server failed its check): the restored entries go aside
    back = R.rollback_in_place(str(datadir), RUN)
    assert back["state"] == "rolled_back" and back["restored_entries"] == 3
    assert sorted(os.listdir(datadir / f".failed-restore-{RUN}")) == ["ibdata1", "mysql"]
    assert (datadir / "ibdata1").read_text() == "live" and (datadir / "shop" / "orders.ibd").exists()
    assert not aside.exists() and not (datadir / R.MOVING_IN).exists()


def test_rollback_before_the_restored_entries_moved_in_leaves_the_unmoved_live_ones(tmp_path):
    datadir = live_datadir(tmp_path)
    stage(datadir)
    aside = datadir / f".pre-restore-{RUN}"
    aside.mkdir()
    os.rename(datadir / "ibdata1", aside / "ibdata1")  # the set-aside stopped after one entry
    back = R.rollback_in_place(str(datadir), RUN)
    assert back["state"] == "rolled_back" and back["failed_dir"] is None
    assert sorted(os.listdir(datadir)) == [".pre-restore-20261101T000000Z", "ibdata1", "lost+found", "mysql",
                                           "shop"]
    assert (datadir / "mysql" / "user.frm").read_text() == "live"


def test_rollback_with_nothing_set_aside_says_untouched_and_removes_the_staging(tmp_path):
    datadir = live_datadir(tmp_path)
    staging = stage(datadir)
    assert R.rollback_in_place(str(datadir), RUN)["state"] == "untouched"
    assert not staging.exists() and (datadir / "ibdata1").read_text() == "live"


def test_finish_removes_the_set_aside_data_only_when_asked(tmp_path):
    datadir = live_datadir(tmp_path)
    stage(datadir)
    R.swap_in_place(str(datadir), RUN)
    assert R.finish_in_place(str(datadir), RUN)["previous"] == str(datadir / f".pre-restore-{RUN}")
    assert R.finish_in_place(str(datadir), RUN, keep_previous=False) == {"changed": True, "previous": None}
    assert (datadir / ".pre-restore-20261101T000000Z").is_dir()  # never an earlier run's


def test_in_place_refusals_change_nothing(tmp_path):
    datadir = live_datadir(tmp_path)
    with pytest.raises(R.RestoreError, match="nothing staged"):
        R.swap_in_place(str(datadir), RUN)
    with pytest.raises(R.RestoreError, match="not a UTC timestamp"):
        R.swap_in_place(str(datadir), "../x")
    with pytest.raises(R.RestoreError, match="not a data directory this restore replaces"):
        R.check_datadir("/var/lib")
    (tmp_path / "notmysql" / "x").mkdir(parents=True)
    with pytest.raises(R.RestoreError, match="does not look like a MySQL data directory"):
        R.check_datadir(str(tmp_path / "notmysql"))
    backup_dest = tmp_path / "dest"
    make_backup(backup_dest, "20261201T010000Z")
    stage(datadir)
    with pytest.raises(R.RestoreError, match="exists already"):
        R.prepare_in_place(str(backup_dest), "latest", "mysql", ".", str(datadir), RUN)
    assert sorted(os.listdir(datadir / f".restore-staging-{RUN}")) == ["ibdata1", "mysql"]


def test_prepare_in_check_mode_reports_the_plan_and_makes_nothing(tmp_path):
    datadir = live_datadir(tmp_path)
    make_backup(tmp_path / "dest", "20261201T010000Z")
    r = R.prepare_in_place(str(tmp_path / "dest"), "latest", "mysql", ".", str(datadir), RUN, check_mode=True)
    assert r["name"] == "20261201T010000Z" and r["bytes"] == 8
    assert not os.path.exists(r["staging"])
