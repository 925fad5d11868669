"""The shared shrink guard and retention rule (plugins/module_utils/retention_policy.py)."""
import pytest
from ansible.module_utils import retention_policy as rp


def test_a_half_drop_is_caught_by_default_and_names_figure_values_and_how_to_accept():
    verdict = rp.judge({"records": 100000}, {"records": 50000})
    assert verdict["status"] == rp.SUSPECT
    assert "records fell from 100000 to 50000 (-50 %)" in verdict["message"]
    assert "accept_shrink: true" in verdict["message"]


def test_small_drops_growth_and_a_first_backup_are_good():
    assert rp.judge({"records": 100}, {"records": 61})["status"] == rp.GOOD
    assert rp.judge({"records": 100}, {"records": 500})["status"] == rp.GOOD
    assert rp.judge(None, {"records": 0})["status"] == rp.GOOD


def test_every_figure_is_compared_and_unknown_figures_are_skipped():
    drops = rp.compare_figures({"files": 1000, "bytes": 10**6, "tables": None, "rows": 0},
                               {"files": 200, "bytes": 10**6 // 2 - 1, "tables": 3, "rows": 0})
    assert [(d["figure"], d["previous"], d["current"]) for d in drops] == [
        ("files", 1000, 200), ("bytes", 10**6, 10**6 // 2 - 1)]
    assert drops[0]["drop"] == 0.8


def test_accept_shrink_makes_the_backup_good_for_this_run_and_says_so():
    verdict = rp.judge({"files": 10}, {"files": 0}, accept_shrink=True)
    assert verdict["status"] == rp.GOOD and verdict["accepted"]
    assert "files fell from 10 to 0" in verdict["message"]


@pytest.mark.parametrize("threshold", [-0.1, 1, 1.5, "x", None])
def test_bad_thresholds_are_refused(threshold):
    with pytest.raises(rp.RetentionPolicyError, match="threshold"):
        rp.compare_figures({"a": 1}, {"a": 0}, threshold)


@pytest.mark.parametrize("min_good", [0, -1, "x"])
def test_bad_min_good_is_refused(min_good):
    with pytest.raises(rp.RetentionPolicyError, match="min_good"):
        rp.plan_retention([], keep_count=1, min_good=min_good)


def backups(statuses):
    return [{"name": f"b{i}", "status": s, "last": 1000 + i} for i, s in enumerate(statuses)]


def names(items):
    return [b["name"] for b in items]


def test_two_suspect_runs_after_two_good_ones_delete_nothing_with_retain_2():
    keep, delete = rp.plan_retention(backups(["good", "good", "suspect", "suspect"]), keep_count=2)
    assert names(keep) == ["b0", "b1", "b2", "b3"] and delete == []


def test_suspect_backups_do_not_count_as_good_with_min_good_1():
    keep, delete = rp.plan_retention(backups(["good", "good", "good", "suspect", "suspect"]), keep_count=1,
                                     min_good=1)
    assert names(keep) == ["b2", "b3", "b4"]
    assert names(delete) == ["b0", "b1"] and "beyond the newest 1 good" in delete[0]["reason"]


def test_min_good_overrides_a_smaller_keep_count_and_max_age():
    keep, delete = rp.plan_retention(backups(["good"] * 5), keep_count=1, max_age_seconds=1, min_good=2,
                                     now=10**9)
    assert names(keep) == ["b3", "b4"] and names(delete) == ["b0", "b1", "b2"]


def test_the_newest_good_backup_survives_even_behind_many_suspect_ones():
    keep, delete = rp.plan_retention(backups(["good", "good"] + ["suspect"] * 6), keep_count=1, min_good=1)
    assert "b1" in names(keep) and names(delete) == ["b0"]


def test_suspect_older_than_every_kept_good_and_failed_backups_go():
    keep, delete = rp.plan_retention(backups(["suspect", "good", "failed", "good", "good"]), keep_count=2)
    assert names(keep) == ["b3", "b4"]
    reasons = {b["name"]: b["reason"] for b in delete}
    assert reasons["b0"].startswith("suspect") and reasons["b2"].startswith("failed")
    assert reasons["b1"].startswith("beyond")


def test_no_good_backup_at_all_keeps_every_suspect_one():
    keep, delete = rp.plan_retention(backups(["suspect", "suspect", "suspect"]), keep_count=1)
    assert len(keep) == 3 and delete == []


def test_last_good_skips_suspect_and_failed():
    assert rp.last_good(backups(["good", "suspect", "failed"]))["name"] == "b0"
    assert rp.last_good(backups(["suspect"])) is None
