"""Prometheus textfile metrics core: merge rules, atomic write, and promtool's verdict on the file."""
import os
import shutil
import subprocess
import threading

import pytest
from ansible.module_utils import backup_metrics as bm

PROMTOOL = shutil.which("promtool")


def promtool_check(text):
    if not PROMTOOL:
        pytest.skip("promtool not installed (Debian package prometheus)")
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True, capture_output=True,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def ok_run(strategy="fs_backup", host="h1", **extra):
    run = {"strategy": strategy, "host": host, "result": "ok", "size_bytes": 2048,
           "duration_seconds": 3.5, "location": "/srv/backup/x"}
    run.update(extra)
    return run


def test_success_writes_every_metric_and_passes_promtool(tmp_path):
    changed, before, after, path = bm.record(str(tmp_path), [ok_run(lock_seconds=0.25)], now=1700000000)
    assert changed and before == ""
    assert path == str(tmp_path / "backup_toolkit.prom")
    assert read(path) == after
    state = bm.parse(after)
    assert state[("fs_backup", "h1")] == {
        "last_success_timestamp_seconds": 1700000000, "last_run_timestamp_seconds": 1700000000,
        "last_result": 1, "last_suspect": 0, "last_duration_seconds": 3.5, "last_size_bytes": 2048,
        "last_lock_seconds": 0.25}
    rc, out = promtool_check(after)
    assert rc == 0, out
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_other_strategies_are_kept_and_failure_keeps_last_success(tmp_path):
    bm.record(str(tmp_path), [ok_run("db_backup", "wiki", downtime_seconds=0)], now=1000)
    bm.record(str(tmp_path), [ok_run("fs_backup", "h1")], now=2000)
    _, _, after, path = bm.record(
        str(tmp_path), [{"strategy": "db_backup", "set": "wiki", "result": "failed", "duration_seconds": 9}],
        now=3000)
    state = bm.parse(read(path))
    assert state[("fs_backup", "h1")]["last_success_timestamp_seconds"] == 2000
    db = state[("db_backup", "wiki")]
    assert db["last_result"] == 0
    assert db["last_run_timestamp_seconds"] == 3000
    assert db["last_duration_seconds"] == 9
    assert db["last_success_timestamp_seconds"] == 1000  # previous good backup still visible
    assert db["last_size_bytes"] == 2048
    rc, out = promtool_check(after)
    assert rc == 0, out


def test_label_values_are_escaped_and_round_trip(tmp_path):
    weird = 'vol "a"\\b\nc'
    _, _, after, _ = bm.record(str(tmp_path), [ok_run(set=weird)], now=5)
    assert bm.parse(after)[("fs_backup", weird)]["last_size_bytes"] == 2048
    rc, out = promtool_check(after)
    assert rc == 0, out


def test_foreign_lines_in_file_are_not_fatal(tmp_path):
    (tmp_path / "backup_toolkit.prom").write_text("# a comment\nother_metric 1\n")
    _, _, after, _ = bm.record(str(tmp_path), [ok_run()], now=5)
    assert "other_metric" not in after
    assert ("fs_backup", "h1") in bm.parse(after)


def test_check_mode_writes_nothing(tmp_path):
    changed, _, after, path = bm.record(str(tmp_path), [ok_run()], now=5, check_mode=True)
    assert changed and after
    assert os.listdir(tmp_path) == []


def test_same_run_twice_is_unchanged(tmp_path):
    bm.record(str(tmp_path), [ok_run(timestamp=42)])
    changed, before, after, _ = bm.record(str(tmp_path), [ok_run(timestamp=42)])
    assert not changed and before == after


def test_no_temp_files_left_and_failed_write_keeps_old_file(tmp_path, monkeypatch):
    bm.record(str(tmp_path), [ok_run()], now=1)
    good = read(tmp_path / "backup_toolkit.prom")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bm.os, "replace", broken_replace)
    with pytest.raises(bm.MetricsError, match="No space left"):
        bm.record(str(tmp_path), [ok_run(size_bytes=1)], now=2)
    assert read(tmp_path / "backup_toolkit.prom") == good
    assert sorted(os.listdir(tmp_path)) == [".backup_toolkit.prom.lock", "backup_toolkit.prom"]


def test_concurrent_writers_lose_nothing(tmp_path):
    errors = []

    def worker(i):
        try:
            bm.record(str(tmp_path), [ok_run(f"strategy{i}", "h")], now=i + 1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(bm.parse(read(tmp_path / "backup_toolkit.prom"))) == 8


@pytest.mark.parametrize("run, message", [
    ({"result": "ok"}, "strategy is required"),
    ({"strategy": "x", "result": "maybe"}, "must be one of ok, suspect, failed"),
    ({"strategy": "x", "result": "ok", "size_bytes": "lots"}, "size_bytes must be a number"),
    ({"strategy": "x", "result": "ok", "duration_seconds": -1}, "finite number >= 0"),
    ("fs_backup", "must be a mapping"),
])
def test_bad_runs_are_refused_before_writing(tmp_path, run, message):
    with pytest.raises(bm.MetricsError, match=message):
        bm.record(str(tmp_path), [run])
    assert not (tmp_path / "backup_toolkit.prom").exists()


def test_missing_collector_dir_is_a_clear_error(tmp_path):
    with pytest.raises(bm.MetricsError, match="does not exist"):
        bm.record(str(tmp_path / "nope"), [ok_run()])
    with pytest.raises(bm.MetricsError, match="ending in .prom"):
        bm.record(str(tmp_path), [ok_run()], file_name="../x.prom")


# -- the shared exposition writer (also used for seafile_backup.prom) ---------------------------
def test_render_family_help_type_escaping_and_values():
    lines = bm.render_family("x_value", "Help with \\ and\nnewline.", [
        ((("a", 'q"\\\n'), ("b", "2")), 3),
        ({"a": "v"}, 0.25),
        ((), None),
        ((), True),
        ((), float("inf")),
        ((), 7.0),
    ])
    assert lines == [
        "# HELP x_value Help with \\\\ and\\nnewline.",
        "# TYPE x_value gauge",
        'x_value{a="q\\"\\\\\\n",b="2"} 3',
        'x_value{a="v"} 0.25',
        "x_value NaN",
        "x_value 1",
        "x_value +Inf",
        "x_value 7.0",
    ]
    assert bm.unescape_label(bm.escape_label('q"\\\n')) == 'q"\\\n'
    rc, out = promtool_check(bm.render_text([lines[:4]]))
    assert rc == 0, out


@pytest.mark.parametrize("name, labels, message", [
    ("bad-name", (), "invalid metric name"),
    ("ok_name", (("bad-label", "v"),), "invalid label name"),
    ("ok_name", (("__reserved", "v"),), "invalid label name"),
])
def test_render_family_refuses_bad_names(name, labels, message):
    with pytest.raises(bm.MetricsError, match=message):
        bm.render_family(name, "help", [(labels, 1)])


def test_write_textfile_is_0644_under_a_strict_umask_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.prom"
    old = os.umask(0o077)
    try:
        bm.write_textfile(str(path), "x 1\n")
    finally:
        os.umask(old)
    assert read(path) == "x 1\n" and oct(os.stat(path).st_mode & 0o777) == "0o644"

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(bm.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        bm.write_textfile(str(path), "x 2\n")
    assert read(path) == "x 1\n" and os.listdir(tmp_path) == ["x.prom"]


# -- strategy labels renamed to the run_backup strategy names -----------------------------------
def test_series_of_renamed_strategy_labels_move_to_the_current_name(tmp_path):
    old = bm.render({
        ("btw_fs", "etc"): {"last_success_timestamp_seconds": 100, "last_run_timestamp_seconds": 100,
                            "last_result": 1, "last_duration_seconds": 2, "last_size_bytes": 10},
        ("hot", "fc1"): {"last_success_timestamp_seconds": 50, "last_run_timestamp_seconds": 300,
                         "last_result": 0, "last_duration_seconds": 1, "last_size_bytes": 5},
        ("pause", "fc1"): {"last_success_timestamp_seconds": 200, "last_run_timestamp_seconds": 200,
                           "last_result": 1, "last_duration_seconds": 4, "last_size_bytes": 7,
                           "last_lock_seconds": 0.5},
        ("seafile_replication", "bk"): {"last_run_timestamp_seconds": 100, "last_result": 0,
                                        "last_duration_seconds": 3},
    })
    (tmp_path / "backup_toolkit.prom").write_text(old)
    _, _, after, _ = bm.record(str(tmp_path), [ok_run("db_backup", "wiki")], now=400)
    state = bm.parse(after)
    assert sorted(state) == [("db_backup", "wiki"), ("fcrepo_backup", "fc1"), ("fs_backup", "etc"),
                             ("seafile_backup_server", "bk")]
    assert state[("fs_backup", "etc")]["last_success_timestamp_seconds"] == 100
    # hot (failed at 300) and pause (ok at 200) were two labels of one fcrepo backup: the last run's
    # result and time, the last success's time and figures
    assert state[("fcrepo_backup", "fc1")] == {
        "last_run_timestamp_seconds": 300, "last_result": 0, "last_duration_seconds": 1,
        "last_success_timestamp_seconds": 200, "last_size_bytes": 7, "last_lock_seconds": 0.5}
    rc, out = promtool_check(after)
    assert rc == 0, out
    # a run under the current name continues the migrated series
    _, _, again, _ = bm.record(str(tmp_path), [ok_run("fs_backup", "etc")], now=500)
    assert bm.parse(again)[("fs_backup", "etc")]["last_success_timestamp_seconds"] == 500
    assert "btw_fs" not in again


def test_a_suspect_run_is_not_a_success_and_says_suspect(tmp_path):
    bm.record(str(tmp_path), [ok_run("fcrepo_backup", "repo")], now=1000)
    _, _, after, path = bm.record(
        str(tmp_path), [{"strategy": "fcrepo_backup", "set": "repo", "result": "suspect", "size_bytes": 1}],
        now=2000)
    series = bm.parse(read(path))[("fcrepo_backup", "repo")]
    assert series["last_suspect"] == 1 and series["last_result"] == 0
    assert series["last_success_timestamp_seconds"] == 1000 and series["last_size_bytes"] == 2048
    assert 'backup_last_suspect{strategy="fcrepo_backup",set="repo"} 1' in after
    bm.record(str(tmp_path), [ok_run("fcrepo_backup", "repo")], now=3000)
    assert bm.parse(read(path))[("fcrepo_backup", "repo")]["last_suspect"] == 0
