"""The replica's row count shrink guard (plugins/module_utils/mysql_row_counts.py): the pure judgement
and the state file. Counting on a real server: tests/integration/test_seafile_operations.py."""
import json
import os
import stat

import pytest
from ansible.module_utils import mysql_row_counts as rc

GOOD_COUNTS = {"seafile_db.RepoUserToken": 5000, "seahub_db.share": 2000, "ccnet_db.Group": 12}


def state_of(counts, at="2026-12-01T00:00:00Z"):
    return {"version": 1, "last_good": {"at": at, "counts": counts, "estimated": [], "accepted": False}}


def test_first_check_records_the_counts_as_good():
    report, new_state = rc.evaluate({}, GOOD_COUNTS, now=0)
    assert report["result"] == "good" and report["compared"] == 0 and report["previous_at"] is None
    assert new_state["last_good"]["counts"] == GOOD_COUNTS
    assert new_state["last_good"]["at"] == "1970-01-01T00:00:00Z"


def test_a_half_drop_of_one_table_is_suspect_names_it_and_keeps_the_last_good_counts():
    counts = dict(GOOD_COUNTS, **{"seafile_db.RepoUserToken": 2400})
    report, new_state = rc.evaluate(state_of(GOOD_COUNTS), counts)
    assert report["result"] == "suspect"
    assert new_state is None  # the file keeps the last good counts
    assert [(d["table"], d["previous"], d["current"]) for d in report["shrink"]] == [
        ("seafile_db.RepoUserToken", 5000, 2400)]
    assert "seafile_db.RepoUserToken fell from 5000 to 2400 (-52 %)" in report["message"]
    assert report["message"].startswith("the replica is suspect: compared with the last good row counts "
                                        "(2026-12-01T00:00:00Z), seafile_db.RepoUserToken fell")
    assert "accept_shrink" in report["message"]


def test_drops_within_the_threshold_and_growth_are_good_and_replace_the_counts():
    counts = {"seafile_db.RepoUserToken": 3001, "seahub_db.share": 9000, "ccnet_db.Group": 12}
    report, new_state = rc.evaluate(state_of(GOOD_COUNTS), counts)
    assert report["result"] == "good" and report["compared"] == 2
    assert new_state["last_good"]["counts"] == counts


def test_tables_under_min_rows_are_not_compared():
    counts = dict(GOOD_COUNTS, **{"ccnet_db.Group": 0})
    assert rc.evaluate(state_of(GOOD_COUNTS), counts, min_rows=1000)[0]["result"] == "good"
    report, _ = rc.evaluate(state_of(GOOD_COUNTS), counts, min_rows=10)
    assert report["result"] == "suspect" and report["shrink"][0]["table"] == "ccnet_db.Group"


def test_a_table_gone_from_the_replica_counts_as_empty():
    counts = {k: v for k, v in GOOD_COUNTS.items() if k != "seahub_db.share"}
    report, new_state = rc.evaluate(state_of(GOOD_COUNTS), counts)
    assert new_state is None
    assert [(d["table"], d["current"]) for d in report["shrink"]] == [("seahub_db.share", 0)]


def test_accept_shrink_records_the_smaller_counts_as_good_once():
    counts = dict(GOOD_COUNTS, **{"seafile_db.RepoUserToken": 10})
    report, new_state = rc.evaluate(state_of(GOOD_COUNTS), counts, accept_shrink=True)
    assert report["result"] == "good" and report["shrink_accepted"] is True
    assert new_state["last_good"]["counts"] == counts and new_state["last_good"]["accepted"] is True
    # the next check compares with the accepted counts
    assert rc.evaluate(new_state, counts)[0]["result"] == "good"


def test_unchanged_counts_do_not_rewrite_the_file():
    report, new_state = rc.evaluate(state_of(GOOD_COUNTS), dict(GOOD_COUNTS))
    assert report["result"] == "good" and new_state is None


@pytest.mark.parametrize("bad", [1, -0.1, "half", None])
def test_a_bad_threshold_is_refused(bad):
    with pytest.raises(rc.RowCountError, match="shrink threshold"):
        rc.evaluate({}, GOOD_COUNTS, threshold=bad)


def test_state_file_is_written_atomically_0600_in_a_new_0700_directory(tmp_path):
    path = tmp_path / "state" / "counts.json"
    assert rc.read_state(str(path)) == {}
    _, new_state = rc.evaluate({}, GOOD_COUNTS)
    rc.write_state(str(path), new_state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert rc.read_state(str(path)) == new_state
    assert os.listdir(path.parent) == ["counts.json"]  # no temporary file left


def test_an_unreadable_state_file_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "counts.json"
    path.write_text("{not json")
    with pytest.raises(rc.RowCountError, match="(?i)move it away"):
        rc.read_state(str(path))
    path.write_text(json.dumps(["a list"]))
    with pytest.raises(rc.RowCountError, match="not a row count record"):
        rc.read_state(str(path))


def test_add_row_counts_makes_a_suspect_replica_unhealthy_with_the_message():
    report, _ = rc.evaluate(state_of(GOOD_COUNTS), dict(GOOD_COUNTS, **{"seahub_db.share": 100}))
    facts = {"checks": [], "problems": [], "healthy": True}
    assert rc.add_row_counts(facts, dict(report, changed=False)) is False
    assert facts["suspect"] is True and facts["healthy"] is False
    assert facts["problems"] == [report["message"]]
    assert facts["checks"][-1]["name"] == "row_counts" and not facts["checks"][-1]["ok"]
    assert "changed" not in facts["row_counts"]


def test_add_row_counts_good_and_without_a_guard():
    report, _ = rc.evaluate({}, GOOD_COUNTS)
    facts = {"checks": [], "problems": [], "healthy": True}
    assert rc.add_row_counts(facts, dict(report, changed=True)) is True
    assert facts["suspect"] is False and facts["healthy"] is True and facts["checks"][-1]["ok"]
    assert "3 tables counted, 0 compared" in facts["checks"][-1]["message"]
    bare = {"checks": [], "problems": [], "healthy": True}
    assert rc.add_row_counts(bare, None) is False
    assert bare == {"checks": [], "problems": [], "healthy": True, "suspect": False}
