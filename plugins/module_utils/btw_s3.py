"""Off-site sync of a backup root to S3 that survives interruption.

State lives in ``<root>/.btw-sync/``:

* ``journal-<target id>.jsonl``: an append-only journal, one JSON object per line, each line
  fsync'd before the next step.  ``start`` is written before an upload, ``done`` only after the
  upload completed *and* a HEAD of the object confirmed its size, its sha256 metadata and its
  server-side encryption.  A file counts as synced only with a ``done`` entry whose sha256 is the
  file's current content hash.  A torn last line (crash during a write) is ignored and cut off.
* ``lock``: an fcntl lock, so two syncs (or a sync and a reset) cannot run at once.

Files are compared by content (sha256), never by modification time or size: rdiff-backup
truncates mtimes to the second, and same-size changes are common.  To avoid re-hashing a large
unchanged backup root on every run, a file whose full ``lstat`` (size, mtime_ns, ctime_ns,
inode) equals the one recorded with its ``done`` entry reuses that hash; ctime cannot be set by
user space, so a rewrite with the mtime put back is still re-hashed.  ``rehash_all`` disables
this.

boto3 is imported lazily so that the journal helpers (list pending, reset, retention) work
without it.

With a progress file (``sync(progress_file=...)``, plugins/module_utils/progress.py), the sync
reports two phases for roles/backup_progress to poll while the module runs as an async job:
"S3 sync (comparing)" (bytes hashed, no total), then "S3 sync" (done: bytes sent, total: bytes of
the files the comparison found to send, see ``SyncProgress``), then done or failed.
"""

import errno
import fcntl
import hashlib
import json
import os
import random
import re
import stat
import threading
import time

from ansible.module_utils.progress import ProgressError, ProgressFile, Terminated, terminable

STATE_DIR = ".btw-sync"
# The toolkit's own bookkeeping beside the backups of a set: its log (a note on every unchanged
# run) and the run reports of plugins/callback/backup_report.py (one per run, written after the
# sync).  Not backups: they are not sent, so an unchanged run syncs nothing and a report written
# after the sync never keeps the root "not synced".  Inside a chain (a mirrored tree) a file of
# that name is the user's and is sent.
BOOKKEEPING_RE = re.compile(r"log\.txt|backup-report-\d{8}T\d{6}Z\.json")
CHAIN_DIR_RE = re.compile(r"chain-\d{8}T\d{6}Z(-\d+)?")
LOCK_NAME = "lock"
SSE_CHOICES = ("AES256", "aws:kms")
META_SHA = "sha256"
HASH_CHUNK = 1 << 20
MB = 1024 * 1024
NO_RETRY_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "InvalidBucketName",
    "AllBucketsAccessDenied",
    "403",
    "404",
    "KMS.NotFoundException",
    "InvalidArgument",
    "InvalidRequest",
}


class BtwS3Error(Exception):
    """An operator-facing error of the S3 sync."""


# ---------------------------------------------------------------------------------------------
# Progress


class SyncProgress:
    """Progress of one sync for a progress file: bytes sent against bytes to send.

    * total: the bytes of the files the comparison found to send (``begin``); a file the bucket
      turns out to hold already (confirmed by HEAD, nothing sent) is taken off the total
      (``skipped``), so the rate and the time left are about bytes really sent.
    * done: the bytes of the files sent, plus what boto3 reports for the upload in flight (its
      ``Callback``, per chunk read, also within the parts of a multipart upload; negative when
      boto3 rewinds a part to retry it).  Each attempt of an upload (``attempt``) starts that
      file again from 0, so a retried upload is not counted twice.

    Without a path nothing is written.  A ProgressFile per phase, so the rate of the upload phase
    does not include the comparison.  Reporting is for the operator: once the first file is
    written, a failing write (full /tmp) never fails the sync.  Thread-safe: boto3 calls back from
    its transfer threads.
    """

    def __init__(self, path=None, factory=ProgressFile):
        self.path = path
        self.factory = factory
        self.writer = None
        self.total = 0
        self.completed = 0
        self.current = 0
        self.current_size = 0
        self._lock = threading.Lock()

    @property
    def done(self):
        return self.completed + self.current

    def phase(self, step, total=None, strict=False):
        if not self.path:
            return
        try:
            self.writer = self.factory(self.path, step, total_bytes=total)
        except (ProgressError, OSError) as exc:
            if strict:
                raise BtwS3Error(f"cannot write the progress file {self.path}: {exc}") from exc
            self.writer = None

    def begin(self, total):
        """The comparison is over: start the upload phase with the bytes to send."""
        with self._lock:
            self.total, self.completed, self.current = total, 0, 0
            self.phase("S3 sync", total)

    def hashed(self, size):
        """Comparison phase: a file of this size was hashed."""
        with self._lock:
            self.completed += size
            self._push(with_total=False)

    def attempt(self, size):
        """An attempt to upload a file of this size starts (again): its bytes count from 0."""
        with self._lock:
            self.current, self.current_size = 0, size
            self._push()

    def add(self, nbytes):
        """boto3's upload Callback: bytes read for sending since the last call."""
        with self._lock:
            self.current = min(max(self.current + nbytes, 0), self.current_size)
            self._push()

    def sent(self, size):
        with self._lock:
            self.completed += size
            self.current = self.current_size = 0
            self._push()

    def skipped(self, size):
        with self._lock:
            self.total = max(self.total - size, 0)
            self.current = self.current_size = 0
            self._push()

    def finish(self, ok=True, message=None):
        with self._lock:
            if self.writer is None:
                return
            try:
                self.writer.update(self.done)  # the phase's total stays as it was
                self.writer.finish(ok=ok, message=message)
            except OSError:
                pass

    def _push(self, with_total=True):
        if self.writer is None:
            return
        try:
            self.writer.update(self.done, self.total if with_total else None)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Local files


def is_backup_file(rel):
    """Whether a path under the root is a finished backup file that must go off-site."""
    parts = rel.split("/")
    if parts[0] == STATE_DIR:
        return False
    for part in parts:
        if part.startswith(".partial-") or part.startswith(".staging-") or ".tmp-" in part:
            return False
    if BOOKKEEPING_RE.fullmatch(parts[-1]) and not any(CHAIN_DIR_RE.fullmatch(p) for p in parts[:-1]):
        return False
    return True


def local_files(root):
    """{relpath: lstat} of the regular files to sync (symlinks and special files are skipped)."""
    files = {}
    for top, dirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root)
        rel_top = "" if rel_top == "." else rel_top + "/"
        dirs[:] = [d for d in dirs if is_backup_file(rel_top + d)]
        for name in names:
            rel = rel_top + name
            if not is_backup_file(rel):
                continue
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                files[rel] = st
    return files


def stat_key(st):
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def hash_file(path):
    """(sha256 hex, md5 hex) of a file in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5()  # md5 only to compare with a single-part ETag
    with open(path, "rb") as f:
        while True:
            chunk = f.read(HASH_CHUNK)
            if not chunk:
                break
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


# ---------------------------------------------------------------------------------------------
# Journal


def target_id(bucket, prefix, endpoint_url=None):
    text = f"{endpoint_url or 'aws'}|{bucket}|{prefix.strip('/')}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def journal_paths(root):
    state = os.path.join(root, STATE_DIR)
    if not os.path.isdir(state):
        return []
    return sorted(
        os.path.join(state, n) for n in os.listdir(state) if n.startswith("journal-") and n.endswith(".jsonl")
    )


class Journal:
    """Replay and append the sync journal of one target."""

    def __init__(self, path):
        self.path = path
        self.target = None
        self.synced = {}  # rel -> {"sha256", "stat"}
        self.inflight = {}  # rel -> start entry
        self.multipart = {}  # upload id -> entry: multipart uploads this sync started, not completed
        self.entries = 0
        self.torn_bytes = 0
        self._fd = None
        self._lock = threading.Lock()  # boto3 reports multipart uploads from its transfer threads
        self._load()

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        good_end = data.rfind(b"\n") + 1
        self.torn_bytes = len(data) - good_end
        for number, line in enumerate(data[:good_end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise BtwS3Error(
                    f"sync journal {self.path} is corrupt at line {number}; move it aside "
                    "and run the sync again (files are re-checked against the bucket)"
                ) from exc
            self._apply(entry)

    def _apply(self, entry):
        self.entries += 1
        op, rel = entry.get("op"), entry.get("path")
        if op == "target":
            self.target = entry
        elif op == "start":
            self.inflight[rel] = entry
        elif op == "done":
            self.inflight.pop(rel, None)
            self.synced[rel] = {"sha256": entry["sha256"], "stat": entry.get("stat")}
            for upload_id in [u for u, e in self.multipart.items() if e.get("path") == rel]:
                del self.multipart[upload_id]  # completed with the upload
        elif op in ("failed", "abandoned"):
            self.inflight.pop(rel, None)
        elif op == "multipart":
            self.multipart[entry["upload_id"]] = entry
        elif op == "multipart_closed":
            self.multipart.pop(entry.get("upload_id"), None)

    def open_for_append(self):
        if self.torn_bytes:
            # A crash cut the last line short: drop it so the journal stays line-valid.
            with open(self.path, "r+b") as f:
                f.truncate(os.path.getsize(self.path) - self.torn_bytes)
                os.fsync(f.fileno())
            self.torn_bytes = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, entry):
        entry = dict(entry, ts=round(time.time(), 3))
        with self._lock:
            os.write(self._fd, (json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n").encode())
            os.fsync(self._fd)
            self._apply(entry)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def current_hash(self, root, rel, st, rehash_all=False):
        """Content hash of a local file, reusing the journal's when its full stat is unchanged."""
        known = self.synced.get(rel)
        if known and not rehash_all and known.get("stat") == stat_key(st):
            return known["sha256"], None
        return hash_file(os.path.join(root, rel))

    def is_synced(self, root, rel, st=None, rehash_all=False):
        if rel in self.inflight or rel not in self.synced:
            return False
        st = st or os.lstat(os.path.join(root, rel))
        sha, _md5 = self.current_hash(root, rel, st, rehash_all)
        return sha == self.synced[rel]["sha256"]


class SyncLock:
    """Exclusive, non-blocking fcntl lock on <root>/.btw-sync/lock.

    create=False (check mode) writes nothing: it locks the file when it exists (so a check still
    sees a sync running) and otherwise holds no lock (no state yet, nothing to protect).
    """

    def __init__(self, root, create=True):
        self.path = os.path.join(root, STATE_DIR, LOCK_NAME)
        self.create = create
        self.fd = None

    def __enter__(self):
        if not self.create:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return self
        else:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                root = os.path.dirname(os.path.dirname(self.path))
                raise BtwS3Error(
                    f"another sync of {root} is running (lock {self.path} held by pid "
                    f"{holder}); try again when it has finished"
                ) from exc
            raise
        if self.create:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is None:
            return
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def pending(root, journal, rehash_all=False):
    """What is not (yet) synced: [{path, reason}], sorted by path."""
    out = []
    files = local_files(root)
    for rel in sorted(set(files) | set(journal.inflight)):
        st = files.get(rel)
        if st is None:
            out.append({"path": rel, "reason": "interrupted upload; the local file no longer exists"})
        elif rel in journal.inflight:
            out.append({"path": rel, "reason": "interrupted upload"})
        elif rel not in journal.synced:
            out.append({"path": rel, "reason": "never synced"})
        elif journal.current_hash(root, rel, st, rehash_all)[0] != journal.synced[rel]["sha256"]:
            out.append({"path": rel, "reason": "content changed since the last sync"})
    return out


def _check_root(root):
    if not root or not os.path.isabs(root) or not os.path.isdir(root):
        raise BtwS3Error(f"backup root {root!r} must be an existing absolute directory")


def _journal_for(root, bucket, prefix, endpoint_url):
    return os.path.join(root, STATE_DIR, f"journal-{target_id(bucket, prefix, endpoint_url)}.jsonl")


def list_pending(root, bucket, prefix="", endpoint_url=None, rehash_all=False):
    _check_root(root)
    journal = Journal(_journal_for(root, bucket, prefix, endpoint_url))
    return {
        "pending": pending(root, journal, rehash_all),
        "journal": journal.path,
        "synced_files": len(journal.synced),
    }


def reset(root, bucket, prefix="", endpoint_url=None, check_mode=False):
    """Empty the journal; refuses while anything is pending.  Returns (changed, details)."""
    _check_root(root)
    path = _journal_for(root, bucket, prefix, endpoint_url)
    with SyncLock(root, create=not check_mode):
        journal = Journal(path)
        left = pending(root, journal)
        if left:
            sample = ", ".join(f"{p['path']} ({p['reason']})" for p in left[:5])
            raise BtwS3Error(
                f"refusing to reset the sync journal: {len(left)} file(s) not synced yet: {sample}"
            )
        if not os.path.exists(path) or journal.entries == 0:
            return False, {"journal": path, "entries_removed": 0}
        if not check_mode:
            tmp = path + ".reset-tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, path)
        return True, {"journal": path, "entries_removed": journal.entries}


# ---------------------------------------------------------------------------------------------
# S3


def _error_code(exc):
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    text = str(exc)
    if "(" in text and ")" in text:
        return text.split("(", 1)[1].split(")", 1)[0]
    return ""


class S3Target:
    """A bucket and key prefix reached through a boto3 client, with retries and back-off."""

    def __init__(
        self,
        bucket,
        prefix="",
        endpoint_url=None,
        region=None,
        access_key=None,
        secret_key=None,
        session_token=None,
        sse="AES256",
        kms_key_id=None,
        retries=5,
        backoff_base=1.0,
        backoff_max=30.0,
        multipart_threshold_mb=64,
        multipart_chunk_mb=16,
        connect_timeout=10,
        client=None,
        sleep=time.sleep,
    ):
        if not bucket:
            raise BtwS3Error("no S3 bucket given")
        if sse not in SSE_CHOICES:
            raise BtwS3Error(f"server-side encryption {sse!r} is not supported: use one of {SSE_CHOICES}")
        if kms_key_id and sse != "aws:kms":
            raise BtwS3Error("kms_key_id needs sse: aws:kms")
        if int(retries) < 1:
            raise BtwS3Error("retries must be >= 1 (the number of attempts)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.sse, self.kms_key_id = sse, kms_key_id
        self.retries, self.backoff_base, self.backoff_max = int(retries), backoff_base, backoff_max
        self.sleep = sleep
        self.attempts_retried = 0
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore import exceptions as botoexc
            from botocore.config import Config
        except ImportError as exc:
            raise BtwS3Error("boto3 is required for the S3 sync (Debian: python3-boto3)") from exc
        self._botoexc = botoexc
        self.transfer_config = TransferConfig(
            multipart_threshold=int(multipart_threshold_mb * MB),
            multipart_chunksize=int(multipart_chunk_mb * MB),
            max_concurrency=2,
            use_threads=True,
        )
        if client is None:
            config = Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=120,
                s3={"addressing_style": "path"} if endpoint_url else None,
            )
            kwargs = {"endpoint_url": endpoint_url, "region_name": region or "us-east-1", "config": config}
            if access_key or secret_key:
                kwargs.update(
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    aws_session_token=session_token,
                )
            client = boto3.session.Session().client("s3", **kwargs)
        self.client = client
        # on_multipart(key, upload_id): told of every multipart upload this target starts (boto3
        # starts them inside upload_file), so that only those are ever aborted as stale
        self.on_multipart = None
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:
            events.register("after-call.s3.CreateMultipartUpload", self._multipart_started)

    def _multipart_started(self, parsed=None, **_kwargs):
        if self.on_multipart is not None and parsed and parsed.get("UploadId"):
            self.on_multipart(parsed.get("Key"), parsed["UploadId"])

    def key(self, rel):
        return f"{self.prefix}/{rel}" if self.prefix else rel

    @property
    def url(self):
        return f"s3://{self.bucket}/{self.prefix}"

    def _retryable(self, exc):
        b = self._botoexc
        if isinstance(exc, b.NoCredentialsError):
            raise BtwS3Error(
                "no S3 credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the "
                "environment or pass access_key/secret_key"
            ) from exc
        if isinstance(
            exc,
            (
                b.EndpointConnectionError,
                b.ConnectionClosedError,
                b.ConnectTimeoutError,
                b.ReadTimeoutError,
                b.ConnectionError,
            ),
        ):
            return True
        code = _error_code(exc)
        if code in NO_RETRY_CODES:
            return False
        return (
            isinstance(exc, (b.ClientError, b.BotoCoreError)) or "S3UploadFailedError" in type(exc).__name__
        )

    def call(self, what, func, *args, **kwargs):
        """Run func with retries and exponential back-off (with jitter) on transient errors."""
        for attempt in range(1, self.retries + 1):
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # boto raises many types; classified below
                if isinstance(exc, BtwS3Error):
                    raise
                retry = self._retryable(exc)
                if not retry or attempt == self.retries:
                    raise BtwS3Error(self._explain(what, exc, attempt)) from exc
                self.attempts_retried += 1
                delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
                self.sleep(delay * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")

    def _explain(self, what, exc, attempts):
        code = _error_code(exc)
        b = self._botoexc
        endpoint = self.endpoint_url or "AWS"
        if isinstance(exc, (b.EndpointConnectionError, b.ConnectTimeoutError, b.ConnectionError)):
            hint = f"S3 endpoint {endpoint} unreachable"
        elif isinstance(exc, (b.ConnectionClosedError, b.ReadTimeoutError)):
            # the endpoint went away (or stalled) in the middle of a request: the same outage
            # seen from a connection that was already open
            hint = f"S3 endpoint {endpoint} unreachable (connection lost mid-request)"
        elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AccessDenied"):
            hint = f"S3 credentials rejected or access denied to bucket {self.bucket} ({code})"
        elif code in ("NoSuchBucket", "404"):
            hint = f"S3 bucket {self.bucket} does not exist"
        else:
            hint = f"S3 error {code or type(exc).__name__}"
        return f"{what}: {hint} after {attempts} attempt(s): {exc}"

    def preflight(self):
        self.call(f"checking bucket {self.bucket}", self.client.head_bucket, Bucket=self.bucket)

    def abort_stale_multipart(self, journal):
        """Abort the multipart uploads an interrupted sync of this root left behind, and no other.

        Ours are the upload ids the journal recorded when boto3 started them (``multipart``
        entries of uploads that never completed), and, for a crash between the start of an upload
        and that record, an upload of the very key of an interrupted file (``start`` without
        ``done``) begun after that start.  Other writers' uploads in the bucket (an empty prefix
        lists them all) are left alone.  We hold the lock: no sync of this root runs meanwhile.
        Returns (aborted keys, number of other uploads left alone).
        """
        aborted, others = [], 0
        inflight_keys = {self.key(rel): entry.get("ts", 0) for rel, entry in journal.inflight.items()}
        listed = set()
        kwargs = {"Bucket": self.bucket, "Prefix": self.key("")}
        while True:
            resp = self.call("listing multipart uploads", self.client.list_multipart_uploads, **kwargs)
            for upload in resp.get("Uploads", []) or []:
                key, upload_id = upload["Key"], upload["UploadId"]
                listed.add(upload_id)
                started = upload.get("Initiated")
                ours = upload_id in journal.multipart or (
                    key in inflight_keys
                    and started is not None
                    and started.timestamp() >= inflight_keys[key] - 5  # S3 keeps whole seconds
                )
                if not ours:
                    others += 1
                    continue
                self.call(
                    "aborting a stale multipart upload",
                    self.client.abort_multipart_upload,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                )
                aborted.append(key)
                journal.append(
                    {"op": "multipart_closed", "upload_id": upload_id, "key": key, "aborted": True}
                )
            if not resp.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=resp.get("NextKeyMarker"), UploadIdMarker=resp.get("NextUploadIdMarker"))
        for upload_id in [u for u in journal.multipart if u not in listed]:
            journal.append({"op": "multipart_closed", "upload_id": upload_id, "aborted": False})
        return aborted, others

    def head(self, rel):
        """The object's (size, sha256 metadata, etag, sse) or None if it does not exist."""

        def _head():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
            except self._botoexc.ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

        resp = self.call(f"checking {self.key(rel)}", _head)
        if resp is None:
            return None
        return {
            "size": resp.get("ContentLength"),
            "sha256": (resp.get("Metadata") or {}).get(META_SHA),
            "etag": (resp.get("ETag") or "").strip('"'),
            "sse": resp.get("ServerSideEncryption"),
        }

    def upload(self, path, rel, sha, on_attempt=None, on_bytes=None):
        """Upload a file (multipart from the threshold).  on_attempt() is called before each
        attempt, on_bytes(n) by boto3 as chunks are read for sending (from its threads)."""
        extra = {"Metadata": {META_SHA: sha}, "ServerSideEncryption": self.sse}
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id

        def _attempt():
            if on_attempt is not None:
                on_attempt()
            self.client.upload_file(
                path,
                self.bucket,
                self.key(rel),
                ExtraArgs=extra,
                Config=self.transfer_config,
                Callback=on_bytes,
            )

        self.call(f"uploading {rel}", _attempt)

    def confirms(self, head, size, sha, md5):
        if head is None or head["size"] != size or head["sha256"] != sha:
            return False
        if head["sse"] not in (self.sse,):
            return False
        if self.sse == "aws:kms":
            # the ETag of an SSE-KMS object is not the MD5 of its data (AWS documents this): the
            # size and the sha256 metadata confirm it
            return True
        etag = head["etag"]
        return md5 is None or "-" in etag or etag == md5


def sync(
    root,
    target,
    rehash_all=False,
    check_mode=False,
    progress=None,
    progress_file=None,
    progress_factory=ProgressFile,
):
    """Upload every local file whose content is not confirmed in the bucket.  Returns a summary.

    Raises BtwS3Error on failure; the journal then records exactly what was confirmed.
    progress(rel) is called after each file.  With progress_file (ignored in check mode), progress
    goes there through progress_factory (see SyncProgress); a progress file that cannot be written
    fails the sync before anything else.  The file always ends done or failed (with the error).

    SIGTERM (a cancel by roles/backup_progress) raises in the main thread: boto3 cancels the
    transfers in flight, the journal is closed and the lock released (the journal records exactly
    what was confirmed, the next run resumes), and the sync fails with BtwS3Error.
    """
    report = SyncProgress(None if check_mode else progress_file, progress_factory)
    ok, message = False, None
    with terminable():
        report.phase("S3 sync (comparing)", strict=True)
        try:
            summary = _sync(root, target, rehash_all, check_mode, progress, report)
            ok = True
            return summary
        except Terminated as exc:
            message = (
                f"sync cancelled ({exc}); the journal records what was confirmed, the next run resumes"
            )
            raise BtwS3Error(message) from exc
        except BaseException as exc:
            message = str(exc) or type(exc).__name__
            raise
        finally:
            report.finish(ok=ok, message=message)


def _sync(root, target, rehash_all, check_mode, progress, report):
    _check_root(root)
    started = time.time()
    summary = {
        "uploaded": [],
        "confirmed_without_upload": [],
        "unchanged": 0,
        "aborted_multipart": [],
        "other_multipart_left": 0,
        "bytes_uploaded": 0,
        "pending_after": [],
        "target": target.url,
        "retries": 0,
    }
    path = _journal_for(root, target.bucket, target.prefix, target.endpoint_url)
    with SyncLock(root, create=not check_mode):
        journal = Journal(path)
        files = local_files(root)
        todo = []
        for rel in sorted(set(files) | set(journal.inflight)):
            st = files.get(rel)
            if st is None:
                todo.append((rel, None, None, None))
                continue
            sha, md5 = journal.current_hash(root, rel, st, rehash_all)
            if md5 is not None:  # hashed now (not taken from the journal's stat cache)
                report.hashed(st.st_size)
            if rel not in journal.inflight and journal.synced.get(rel, {}).get("sha256") == sha:
                summary["unchanged"] += 1
                continue
            todo.append((rel, st, sha, md5))
        summary["to_sync"] = [t[0] for t in todo]
        summary["bytes_to_sync"] = sum(t[1].st_size for t in todo if t[1] is not None)
        report.begin(summary["bytes_to_sync"])
        if check_mode or not todo:
            summary["pending_after"] = summary["to_sync"] if check_mode else []
            summary["duration_seconds"] = round(time.time() - started, 3)
            return summary
        target.preflight()
        journal.open_for_append()
        try:
            if journal.target is None:
                journal.append(
                    {
                        "op": "target",
                        "bucket": target.bucket,
                        "prefix": target.prefix,
                        "endpoint": target.endpoint_url,
                    }
                )
            target.on_multipart = lambda key, upload_id: journal.append(
                {"op": "multipart", "path": _rel_of(target, key), "key": key, "upload_id": upload_id}
            )
            aborted, others = target.abort_stale_multipart(journal)
            summary["aborted_multipart"], summary["other_multipart_left"] = aborted, others
            for rel, st, sha, md5 in todo:
                if st is None:
                    journal.append({"op": "abandoned", "path": rel, "reason": "local file no longer exists"})
                    continue
                _sync_one(root, target, journal, rel, st, sha, md5, summary, report)
                if progress:
                    progress(rel)
        finally:
            target.on_multipart = None
            journal.close()
            summary["retries"] = target.attempts_retried
        summary["pending_after"] = [p["path"] for p in pending(root, journal)]
    summary["duration_seconds"] = round(time.time() - started, 3)
    return summary


def _rel_of(target, key):
    prefix = target.key("")
    return key[len(prefix) :] if prefix and key.startswith(prefix) else key


def _sync_one(root, target, journal, rel, st, sha, md5, summary, report):
    local = os.path.join(root, rel)
    size = st.st_size
    head = target.head(rel)
    if target.confirms(head, size, sha, md5 if md5 else None) and head["sse"] == target.sse:
        journal.append(
            {"op": "done", "path": rel, "sha256": sha, "size": size, "stat": stat_key(st), "uploaded": False}
        )
        summary["confirmed_without_upload"].append(rel)
        report.skipped(size)
        return
    if md5 is None:  # hash came from the stat cache: we need the md5 for the ETag check
        sha, md5 = hash_file(local)
    journal.append({"op": "start", "path": rel, "sha256": sha, "size": size})
    target.upload(local, rel, sha, on_attempt=lambda: report.attempt(size), on_bytes=report.add)
    after = os.lstat(local)
    if stat_key(after) != stat_key(st):
        journal.append({"op": "failed", "path": rel, "reason": "file changed during upload"})
        raise BtwS3Error(f"{rel} changed while it was uploaded; run the sync again")
    head = target.head(rel)
    if not target.confirms(head, size, sha, md5):
        journal.append({"op": "failed", "path": rel, "reason": f"upload not confirmed: {head}"})
        raise BtwS3Error(f"upload of {rel} not confirmed by the bucket (size/sha256/encryption): {head}")
    journal.append(
        {"op": "done", "path": rel, "sha256": sha, "size": size, "stat": stat_key(st), "uploaded": True}
    )
    summary["uploaded"].append(rel)
    summary["bytes_uploaded"] += size
    report.sent(size)
