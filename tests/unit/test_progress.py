"""Progress file core: throttled atomic writes, rate and ETA, the operator's line, async job state."""
import json

import pytest
from ansible.module_utils import progress as pg


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_eta_and_throttled_writes(tmp_path):
    clock = FakeClock()
    path = tmp_path / "p.json"
    prog = pg.ProgressFile(str(path), "copy", total_bytes=1000, min_interval=5, clock=clock, wall=lambda: 1e9)
    assert pg.read_progress(str(path))["done_bytes"] == 0
    clock.now += 2
    prog.update(100)  # within min_interval: not written
    assert pg.read_progress(str(path))["done_bytes"] == 0
    clock.now += 8
    prog.update(250)  # 250 bytes in 10 s
    data = pg.read_progress(str(path))
    assert data["done_bytes"] == 250 and data["rate_bytes_per_second"] == 25.0
    assert data["eta_seconds"] == 30.0 and data["state"] == "running"
    assert pg.describe(data) == "copy, 250 B / 1000 B (25%), 25 B/s, about 30s left"
    prog.finish()
    data = pg.read_progress(str(path))
    assert data["state"] == "done" and data["eta_seconds"] is None
    assert pg.describe(data).endswith("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_unknown_total_and_failure_message(tmp_path):
    clock = FakeClock()
    prog = pg.ProgressFile(str(tmp_path / "p"), "s3 sync", clock=clock)
    clock.now += 4
    prog.advance(3 * 1024 * 1024)
    prog.finish(ok=False, message="403 Forbidden")
    line = pg.describe(pg.read_progress(str(tmp_path / "p")))
    assert line == "s3 sync, 3.0 MiB done, 768.0 KiB/s, failed: 403 Forbidden"


def test_stale_report_is_flagged():
    data = {"step": "dump", "state": "running", "done_bytes": 10, "total_bytes": None,
            "rate_bytes_per_second": None, "eta_seconds": None, "updated_at": 1000.0}
    assert "no report for 10m00s" in pg.describe(data, now=1600.0)
    assert pg.describe(None) == "waiting for the first progress report"


def test_reader_errors(tmp_path):
    assert pg.read_progress(str(tmp_path / "missing")) is None
    (tmp_path / "bad").write_text("{not json")
    with pytest.raises(pg.ProgressError, match="cannot read progress file"):
        pg.read_progress(str(tmp_path / "bad"))
    (tmp_path / "other").write_text(json.dumps({"state": "weird"}))
    with pytest.raises(pg.ProgressError, match="not a progress file"):
        pg.read_progress(str(tmp_path / "other"))
    with pytest.raises(pg.ProgressError, match="does not exist"):
        pg.ProgressFile(str(tmp_path / "no" / "dir"), "x")


def test_async_job_states(tmp_path):
    job = tmp_path / "j1"
    job.write_text(json.dumps({"started": 1, "finished": 0, "ansible_job_id": "j1"}))
    assert pg.async_job_finished(str(job)) is False
    job.write_text('{"started": 1, "fini')  # being rewritten
    assert pg.async_job_finished(str(job)) is False
    job.write_text(json.dumps({"changed": True, "rc": 0}))  # the module's final result
    assert pg.async_job_finished(str(job)) is True
    with pytest.raises(pg.ProgressError, match="not found"):
        pg.async_job_finished(str(tmp_path / "nope"))


def test_progress_file_is_private(tmp_path):
    from ansible.module_utils.progress import ProgressFile

    path = tmp_path / "progress.json"
    progress = ProgressFile(str(path), "copy", total_bytes=10)
    progress.finish()
    assert (path.stat().st_mode & 0o777) == 0o600
