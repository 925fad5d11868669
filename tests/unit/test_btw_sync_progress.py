"""Progress accounting of the off-site sync (btw_s3.SyncProgress) with the real ProgressFile."""

import os
import shutil
import threading

import pytest
from ansible.module_utils import btw_s3
from ansible.module_utils.progress import ProgressFile, read_progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def factory(clock):
    """ProgressFile writing every update (min_interval 0) on an injected clock."""

    def make(path, step, total_bytes=None):
        return ProgressFile(path, step, total_bytes=total_bytes, min_interval=0, clock=clock)

    return make


def test_phases_total_done_and_skipped_files(tmp_path):
    path = str(tmp_path / "s3.progress")
    clock = Clock()
    report = btw_s3.SyncProgress(path, factory(clock))
    report.phase("S3 sync (comparing)", strict=True)
    report.hashed(300)
    report.hashed(700)
    state = read_progress(path)
    assert (state["step"], state["done_bytes"], state["total_bytes"]) == ("S3 sync (comparing)", 1000, None)

    report.begin(1000 + 5000 + 200)  # three files to send: 1000, 5000, 200
    state = read_progress(path)
    assert (state["step"], state["done_bytes"], state["total_bytes"]) == ("S3 sync", 0, 6200)
    report.attempt(1000)
    report.add(400)
    clock.now += 2
    report.add(600)
    report.sent(1000)
    state = read_progress(path)
    assert state["done_bytes"] == 1000 and state["rate_bytes_per_second"] == 500.0
    assert state["eta_seconds"] == 10.4  # 5200 bytes left at 500 B/s
    report.skipped(5000)  # already in the bucket: nothing to send
    assert read_progress(path)["total_bytes"] == 1200
    report.attempt(200)
    report.add(200)
    report.sent(200)
    report.finish()
    state = read_progress(path)
    assert state["state"] == "done" and state["done_bytes"] == state["total_bytes"] == 1200


def test_a_retried_attempt_starts_its_file_again(tmp_path):
    path = str(tmp_path / "s3.progress")
    report = btw_s3.SyncProgress(path, factory(Clock()))
    report.begin(3000)
    report.attempt(1000)
    report.add(700)
    assert report.done == 700
    report.attempt(1000)  # the upload failed and is tried again: its 700 bytes do not count twice
    assert report.done == 0 and read_progress(path)["done_bytes"] == 0
    report.add(900)
    report.add(-300)  # boto3 rewinds a part to resend it
    assert report.done == 600
    report.add(-5000)
    assert report.done == 0  # never below what the completed files sent
    report.add(5000)
    assert report.done == 1000  # never more than the file
    report.sent(1000)
    report.attempt(2000)
    report.add(500)
    report.finish(ok=False, message="uploading b: S3 endpoint unreachable")
    state = read_progress(path)
    assert state["state"] == "failed" and state["done_bytes"] == 1500 and state["total_bytes"] == 3000
    assert state["message"] == "uploading b: S3 endpoint unreachable"


def test_callbacks_from_threads_add_up(tmp_path):
    report = btw_s3.SyncProgress(str(tmp_path / "p"), factory(Clock()))
    report.begin(4 * 2000)
    report.attempt(4 * 2000)

    def chunks():
        for _ in range(2000):
            report.add(1)

    threads = [threading.Thread(target=chunks) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert report.done == 8000
    report.sent(8000)
    report.finish()
    assert read_progress(str(tmp_path / "p"))["done_bytes"] == 8000


def test_without_a_path_nothing_is_written(tmp_path):
    report = btw_s3.SyncProgress(None)
    report.phase("S3 sync (comparing)", strict=True)
    report.begin(10)
    report.attempt(10)
    report.add(10)
    report.sent(10)
    report.finish()
    assert report.done == 10 and os.listdir(tmp_path) == []


def test_unwritable_progress_file_refused_at_start_then_ignored(tmp_path):
    report = btw_s3.SyncProgress(str(tmp_path / "missing" / "p"))
    with pytest.raises(btw_s3.BtwS3Error, match="cannot write the progress file"):
        report.phase("S3 sync (comparing)", strict=True)
    directory = tmp_path / "progress"
    directory.mkdir()
    report = btw_s3.SyncProgress(str(directory / "p"), factory(Clock()))
    report.phase("S3 sync (comparing)", strict=True)
    report.begin(100)
    shutil.rmtree(directory)  # /tmp cleaned or full during the sync: the sync goes on
    report.attempt(100)
    report.add(100)
    report.sent(100)
    report.finish()
    assert report.done == 100


def test_sync_with_nothing_to_send_ends_done_with_total_zero(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    target = btw_s3.S3Target("b", client=object())  # nothing to send: the client is never used
    path = str(tmp_path / "s3.progress")
    summary = btw_s3.sync(str(root), target, progress_file=path)
    assert summary["to_sync"] == [] and summary["bytes_to_sync"] == 0
    state = read_progress(path)
    assert state["state"] == "done" and state["step"] == "S3 sync" and state["total_bytes"] == 0


def test_sync_failure_before_sending_is_reported_failed(tmp_path):
    path = str(tmp_path / "s3.progress")
    target = btw_s3.S3Target("b", client=object())
    with pytest.raises(btw_s3.BtwS3Error, match="must be an existing absolute directory"):
        btw_s3.sync(str(tmp_path / "nope"), target, progress_file=path)
    state = read_progress(path)
    assert state["state"] == "failed" and "must be an existing absolute directory" in state["message"]
