"""The off-site sync against a real S3 API (moto_server on loopback, started by the tests)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from ansible.module_utils import btw_s3

from tests.lib import canary
from tests.lib.btw_servers import MotoS3, moto_s3  # noqa: F401  (fixture)

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "offsite"


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_root(tmp_path, files=5):
    root = tmp_path / "root"
    for i in range(files):
        write(str(root / "set1" / f"file{i}.dat"), os.urandom(1000 + i))
    write(str(root / "set2" / "notes.dat"), b"a")
    return str(root)


def target(server, **kw):
    kw.setdefault("backoff_base", 0.05)
    return btw_s3.S3Target(
        BUCKET, prefix="site1", endpoint_url=server.endpoint, access_key="testing",
        secret_key=canary.S3_SECRET_KEY, **kw
    )


def bucket_state(server, prefix="site1/"):
    """{relpath: sha256 of the object's bytes as downloaded}, and the SSE of each object."""
    client = server.client()
    out, sse = {}, {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])
            rel = obj["Key"][len(prefix) :]
            out[rel] = hashlib.sha256(body["Body"].read()).hexdigest()
            sse[rel] = body.get("ServerSideEncryption")
    return out, sse


def local_state(root):
    return {rel: btw_s3.hash_file(os.path.join(root, rel))[0] for rel in btw_s3.local_files(root)}


@pytest.fixture
def s3(moto_s3):  # noqa: F811
    moto_s3.client().create_bucket(Bucket=BUCKET)
    return moto_s3


def test_sync_uploads_everything_encrypted_then_nothing(tmp_path, s3):
    root = make_root(tmp_path)
    summary = btw_s3.sync(root, target(s3))
    assert sorted(summary["uploaded"]) == sorted(btw_s3.local_files(root))
    remote, sse = bucket_state(s3)
    assert remote == local_state(root)
    assert set(sse.values()) == {"AES256"}
    assert btw_s3.list_pending(root, BUCKET, "site1", s3.endpoint)["pending"] == []
    again = btw_s3.sync(root, target(s3))
    assert again["uploaded"] == [] and again["unchanged"] == len(remote)


def test_same_size_same_mtime_change_is_detected_and_synced(tmp_path, s3):
    root = make_root(tmp_path)
    btw_s3.sync(root, target(s3))
    path = os.path.join(root, "set2", "notes.dat")
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b"b")  # "a" -> "b": same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    pending = btw_s3.list_pending(root, BUCKET, "site1", s3.endpoint)["pending"]
    assert pending == [{"path": "set2/notes.dat", "reason": "content changed since the last sync"}]
    summary = btw_s3.sync(root, target(s3))
    assert summary["uploaded"] == ["set2/notes.dat"]
    assert bucket_state(s3)[0] == local_state(root)


SYNC_SCRIPT = """
import ansible.module_utils
ansible.module_utils.__path__.append({mu!r})
from ansible.module_utils import btw_s3
t = btw_s3.S3Target({bucket!r}, prefix="site1", endpoint_url={endpoint!r}, access_key="testing",
                    secret_key={secret!r}, multipart_threshold_mb=5, multipart_chunk_mb=5)
btw_s3.sync({root!r}, t)
"""


def test_sigkill_half_way_then_next_run_finishes(tmp_path, s3):
    root = make_root(tmp_path, files=30)
    write(os.path.join(root, "set1", "file15.big"), os.urandom(16 * 1024 * 1024))  # multipart (4 parts)
    script = SYNC_SCRIPT.format(
        mu=os.path.join(TOP, "plugins", "module_utils"), bucket=BUCKET, endpoint=s3.endpoint, root=root,
        secret=canary.S3_SECRET_KEY,
    )
    journal = os.path.join(
        root, ".btw-sync", f"journal-{btw_s3.target_id(BUCKET, 'site1', s3.endpoint)}.jsonl"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    killed = False
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            # half way: the big file's multipart upload started and its id recorded, not finished.
            # (Killed between CreateMultipartUpload and that record, the upload is found by its key
            # and its Initiated time, which moto does not give: it answers 2010-11-10 for all.)
            if os.path.exists(journal) and (b'"op":"multipart","path":"set1/file15.big"'
                                             in open(journal, "rb").read()):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait()
    assert killed, "the sync finished before it could be interrupted"
    lines = [json.loads(line) for line in open(journal, "rb").read().splitlines() if line.strip()]
    done = {e["path"] for e in lines if e["op"] == "done"}
    assert "set1/file15.big" not in done  # truthful: not counted as synced
    pending = {
        p["path"]: p["reason"] for p in btw_s3.list_pending(root, BUCKET, "site1", s3.endpoint)["pending"]
    }
    assert pending["set1/file15.big"] == "interrupted upload"
    assert len(pending) == len(btw_s3.local_files(root)) - len(done)
    with pytest.raises(btw_s3.BtwS3Error, match="refusing to reset"):
        btw_s3.reset(root, BUCKET, "site1", s3.endpoint)

    summary = btw_s3.sync(root, target(s3, multipart_threshold_mb=5, multipart_chunk_mb=5))
    assert "set1/file15.big" in summary["uploaded"]
    assert summary["pending_after"] == []
    remote, _sse = bucket_state(s3)
    assert remote == local_state(root)  # bucket matches local files by checksum
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


CRASH_SCRIPT = """
import os
import ansible.module_utils
ansible.module_utils.__path__.append({mu!r})
from ansible.module_utils import btw_s3
def crash(self, nbytes):  # the process dies once the multipart upload has started sending
    os._exit(9)
btw_s3.SyncProgress.add = crash
t = btw_s3.S3Target({bucket!r}, prefix="", endpoint_url={endpoint!r}, access_key="testing",
                    secret_key={secret!r}, multipart_threshold_mb=5, multipart_chunk_mb=5)
btw_s3.sync({root!r}, t)
"""


def test_empty_prefix_aborts_only_the_multipart_uploads_this_root_left(tmp_path, s3):
    """With the default empty prefix the listing holds every writer's uploads: only ours go."""
    root = str(tmp_path / "root")
    write(os.path.join(root, "set1", "big.tar"), os.urandom(6 * 1024 * 1024))  # 2 parts
    client = s3.client()
    foreign = client.create_multipart_upload(Bucket=BUCKET, Key="other-writer/upload.bin")["UploadId"]
    script = CRASH_SCRIPT.format(
        mu=os.path.join(TOP, "plugins", "module_utils"), bucket=BUCKET, endpoint=s3.endpoint, root=root,
        secret=canary.S3_SECRET_KEY,
    )
    crashed = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert crashed.returncode == 9
    left = {u["Key"]: u["UploadId"] for u in client.list_multipart_uploads(Bucket=BUCKET)["Uploads"]}
    assert set(left) == {"other-writer/upload.bin", "set1/big.tar"}  # ours interrupted mid-way

    summary = btw_s3.sync(root, btw_s3.S3Target(BUCKET, endpoint_url=s3.endpoint, access_key="testing",
                                                secret_key=canary.S3_SECRET_KEY, backoff_base=0.05))
    assert summary["aborted_multipart"] == ["set1/big.tar"] and summary["other_multipart_left"] == 1
    assert summary["uploaded"] == ["set1/big.tar"]
    after = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in after] == [("other-writer/upload.bin", foreign)]


def test_reset_then_sync_confirms_without_uploading(tmp_path, s3):
    root = make_root(tmp_path)
    with pytest.raises(btw_s3.BtwS3Error, match="refusing to reset.*never synced"):
        btw_s3.reset(root, BUCKET, "site1", s3.endpoint)
    btw_s3.sync(root, target(s3))
    changed, details = btw_s3.reset(root, BUCKET, "site1", s3.endpoint)
    assert changed and details["entries_removed"] > 0
    assert os.path.getsize(details["journal"]) == 0
    # an empty journal knows nothing: everything is pending again until the bucket confirms it
    assert len(btw_s3.list_pending(root, BUCKET, "site1", s3.endpoint)["pending"]) == 6
    summary = btw_s3.sync(root, target(s3))
    assert summary["uploaded"] == []
    assert sorted(summary["confirmed_without_upload"]) == sorted(btw_s3.local_files(root))


def test_two_syncs_cannot_run_at_once(tmp_path, s3):
    root = make_root(tmp_path)
    with btw_s3.SyncLock(root):
        with pytest.raises(btw_s3.BtwS3Error, match="another sync .* is running"):
            btw_s3.sync(root, target(s3))


def test_check_mode_writes_nothing_and_still_sees_a_running_sync(tmp_path, s3):
    root = make_root(tmp_path)
    summary = btw_s3.sync(root, target(s3), check_mode=True)
    assert sorted(summary["to_sync"]) == sorted(btw_s3.local_files(root))
    assert not os.path.exists(os.path.join(root, btw_s3.STATE_DIR))
    assert bucket_state(s3)[0] == {}
    btw_s3.sync(root, target(s3))
    with btw_s3.SyncLock(root):
        with pytest.raises(btw_s3.BtwS3Error, match="another sync .* is running"):
            btw_s3.sync(root, target(s3), check_mode=True)


def test_one_request_per_attempt(tmp_path):
    """botocore's own retries are off: btw_backup_s3_retries counts the requests actually sent."""
    from tests.lib.ports import free_port

    t = btw_s3.S3Target(BUCKET, endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="x",
                        secret_key=canary.canary("s3-secret-unused"),
                        retries=2, backoff_base=0.01, connect_timeout=1)
    sent = []
    t.client.meta.events.register("before-send", lambda **kw: sent.append(kw["request"].url))
    with pytest.raises(btw_s3.BtwS3Error, match="unreachable after 2 attempt"):
        btw_s3.sync(make_root(tmp_path), t)
    assert len(sent) == 2, sent


def test_torn_last_journal_line_is_ignored_and_cut(tmp_path, s3):
    root = make_root(tmp_path)
    btw_s3.sync(root, target(s3))
    journal = btw_s3.journal_paths(root)[0]
    with open(journal, "ab") as f:
        f.write(b'{"op":"done","path":"set1/fi')  # crash in the middle of a write
    assert btw_s3.list_pending(root, BUCKET, "site1", s3.endpoint)["pending"] == []
    write(os.path.join(root, "set3", "new.dat"), b"new")
    btw_s3.sync(root, target(s3))
    for line in open(journal, "rb").read().splitlines():
        json.loads(line)  # every line valid again


def test_unreachable_endpoint_fails_clearly_and_journal_stays_truthful(tmp_path):
    root = make_root(tmp_path)
    from tests.lib.ports import free_port

    t = btw_s3.S3Target(
        BUCKET,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key="x",
        secret_key=canary.canary("s3-secret-unused"),
        retries=3,
        backoff_base=0.01,
        connect_timeout=2,
    )
    with pytest.raises(btw_s3.BtwS3Error, match="unreachable after 3 attempt"):
        btw_s3.sync(root, t)
    assert t.attempts_retried == 2
    assert len(btw_s3.list_pending(root, BUCKET, "", t.endpoint_url)["pending"]) == 6


def test_missing_bucket_fails_clearly(tmp_path, moto_s3):  # noqa: F811
    root = make_root(tmp_path)
    with pytest.raises(btw_s3.BtwS3Error, match="bucket offsite does not exist"):
        btw_s3.sync(root, target(moto_s3))


def test_wrong_credentials_fail_clearly(tmp_path, monkeypatch):
    # moto enforces IAM credentials after the first N requests: create a user, a key, a bucket.
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "4")
    server = MotoS3()
    try:
        server.start()
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key=canary.S3_SECRET_KEY,
        )
        iam.create_user(UserName="backup")
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        canary.register(key["SecretAccessKey"])
        iam.put_user_policy(
            UserName="backup",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        server.client(key["AccessKeyId"], key["SecretAccessKey"]).create_bucket(Bucket=BUCKET)
        root = make_root(tmp_path)
        bad = btw_s3.S3Target(
            BUCKET,
            endpoint_url=server.endpoint,
            access_key=key["AccessKeyId"],
            secret_key=canary.canary("s3-wrong-secret"),
            retries=2,
            backoff_base=0.01,
        )
        with pytest.raises(btw_s3.BtwS3Error, match="credentials rejected"):
            btw_s3.sync(root, bad)
        assert not any(
            json.loads(line)["op"] == "done"
            for p in btw_s3.journal_paths(root)
            for line in open(p, "rb").read().splitlines()
        )
        good = btw_s3.S3Target(
            BUCKET,
            endpoint_url=server.endpoint,
            access_key=key["AccessKeyId"],
            secret_key=key["SecretAccessKey"],
            retries=2,
            backoff_base=0.01,
        )
        assert len(btw_s3.sync(root, good)["uploaded"]) == 6
    finally:
        server.stop()
