"""Progress of the off-site sync against a real S3 API (moto_server on loopback, started by the tests).

Between the sync and moto runs a small TCP proxy (here, in the test): it can throttle what goes
upstream, so that the sync lasts long enough for progress lines, cut every connection once (a
transient network failure), or stop for good after some bytes (the server gone half way).
"""

import hashlib
import json
import os
import signal
import socket
import threading
import time

import pytest
from ansible.module_utils import btw_s3
from ansible.module_utils.progress import ProgressFile, read_progress

from tests.integration.test_btw_playbooks import run_playbook
from tests.lib import canary
from tests.lib.btw_servers import moto_s3  # noqa: F401  (fixture)
from tests.lib.ports import free_port

BUCKET = "offsite"
MIB = 1024 * 1024


class Proxy:
    """TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream_port.

    rate: bytes per second upstream (None: as fast as it goes); drop_after: byte counts at which
    every open connection is cut (new ones are accepted); stop_after: stop for good at that many
    bytes (connections cut, nothing listening any more).
    """

    def __init__(self, upstream_port, port=None, rate=None, drop_after=(), stop_after=None):
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.rate, self.drop_after, self.stop_after = rate, sorted(drop_after), stop_after
        self.sent = 0
        self.dropped = 0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.socks = set()
        self.threads = []
        self.t0 = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.1)
        self._spawn(self._accept)
        return self

    def _spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.socks.update((client, upstream))
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    self._account(len(data))
                    if self.stopped.is_set():
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _account(self, nbytes):
        with self.lock:
            if self.t0 is None:
                self.t0 = time.monotonic()  # the rate counts from the first byte
            self.sent += nbytes
            sent = self.sent
        if self.stop_after is not None and sent >= self.stop_after:
            self.stop()
            return
        if self.dropped < len(self.drop_after) and sent >= self.drop_after[self.dropped]:
            self.dropped += 1
            with self.lock:
                socks = list(self.socks)
            for sock in socks:
                self._close(sock)
            return
        if self.rate:
            ahead = sent / self.rate - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)

    def _close(self, sock):
        with self.lock:
            self.socks.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def stop(self):
        self.stopped.set()
        self.listener.close()
        with self.lock:
            socks = list(self.socks)
        for sock in socks:
            self._close(sock)


@pytest.fixture
def s3(moto_s3):  # noqa: F811
    moto_s3.client().create_bucket(Bucket=BUCKET)
    return moto_s3


@pytest.fixture
def proxies():
    started = []

    def make(*args, **kw):
        proxy = Proxy(*args, **kw).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_root(tmp_path, big=(), small=3):
    root = str(tmp_path / "root")
    for i, size in enumerate(big):
        write(os.path.join(root, "set1", f"big{i}.dat"), os.urandom(size))
    for i in range(small):
        write(os.path.join(root, "set2", f"small{i}.txt"), os.urandom(100 + i))
    return root


def local_bytes(root):
    return sum(st.st_size for st in btw_s3.local_files(root).values())


def recording_factory(states):
    """A real ProgressFile that writes every update (min_interval 0) and keeps each state written."""

    class Recording(ProgressFile):
        def __init__(self, path, step, total_bytes=None):
            super().__init__(path, step, total_bytes=total_bytes, min_interval=0)

        def _write(self, state, force=False, message=None):
            written = super()._write(state, force, message)
            if written:
                states.append(self.state(state, message))
            return written

    return Recording


def target(endpoint, **kw):
    kw.setdefault("backoff_base", 0.05)
    return btw_s3.S3Target(
        BUCKET, prefix="site1", endpoint_url=endpoint, access_key="testing",
        secret_key=canary.S3_SECRET_KEY, **kw
    )


def bucket_state(server, prefix="site1/"):
    client = server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(prefix) :]] = hashlib.sha256(body).hexdigest()
    return out


def local_state(root):
    return {rel: btw_s3.hash_file(os.path.join(root, rel))[0] for rel in btw_s3.local_files(root)}


# ---------------------------------------------------------------------------------------------
# The core


def test_progress_within_a_multipart_upload_and_done_equals_total(tmp_path, s3):
    root = make_root(tmp_path, big=[12 * MIB])
    total = local_bytes(root)
    states = []
    path = str(tmp_path / "s3.progress")
    summary = btw_s3.sync(
        root,
        target(s3.endpoint, multipart_threshold_mb=5, multipart_chunk_mb=5),
        progress_file=path,
        progress_factory=recording_factory(states),
    )
    assert summary["bytes_to_sync"] == total and summary["bytes_uploaded"] == total
    assert [s["step"] for s in states][0] == "S3 sync (comparing)"
    comparing = [s for s in states if s["step"] == "S3 sync (comparing)"]
    assert comparing[-1]["done_bytes"] == total and comparing[-1]["total_bytes"] is None  # every file hashed
    sending = [s for s in states if s["step"] == "S3 sync"]
    assert {s["total_bytes"] for s in sending} == {total}
    # reported within the big file (3 parts of 5, 5, 2 MiB), not only at file ends
    within = [s["done_bytes"] for s in sending if 0 < s["done_bytes"] < 12 * MIB]
    assert len(within) >= 3 and len(set(within)) >= 3
    dones = [s["done_bytes"] for s in sending]
    assert max(dones) <= total
    final = read_progress(path)
    assert final["state"] == "done" and final["done_bytes"] == final["total_bytes"] == total
    assert final["rate_bytes_per_second"] > 0

    # nothing left to send: total 0, done
    states.clear()
    again = btw_s3.sync(
        root, target(s3.endpoint), progress_file=path, progress_factory=recording_factory(states)
    )
    assert again["uploaded"] == []
    final = read_progress(path)
    assert final["state"] == "done" and final["done_bytes"] == final["total_bytes"] == 0


def test_objects_already_in_the_bucket_come_off_the_total(tmp_path, s3):
    root = make_root(tmp_path, big=[2 * MIB])
    btw_s3.sync(root, target(s3.endpoint))
    btw_s3.reset(root, BUCKET, "site1", s3.endpoint)  # the journal forgets; the bucket has it all
    write(os.path.join(root, "set3", "new.dat"), os.urandom(3000))
    path = str(tmp_path / "s3.progress")
    states = []
    summary = btw_s3.sync(
        root, target(s3.endpoint), progress_file=path, progress_factory=recording_factory(states)
    )
    assert summary["uploaded"] == ["set3/new.dat"] and len(summary["confirmed_without_upload"]) == 4
    sending = [s for s in states if s["step"] == "S3 sync"]
    assert sending[0]["total_bytes"] == local_bytes(root)  # what the journal comparison found
    final = read_progress(path)
    assert final["state"] == "done" and final["done_bytes"] == final["total_bytes"] == 3000


def test_retried_upload_is_not_counted_twice(tmp_path, s3, proxies):
    root = make_root(tmp_path, big=[4 * MIB], small=0)
    # the network fails half way through the file, and again during the second attempt (botocore's
    # own retries are off), so S3Target.call uploads the file three times
    proxy = proxies(s3.port, drop_after=(2 * MIB, 3 * MIB))
    path = str(tmp_path / "s3.progress")
    states = []
    t = target(proxy.endpoint, retries=3, backoff_base=0.01)
    summary = btw_s3.sync(root, t, progress_file=path, progress_factory=recording_factory(states))
    assert proxy.dropped == 2 and t.attempts_retried == 2
    assert summary["uploaded"] == ["set1/big0.dat"]
    dones = [s["done_bytes"] for s in states if s["step"] == "S3 sync"]
    assert max(dones) <= 4 * MIB  # the first attempt's bytes were not added to the second's
    assert any(b < a for a, b in zip(dones, dones[1:]))  # the file started again from 0
    final = read_progress(path)
    assert final["state"] == "done" and final["done_bytes"] == final["total_bytes"] == 4 * MIB
    assert bucket_state(s3) == local_state(root)


def test_failure_is_reported_and_bad_progress_path_refused_first(tmp_path, s3):
    root = make_root(tmp_path)
    with pytest.raises(btw_s3.BtwS3Error, match="cannot write the progress file"):
        btw_s3.sync(root, target(s3.endpoint), progress_file=str(tmp_path / "missing" / "p"))
    assert btw_s3.journal_paths(root) == [] and not os.path.exists(os.path.join(root, ".btw-sync"))
    path = str(tmp_path / "s3.progress")
    with btw_s3.SyncLock(root):
        with pytest.raises(btw_s3.BtwS3Error, match="another sync"):
            btw_s3.sync(root, target(s3.endpoint), progress_file=path)
    final = read_progress(path)
    assert final["state"] == "failed" and "another sync" in final["message"]
    os.unlink(path)
    summary = btw_s3.sync(root, target(s3.endpoint), check_mode=True, progress_file=path)
    assert summary["bytes_to_sync"] == local_bytes(root)
    assert not os.path.exists(path)  # check mode writes nothing


def test_sigterm_cancels_the_sync_cleanly(tmp_path, s3):
    root = make_root(tmp_path)
    path = str(tmp_path / "s3.progress")
    before = signal.getsignal(signal.SIGTERM)

    def after_file(rel):  # the cancel of roles/backup_progress arrives after the first file
        if rel == "set2/small0.txt":
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(btw_s3.BtwS3Error, match=r"sync cancelled \(received SIGTERM"):
        btw_s3.sync(root, target(s3.endpoint), progress=after_file, progress_file=path)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    final = read_progress(path)
    assert final["state"] == "failed" and "sync cancelled" in final["message"]
    with btw_s3.SyncLock(root):  # released
        pass
    pending = [p["path"] for p in btw_s3.list_pending(root, BUCKET, "site1", s3.endpoint)["pending"]]
    assert pending == ["set2/small1.txt", "set2/small2.txt"]
    assert btw_s3.sync(root, target(s3.endpoint))["uploaded"] == pending


# ---------------------------------------------------------------------------------------------
# The playbook: async job followed by roles/backup_progress


def sync_play(tmp_path, monkeypatch, root, endpoint, **extra):
    # TMPDIR: where ansible.builtin.tempfile makes the private progress directory
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("ANSIBLE_ASYNC_DIR", str(tmp_path / "async"))
    os.makedirs(tmp_path / "tmp", exist_ok=True)
    host_vars = {
        "btw_backup_root": root,
        "btw_backup_s3_bucket": BUCKET,
        "btw_backup_s3_prefix": "site1",
        "btw_backup_s3_endpoint_url": endpoint,
        "btw_backup_s3_access_key": "testing",
        "btw_backup_s3_secret_key": canary.S3_SECRET_KEY,
        "btw_backup_s3_multipart_threshold_mb": 5,
        "btw_backup_s3_backoff_base": 0.01,
        "btw_backup_s3_retries": 2,
        "backup_progress_interval": 1,
    }
    host_vars.update(extra)
    rc, runs, out = run_playbook(tmp_path, "offsite_sync.yml", host_vars)
    runs_before = len(list(tmp_path.glob("playbook-output-*.json")))
    with open(tmp_path / f"playbook-output-{runs_before + 1}.json", "w") as f:  # for a failing test's reader
        json.dump(out, f, indent=1)
    return rc, runs, task_results(out)


def task_results(out):
    """{task name without its role prefix: result on localhost} of a json-callback run."""
    results = {}
    for play in out["plays"]:
        for task in play["tasks"]:
            if "localhost" in task["hosts"]:
                results[task["task"]["name"].split(" : ", 1)[-1]] = task["hosts"]["localhost"]
    return results


def progress_of(results):
    return [r["progress"] for r in results["Progress of S3 sync"]["results"] if r.get("progress")]


def test_playbook_prints_progress_lines_then_done_equals_total(tmp_path, monkeypatch, s3, proxies):
    root = make_root(tmp_path, big=[8 * MIB, 4 * MIB])
    total = local_bytes(root)
    proxy = proxies(s3.port, rate=2 * MIB)  # ~6 s of upload: several lines at a 1 s interval
    rc, runs, results = sync_play(tmp_path, monkeypatch, root, proxy.endpoint)
    assert rc == 0, results
    assert runs[0]["result"] == "ok" and runs[0]["size_bytes"] == total
    lines = progress_of(results)
    running = [p for p in lines if p["state"] == "running" and p["step"] == "S3 sync"]
    assert len(running) >= 2, lines
    assert all(p["total_bytes"] == total and p["done_bytes"] <= total for p in running)
    assert any(0 < p["done_bytes"] < total for p in running)
    assert lines[-1]["state"] == "done" and lines[-1]["done_bytes"] == lines[-1]["total_bytes"] == total
    msgs = [r["msg"] for r in results["Progress of S3 sync"]["results"]]
    assert any("/s" in m and "left" in m for m in msgs), msgs  # rate and time left
    assert "(100%)" in msgs[-1] and msgs[-1].endswith("done")
    assert os.listdir(tmp_path / "tmp") == []  # the private progress directory is gone
    assert bucket_state(s3) == local_state(root)


def test_playbook_fails_when_the_server_stops_half_way_and_the_next_run_resumes(
    tmp_path, monkeypatch, s3, proxies
):
    root = make_root(tmp_path, big=[3 * MIB, 3 * MIB, 3 * MIB, 3 * MIB])
    total = local_bytes(root)
    proxy = proxies(s3.port, rate=4 * MIB, stop_after=total // 2)  # the endpoint is gone half way
    rc, runs, results = sync_play(tmp_path, monkeypatch, root, proxy.endpoint)
    assert proxy.stopped.is_set()
    assert rc != 0
    assert runs[0]["result"] == "failed" and "unreachable" in runs[0]["details"]
    lines = progress_of(results)
    assert lines[-1]["state"] == "failed" and "unreachable" in lines[-1]["message"]
    assert 0 < lines[-1]["done_bytes"] < total
    assert os.listdir(tmp_path / "tmp") == []
    pending = {p["path"] for p in btw_s3.list_pending(root, BUCKET, "site1", proxy.endpoint)["pending"]}
    assert pending and len(pending) < len(btw_s3.local_files(root))  # some done, some left: resumable
    assert f"{len(pending)} file(s) pending" in runs[0]["details"]
    done_before = set(btw_s3.local_files(root)) - pending

    proxies(s3.port, port=proxy.port)  # the endpoint is back (same address: same journal)
    rc, runs, results = sync_play(tmp_path, monkeypatch, root, proxy.endpoint)
    assert rc == 0 and runs[0]["result"] == "ok"
    result = results["Result of S3 sync"]["ansible_facts"]["backup_progress_result"]  # the last poll's
    assert set(result["uploaded"]) | set(result["confirmed_without_upload"]) == pending
    assert not set(result["uploaded"]) & done_before  # what was confirmed is not sent again
    assert btw_s3.list_pending(root, BUCKET, "site1", proxy.endpoint)["pending"] == []
    assert bucket_state(s3) == local_state(root)
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_playbook_timeout_cancels_the_sync_cleanly_and_the_next_run_resumes(
    tmp_path, monkeypatch, s3, proxies
):
    root = make_root(tmp_path, big=[2 * MIB] * 6)
    proxy = proxies(s3.port, rate=1 * MIB)  # about 12 s to send: well past the 3 s timeout
    rc, runs, results = sync_play(tmp_path, monkeypatch, root, proxy.endpoint, btw_backup_offsite_timeout=3)
    assert rc != 0
    error = runs[0]["details"]["error"]
    assert runs[0]["result"] == "failed" and "still running after 3 s" in error
    # the poll sent SIGTERM: boto3's transfers were cancelled, the journal closed, the lock released
    assert "SIGTERM" in error and "its cleanup ran" in error and "sync cancelled" in error, error
    assert os.listdir(tmp_path / "tmp") == []
    with btw_s3.SyncLock(root):
        pass
    pending = {p["path"] for p in btw_s3.list_pending(root, BUCKET, "site1", proxy.endpoint)["pending"]}
    assert pending and len(pending) < len(btw_s3.local_files(root))  # some done, some left

    proxy.rate = None
    rc, runs, results = sync_play(tmp_path, monkeypatch, root, proxy.endpoint)
    assert rc == 0 and runs[0]["result"] == "ok"
    result = results["Result of S3 sync"]["ansible_facts"]["backup_progress_result"]  # the last poll's
    assert set(result["uploaded"]) | set(result["confirmed_without_upload"]) == pending
    assert bucket_state(s3) == local_state(root)
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
