"""The LVM backup's shrink guard and retention (plugins/module_utils/lvm_snapshot_copy.py on the shared
retention_policy rule).

Real rsync copies real trees; LVM is stood in as in test_lvm_snapshot_copy_progress, and so is the
verification server (a function returning what verify_datadir returns: its real run on a real copy
is tests/integration/test_lvm_copy_host.py and, end to end in the VM, test_lvm_restore_vm.py)."""

import datetime
import json
import os
import shutil
import subprocess

import pytest
from ansible.module_utils import lvm_restore
from ansible.module_utils import lvm_snapshot_copy as C
from ansible.module_utils.progress import read_progress

from tests.unit.test_lvm_snapshot_copy_progress import LvmStandIn, make_tree, snapshots


class Site:
    """Two volumes standing in for snapshots, a destination, and a verification whose figures the
    test sets (the rows of app.big and app.small; app.big can be dropped)."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.sources = {
            "/dev/vgdata/mysql-backup-snap": str(make_tree(tmp_path / "mysql", mib=2, seed=1)),
            "/dev/vgdata/app-backup-snap": str(make_tree(tmp_path / "app", mib=1, seed=2)),
        }
        self.dest = tmp_path / "backups"
        self.rows = {"app.big": 100000, "app.small": 10}
        self.recounted = []
        self.runs = 0

    def verify(self, partial, recount=()):
        self.recounted.append(list(recount))
        present = {t: n for t, n in self.rows.items() if n is not None}
        top = sorted(present, key=lambda t: -present[t])[:1]
        return {"tables_checked": len(present), "row_counts": {t: present[t] for t in set(top) | set(recount)
                                                               if t in present},
                "biggest_tables": top, "tables_gone": sorted(t for t in recount if t not in present),
                "datadir_bytes": C.du_bytes(os.path.join(partial, "mysql"))}

    def run(self, **kw):
        self.runs += 1
        now = datetime.datetime(2026, 12, 1, 1, 0, self.runs, tzinfo=datetime.timezone.utc)
        kw.setdefault("keep", 2)
        kw.setdefault("progress_file", str(self.tmp / f"run{self.runs}.progress"))
        kw.setdefault("verify", self.verify)
        return C.SnapshotCopy(LvmStandIn(self.sources), snapshots(), str(self.dest),
                              mount_root=str(self.tmp / "mnt"), poll_interval=0.2, now=now,
                              popen=subprocess.Popen, **kw).run()

    def names(self):
        return C.list_backups(str(self.dest))

    def meta(self, name):
        return C.read_metadata(os.path.join(self.dest, name))


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


def test_figures_are_recorded_and_a_steady_source_stays_good(site):
    first = site.run()
    assert first["status"] == "good" and first["result"] == "ok" and first["last_good"] is None
    assert first["figures"]["rows:app.big"] == 100000 and first["figures"]["tables"] == 2
    assert first["figures"]["bytes"] == first["size_bytes"] > first["figures"]["datadir_bytes"] > 0
    second = site.run()
    assert second["status"] == "good" and second["last_good"] == first["name"] and second["shrink"] == []
    # the last good backup's counted tables are counted again
    assert site.recounted == [[], ["app.big"]]
    assert site.meta(second["name"])["figures"] == second["figures"]
    assert second["latest"] == second["name"]


def test_biggest_table_truncated_is_suspect_kept_not_latest_and_retention_spares_the_good(site):
    good1, good2 = site.run()["name"], site.run()["name"]
    site.rows["app.big"] = 40  # the biggest table truncated in place: its rows fell, not the others
    for _ in range(2):  # keep=2: two suspect runs must not push out the two good backups
        with pytest.raises(C.SuspectBackupError) as err:
            site.run()
        message = str(err.value)
        assert "rows:app.big fell from 100000 to 40 (-100 %)" in message, message
        assert "accept_shrink: true" in message and good2 in message
        result = err.value.result
        assert result["status"] == "suspect" and result["result"] == "suspect"
        assert result["latest"] == good2 and os.path.isdir(result["path"])
        assert site.meta(result["name"])["status"] == "suspect"
        state = read_progress(site.tmp / f"run{site.runs}.progress")
        assert state["state"] == "failed" and state["message"].startswith("backup kept as SUSPECT")
    names = site.names()
    assert names[:2] == [good1, good2] and len(names) == 4
    # what a restore (and the restore drill) of "latest" takes: the newest good backup
    assert lvm_restore.choose(str(site.dest)) == os.path.join(site.dest, good2)
    # the figures are compared with the last good backup, not with the suspect one before
    assert site.recounted[-1] == ["app.big"]


def test_a_dropped_table_counts_as_all_its_rows_lost(site):
    site.run()
    site.rows["app.big"] = None
    with pytest.raises(C.SuspectBackupError, match=r"rows:app.big fell from 100000 to 0"):
        site.run()


def test_accept_shrink_makes_the_smaller_backup_good_and_latest(site):
    site.run()
    site.rows["app.big"] = 10
    accepted = site.run(accept_shrink=True)
    assert accepted["status"] == "good" and accepted["shrink_accepted"] is True
    assert accepted["shrink"][0]["figure"] == "rows:app.big"
    assert lvm_restore.choose(str(site.dest)).endswith(accepted["name"])
    # the accepted figures are the new reference: the next run at that size is good without the flag
    assert site.run()["status"] == "good"


def test_a_drop_within_the_threshold_is_good(site):
    site.run()
    site.rows["app.big"] = 70000  # -30 %, under the default 40 %
    assert site.run()["status"] == "good"
    site.rows["app.big"] = 60000  # -14 % against the last good one (70000)
    assert site.run(shrink_threshold=0.2)["status"] == "good"
    site.rows["app.big"] = 50000  # -17 % against 60000
    with pytest.raises(C.SuspectBackupError, match="fell from 60000 to 50000"):
        site.run(shrink_threshold=0.1)


def test_bytes_alone_guard_a_backup_without_verification(site):
    first = site.run(verify=None)
    assert first["figures"] == {"bytes": first["size_bytes"]}
    data = os.path.join(site.sources["/dev/vgdata/mysql-backup-snap"], "data")
    shutil.rmtree(data)  # most of the bytes gone
    with pytest.raises(C.SuspectBackupError, match="bytes fell from"):
        site.run(verify=None)


def test_a_backup_from_before_the_guard_is_the_reference(site):
    """A backup made by an earlier version (no status, no figures) counts as good, its figures taken
    from its size and verification."""
    old = site.dest / "20261130T010000Z"
    old.mkdir(parents=True)
    (old / C.METADATA).write_text(json.dumps({"size_bytes": 1, "verification": {
        "tables_checked": 2, "row_counts": {"app.big": 500000}}}))
    with pytest.raises(C.SuspectBackupError, match=r"rows:app.big fell from 500000 to 100000"):
        site.run()
    assert site.recounted == [["app.big"]]


def test_retention_counts_good_backups_only_and_keeps_min_good(site):
    names = [site.run(keep=0)["name"] for _ in range(3)]
    site.rows["app.big"] = 1
    with pytest.raises(C.SuspectBackupError):
        site.run(keep=0)
    suspect = site.names()[-1]
    # keep=1 with min_good=2: the two newest good backups stay, the suspect one newer than them too
    site.rows["app.big"] = 100000
    last = site.run(keep=1)
    assert last["retention_removed"] == [names[0], names[1]]
    assert site.names() == [names[2], suspect, last["name"]]
    assert C.apply_retention(str(site.dest), 1, check_mode=True, min_good=1) == [names[2], suspect]


def test_bad_policy_values_are_refused_before_anything_is_copied(site):
    for bad in ({"shrink_threshold": 1.5}, {"min_good": 0}):
        with pytest.raises(C.CopyError, match="threshold|min_good"):
            site.run(**bad)
    assert not site.dest.exists()
