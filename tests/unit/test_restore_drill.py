"""Restore drills (plugins/module_utils/restore_drill.py): which backup a drill restores, how its copy
is proven, the backup_runs record it publishes; its metrics and its row in the report table."""
import importlib.util
import os

import pytest
from ansible.module_utils import backup_metrics as bm
from ansible.module_utils import restore_drill as rd

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = 1_790_000_000.0


def tar(name, time):
    return {"name": name, "kind": "tar", "path": f"/b/{name}", "time": time, "last": time}


def chain(name, sessions):
    return {"name": name, "kind": "rdiff-chain", "path": f"/b/{name}", "time": sessions[0],
            "last": sessions[-1], "session_times": sessions}


def run(location, result, files=10):
    return {"location": location, "result": result, "figures": {"files": files, "bytes": files * 100}}


def test_the_newest_good_tar_is_chosen_and_a_newer_suspect_one_passed_over():
    states = rd.btw_states([tar("a.tar", T0), tar("b.tar", T0 + 60)],
                           [run("a.tar", "good", 10), run("b.tar", "suspect", 2)])
    chosen = rd.newest_good(states)
    assert chosen["backup"] == "a.tar" and chosen["at"] == "a.tar"
    assert chosen["figures"] == {"files": 10, "bytes": 1000}
    assert chosen["skipped_suspect"] == ["b.tar"]


def test_a_chain_gives_the_session_before_its_trailing_suspect_runs():
    sessions = [T0, T0 + 60, T0 + 120]
    states = rd.btw_states([chain("chain-1", sessions)],
                           [run("chain-1", "good", 10), run("chain-1", "good", 11),
                            run("chain-1", "suspect", 1)])
    chosen = rd.newest_good(states)
    assert chosen["session"] == T0 + 60 and chosen["at"] == str(int(T0 + 60))
    assert chosen["figures"]["files"] == 11  # the figures of the last good run, the state restored


def test_a_chain_whose_last_run_was_good_gives_its_last_session():
    states = rd.btw_states([chain("chain-1", [T0, T0 + 60])],
                           [run("chain-1", "suspect", 1), run("chain-1", "good", 9)])
    assert rd.newest_good(states)["session"] == T0 + 60


def test_a_suspect_dump_chain_is_passed_over_for_the_good_chain_before_it():
    states = rd.btw_states([chain("chain-1", [T0, T0 + 60]), chain("chain-2", [T0 + 120])],
                           [run("chain-1", "good"), run("chain-2", "suspect")])
    chosen = rd.newest_good(states)
    assert chosen["backup"] == "chain-1" and chosen["session"] == T0 + 60
    assert chosen["skipped_suspect"] == ["chain-2"]


def test_backups_made_before_the_shrink_guard_are_good_without_figures():
    chosen = rd.newest_good(rd.btw_states([chain("chain-1", [T0])], []))
    assert chosen["status"] == "good" and chosen["figures"] is None


def test_no_backup_or_only_suspect_ones_is_a_clear_error():
    with pytest.raises(rd.DrillError, match="no backup of set x to restore"):
        rd.newest_good([], "set x")
    with pytest.raises(rd.DrillError, match=r"every backup is suspect \(b.tar\)"):
        rd.newest_good(rd.btw_states([tar("b.tar", T0)], [run("b.tar", "suspect")]), "set x")


def test_refused_and_unknown_strategies_say_why():
    assert rd.check_strategies(["btw", "fcrepo", "lvm"]) == ["btw", "fcrepo", "lvm"]
    with pytest.raises(rd.DrillError, match="seafile refused, nothing was restored: the Seafile backup"):
        rd.check_strategies(["btw", "seafile"])
    with pytest.raises(rd.DrillError, match="unknown restore drill strategy 'tape'"):
        rd.check_strategies("tape")


def chosen_fs(**extra):
    item = {"set": "etc", "type": "rdiff", "destination": "fs/etc", "backup": "chain-1", "path": "/b/chain-1",
            "date": "2026-09-21T12:00:00Z", "age_seconds": 3600.0, "figures": {"files": 3, "bytes": 30}}
    item.update(extra)
    return item


def test_a_proven_drill_gives_one_ok_record_with_rpo_rto_and_every_check():
    db = chosen_fs(set="shop", type="mysqldump", destination="db/shop", backup="chain-2", age_seconds=7200.0)
    proofs = rd.prove_btw(
        [chosen_fs(), db],
        {"etc": {"duration_seconds": 1.5},
         "shop": {"duration_seconds": 2.0,
                  "verified": {"expected": 2, "found": 2, "missing": [], "ok": True}}},
        {"etc": {"files": 3, "bytes": 30}})
    record = rd.drill_record("btw", "host1", proofs, {"globals": "cluster"})
    assert record["strategy"] == "restore_drill" and record["mode"] == "btw" and record["result"] == "ok"
    assert record["set"] == "btw/host1" and record["host"] == "host1"
    assert record["backup_age_seconds"] == 7200.0  # the oldest backup proved
    assert record["restore_seconds"] == record["duration_seconds"] == 3.5
    assert record["location"] == "fs/etc/chain-1, db/shop/chain-2"
    assert [(c["backup"], c["check"], c["ok"]) for c in record["details"]["checked"]] == [
        ("fs/etc/chain-1", "files", True), ("fs/etc/chain-1", "bytes", True),
        ("db/shop/chain-2", "dump objects", True)]
    assert record["details"]["failed"] is None and record["details"]["skipped"] == {"globals": "cluster"}


def test_a_copy_missing_a_file_fails_naming_the_backup_and_the_check():
    proofs = rd.prove_btw([chosen_fs()], {"etc": {"duration_seconds": 1}}, {"etc": {"files": 2, "bytes": 20}})
    record = rd.drill_record("btw", "host1", proofs)
    assert record["result"] == "failed"
    assert record["details"]["failed"] == ("restore drill of btw on host1: backup fs/etc/chain-1 failed the "
                                           "check files: expected 3, found 2")


def test_a_failed_restore_and_a_dump_check_that_failed_are_failures():
    failed = rd.prove_btw([chosen_fs()], {"etc": {"failed": True, "msg": "tar failed (rc=2)"}}, {})
    message = rd.drill_record("btw", "h", failed)["details"]["failed"]
    assert "failed the check restore: tar failed (rc=2)" in message
    db = chosen_fs(type="pg_dump", backup="chain-2", destination="db/wiki")
    missing = rd.prove_btw([db], {"etc": {"verified": {"expected": 2, "found": 1, "missing": ["table t"],
                                                       "ok": False}}}, {})
    assert "backup db/wiki/chain-2 failed the check dump objects: expected 2, found 1" in \
        rd.drill_record("btw", "h", missing)["details"]["failed"]
    assert rd.drill_record("btw", "h", rd.prove_btw([chosen_fs()], {}, {}))["result"] == "failed"


def test_tree_figures_count_regular_files_and_bytes_not_links(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"12345")
    (tmp_path / "b").write_bytes(b"12")
    os.symlink("b", tmp_path / "link")
    assert rd.tree_figures(str(tmp_path)) == {"files": 2, "bytes": 7}


def test_a_drill_records_its_rto_and_rpo_as_metrics_kept_over_a_failed_drill():
    ok = {"strategy": "restore_drill", "set": "btw/h", "result": "ok", "duration_seconds": 3.5,
          "restore_seconds": 3.5, "backup_age_seconds": 7200}
    state = bm.merge({}, [ok], now=T0)
    series = state[("restore_drill", "btw/h")]
    assert series["last_restore_seconds"] == 3.5 and series["last_backup_age_seconds"] == 7200
    assert series["last_success_timestamp_seconds"] == T0
    failed = dict(ok, result="failed", restore_seconds=1, backup_age_seconds=1)
    after = bm.merge(state, [failed], now=T0 + 60)[("restore_drill", "btw/h")]
    assert after["last_result"] == 0 and after["last_success_timestamp_seconds"] == T0
    assert after["last_backup_age_seconds"] == 7200 and after["last_restore_seconds"] == 3.5
    text = bm.render(bm.merge({}, [ok], now=T0))
    assert 'backup_last_backup_age_seconds{strategy="restore_drill",set="btw/h"} 7200' in text
    assert bm.parse(text) == bm.merge({}, [ok], now=T0)


def load_callback():
    spec = importlib.util.spec_from_file_location(
        "backup_report_drill_test", os.path.join(TOP, "plugins", "callback", "backup_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_table_shows_a_drill_with_its_backup_age():
    br = load_callback()
    drill = {"strategy": "restore_drill", "mode": "btw", "host": "h", "result": "ok", "size_bytes": 0,
             "duration_seconds": 3.5, "backup_age_seconds": 7200, "location": "fs/etc/chain-1"}
    backup = {"strategy": "fs_backup", "mode": "rdiff", "host": "h", "result": "ok", "size_bytes": 10,
              "duration_seconds": 1, "location": "/b"}
    lines = br.render_table([backup, drill]).splitlines()
    assert lines[0].split() == ["STRATEGY", "MODE", "HOST", "RESULT", "SIZE", "DURATION", "BACKUP", "AGE",
                                "LOCK", "DOWNTIME", "LOCATION"]
    assert lines[3].split()[:7] == ["restore_drill", "btw", "h", "OK", "0", "B", "3.5s"]
    assert "2h00m00s" in lines[3] and lines[3].endswith("fs/etc/chain-1")
    assert "BACKUP AGE" not in br.render_table([backup])


def leveldb_backup_dir(dest, name, created, records, result=None):
    import json

    from ansible.module_utils import leveldb_backup as lb

    path = dest / name
    (path / "data").mkdir(parents=True)
    meta = {"status": "ok", "created_epoch": created, "records": records}
    if result:
        meta["result"] = result
    (path / lb.META_FILE).write_text(json.dumps(meta))
    return path


def test_fcrepo_drill_takes_the_newest_good_leveldb_backup_not_a_newer_suspect_one(tmp_path):
    leveldb_backup_dir(tmp_path, "leveldb-1", T0, 300)
    leveldb_backup_dir(tmp_path, "leveldb-2", T0 + 60, 10, result="suspect")
    chosen = rd.fcrepo_candidate(str(tmp_path), now=T0 + 3600)
    assert (chosen["backup"], chosen["figures"]) == ("leveldb-1", {"records": 300})
    assert chosen["age_seconds"] == 3600
    assert chosen["skipped_suspect"] == ["leveldb-2"]
    with pytest.raises(rd.DrillError, match="no backup of the fcrepo LevelDB"):
        rd.fcrepo_candidate(str(tmp_path / "none"))


def test_fcrepo_proof_compares_records_and_binaries_and_names_a_failed_restore():
    chosen = {"backup": "leveldb-1", "path": "/b/leveldb-1", "date": "x", "age_seconds": 60.0,
              "figures": {"records": 300}}
    ok = rd.prove_fcrepo(chosen, {"records": 300},
                         {"binaries": 3, "mismatches": [], "owner_check": {"checked": 3}}, seconds=2.5)
    record = rd.drill_record("fcrepo", "h", ok)
    assert record["result"] == "ok" and record["restore_seconds"] == 2.5 and record["set"] == "fcrepo/h"
    assert [c["check"] for c in record["details"]["checked"]] == [
        "records", "binaries read back by the owner (SHA-1)", "SHA-1 mismatches"]
    short = rd.prove_fcrepo(chosen, {"records": 299}, None)
    assert "backup leveldb/leveldb-1 failed the check records: expected 300, found 299" in \
        rd.drill_record("fcrepo", "h", short)["details"]["failed"]
    lost = rd.prove_fcrepo(chosen, {"records": 300}, {"failed": True, "msg": "uid 65534 cannot read 1"})
    assert "failed the check binaries restore: uid 65534 cannot read 1" in \
        rd.drill_record("fcrepo", "h", lost)["details"]["failed"]


def test_the_lvm_drill_takes_the_newest_complete_backup_with_its_age_and_recorded_counts(tmp_path):
    import calendar
    import json

    for name in ("20261201T010000Z", "20261202T010000Z", ".partial-20261203T010000Z"):
        (tmp_path / name).mkdir()
    (tmp_path / "20261202T010000Z" / "metadata.json").write_text(
        json.dumps({"verification": {"row_counts": {"shop.orders": 400}}}))
    made = calendar.timegm((2026, 12, 2, 1, 0, 0))
    chosen = rd.lvm_candidate(str(tmp_path), now=made + 3600)
    assert (chosen["backup"], chosen["date"]) == ("20261202T010000Z", "2026-12-02T01:00:00Z")
    assert chosen["age_seconds"] == 3600
    assert chosen["figures"] == {"row_counts": {"shop.orders": 400}}
    with pytest.raises(rd.DrillError, match="no backup to restore in"):
        rd.lvm_candidate(str(tmp_path / ".partial-20261203T010000Z"))


def test_an_lvm_drill_is_proven_by_the_tables_checked_and_the_recorded_row_counts():
    chosen = {"backup": "20261202T010000Z", "path": "/b/20261202T010000Z", "date": "2026-12-02T01:00:00Z",
              "age_seconds": 60.0, "figures": {"row_counts": {"shop.orders": 400}}}
    good = {"tables_checked": 3, "row_counts": {"shop.orders": 400, "shop.x": 1}, "seconds": 12.5}
    record = rd.drill_record("lvm", "db1", rd.prove_lvm(chosen, good))
    assert (record["result"], record["set"], record["location"]) == ("ok", "lvm/db1", "lvm/20261202T010000Z")
    assert record["restore_seconds"] == 12.5 and record["backup_age_seconds"] == 60.0
    assert [c["check"] for c in record["details"]["checked"]] == ["tables CHECK TABLE OK", "rows shop.orders"]
    short = dict(good, row_counts={"shop.orders": 399})
    record = rd.drill_record("lvm", "db1", rd.prove_lvm(chosen, short))
    assert record["result"] == "failed"
    assert record["details"]["failed"] == ("restore drill of lvm on db1: backup lvm/20261202T010000Z failed "
                                           "the check rows shop.orders: expected 400, found 399")
    failed = {"failed": True, "msg": "tables in the copy do not check clean: `shop`.`orders`: error Corrupt"}
    record = rd.drill_record("lvm", "db1", rd.prove_lvm(chosen, failed))
    assert "failed the check restore: tables in the copy do not check clean" in record["details"]["failed"]
