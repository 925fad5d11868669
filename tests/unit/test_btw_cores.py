"""Unit tests of the btw cores: parsing, planning, journal replay, command construction."""

import json
import os
import time

import pytest
from ansible.module_utils import btw_db, btw_fs, btw_retention, btw_s3


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90m", 5400),
        ("36h", 129600),
        ("7d", 604800),
        ("1d12h", 129600),
        ("2w", 1209600),
        ("45", 45),
        ("1.5h", 5400),
        (" 24h ", 86400),
        (3600, 3600),
    ],
)
def test_parse_span(text, seconds):
    assert btw_fs.parse_span(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "7 days", "7x", "d7", "-3h", "0", "1h30", True])
def test_parse_span_rejects(text):
    with pytest.raises(btw_fs.BtwError):
        btw_fs.parse_span(text)


def test_parse_owner():
    assert btw_fs.parse_owner("0:0") == (0, 0)
    assert btw_fs.parse_owner("root") == (0, 0)
    assert btw_fs.parse_owner(":0") == (-1, 0)
    assert btw_fs.parse_owner(None) is None
    with pytest.raises(btw_fs.BtwError, match="unknown user"):
        btw_fs.parse_owner("root:no-such-group-xyz")


def test_resolve_destination(tmp_path):
    root = str(tmp_path)
    assert btw_fs.resolve_destination(root, "a/b") == os.path.join(os.path.realpath(root), "a", "b")
    for bad in ("../x", "/abs", "", ".", "a/../.."):
        with pytest.raises(btw_fs.BtwError):
            btw_fs.resolve_destination(root, bad)
    with pytest.raises(btw_fs.BtwError, match="absolute"):
        btw_fs.resolve_destination("relative/root", "x")


def test_check_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    assert btw_fs.check_source(str(src), str(tmp_path / "dest")) == str(src)
    with pytest.raises(btw_fs.BtwError, match="inside the source"):
        btw_fs.check_source(str(src), str(src / "backups"))
    with pytest.raises(btw_fs.BtwError, match="inside the destination"):
        btw_fs.check_source(str(src), str(tmp_path))
    with pytest.raises(btw_fs.BtwError, match="does not exist"):
        btw_fs.check_source(str(tmp_path / "missing"), str(tmp_path / "dest"))


def entry(kind="f", size=5, mtime=10**18, ctime=10**18, ino=1, content="h1", mode=0o644):
    return [kind, mode, 0, 0, size, mtime, ctime, ino, content]


def test_diff_manifests_and_stealth():
    old = {"a": entry(), "b": entry(), "c": entry(), "d": entry(mtime=10**18)}
    new = {
        "a": entry(ctime=10**18 + 5),  # ctime only: not a change for a backup
        "b": entry(content="h2", ctime=10**18 + 5),  # content, same size and mtime: stealth
        "d": entry(mtime=10**18 + 2 * 10**9, content="h3"),  # mtime moved to another second
        "e": entry(),
    }
    diff = btw_fs.diff_manifests(new, old)
    assert (diff["added"], diff["removed"], diff["modified"]) == (1, 1, 2)
    assert diff["stealth_examples"] == ["b"]


def test_build_manifest_hashes_only_candidates(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"one")
    (src / "g").write_bytes(b"two")
    (src / "skip").mkdir()
    (src / "skip" / btw_fs.DEFAULT_EXCLUDE_TAG).write_bytes(b"")
    (src / "skip" / "secret").write_bytes(b"x")
    first, stats = btw_fs.build_manifest(str(src), {}, time.time_ns())
    assert sorted(first) == ["d", "d/f", "g"] and stats["hashed"] == 2
    later = time.time_ns() + 10 * 10**9  # a scan long after the files' ctime: nothing is racy
    _second, stats = btw_fs.build_manifest(str(src), first, later, old_scanned_at_ns=later)
    assert stats["hashed"] == 0
    st = os.stat(src / "g")
    (src / "g").write_bytes(b"TWO")
    os.utime(src / "g", ns=(st.st_atime_ns, st.st_mtime_ns))
    third, stats = btw_fs.build_manifest(str(src), first, later, old_scanned_at_ns=later)
    assert stats["hashed"] == 1 and third["g"][8] != first["g"][8]


def fake_chain(dest, name, times):
    data = os.path.join(dest, name, "rdiff-backup-data")
    os.makedirs(data)
    for t in times:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        open(os.path.join(data, f"session_statistics.{stamp}.data"), "w").close()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(times[-1]))
    open(os.path.join(data, f"current_mirror.{stamp}.data"), "w").close()


def test_choose_chain_policy(tmp_path):
    dest = str(tmp_path)
    now = 1_800_000_000
    path, new, reason = btw_fs.choose_chain(dest, 10, 86400, now)
    assert (
        new and "no previous full backup" in reason and os.path.basename(path).startswith(".partial-chain-")
    )
    fake_chain(dest, "chain-20270115T080000Z", [now - 3600 * i for i in (5, 4, 3)])
    path, new, reason = btw_fs.choose_chain(dest, 10, 86400, now)
    assert not new and path.endswith("chain-20270115T080000Z") and reason.startswith("increment 3")
    assert btw_fs.choose_chain(dest, 2, 86400, now)[1] is True  # 2 increments = the maximum
    _p, new, reason = btw_fs.choose_chain(dest, 10, btw_fs.parse_span("4h"), now)
    assert new and "max_incremental_span" in reason


def test_parse_at():
    now = 1_800_000_000.0
    assert btw_fs.parse_at(None, now) == now
    assert btw_fs.parse_at("now", now) == now
    assert btw_fs.parse_at("36h", now) == now - 129600
    assert btw_fs.parse_at("1795310677") == 1795310677
    assert btw_fs.parse_at("2026-11-22T01:24:37Z") == 1795310677
    assert btw_fs.parse_at("2026-11-22T02:24:37+01:00") == 1795310677
    assert btw_fs.parse_at("20261122T012437Z") == 1795310677
    with pytest.raises(btw_fs.BtwError, match="cannot parse restore time"):
        btw_fs.parse_at("yesterday-ish")


def test_chain_at(tmp_path):
    dest = str(tmp_path)
    fake_chain(dest, "chain-20270101T000000Z", [1000, 2000])
    fake_chain(dest, "chain-20270102T000000Z", [3000, 4000])
    assert btw_fs.chain_at(dest, 2500) == (os.path.join(dest, "chain-20270101T000000Z"), 2000)
    assert btw_fs.chain_at(dest, 9999) == (os.path.join(dest, "chain-20270102T000000Z"), 4000)
    with pytest.raises(btw_fs.BtwError, match="no rdiff-backup backup"):
        btw_fs.chain_at(dest, 10)


def test_retention_plan():
    backups = [{"name": f"b{i}", "time": i * 86400, "last": i * 86400, "size_bytes": 1} for i in range(6)]
    now = 6 * 86400
    keep, delete = btw_retention.plan(backups, keep_count=3, now=now)
    assert [b["name"] for b in keep] == ["b3", "b4", "b5"] and len(delete) == 3
    keep, delete = btw_retention.plan(backups, max_age_seconds=2.5 * 86400, now=now)
    assert [b["name"] for b in keep] == ["b4", "b5"]
    keep, delete = btw_retention.plan(backups, keep_count=1, max_age_seconds=1, now=10**9, min_good=1)
    assert [b["name"] for b in keep] == ["b5"]  # the newest is never deleted
    keep, delete = btw_retention.plan(backups, keep_count=1, max_age_seconds=1, now=10**9)
    assert [b["name"] for b in keep] == ["b4", "b5"]  # min_good (default 2) good backups stay


def test_retention_never_deletes_unsynced(tmp_path):
    root = str(tmp_path)
    dest = os.path.join(root, "fs", "x")
    os.makedirs(dest)
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        with open(os.path.join(dest, f"x-{stamp}.tar"), "wb") as f:
            f.write(stamp.encode())
    result = btw_retention.apply_retention(root, "fs/x", keep_count=1, min_good=1)
    assert (
        result["deleted"] == []
        and len(result["held"]) == 2
        and "no off-site sync journal" in result["held"][0]["held"]
    )
    journal = btw_s3.Journal(os.path.join(root, ".btw-sync", "journal-test.jsonl"))
    os.makedirs(os.path.dirname(journal.path))
    journal.open_for_append()
    rel = "fs/x/x-20260101T000000Z.tar"
    st = os.lstat(os.path.join(root, rel))
    journal.append(
        {
            "op": "done",
            "path": rel,
            "sha256": btw_s3.hash_file(os.path.join(root, rel))[0],
            "stat": btw_s3.stat_key(st),
        }
    )
    journal.close()
    result = btw_retention.apply_retention(root, "fs/x", keep_count=1, min_good=1)
    assert [d["name"] for d in result["deleted"]] == ["x-20260101T000000Z.tar"]
    assert [h["name"] for h in result["held"]] == ["x-20260102T000000Z.tar"]
    assert "not yet synced" in result["held"][0]["held"]
    assert sorted(os.listdir(dest)) == ["x-20260102T000000Z.tar", "x-20260103T000000Z.tar"]
    with pytest.raises(btw_retention.BtwRetentionError, match="keep_count and/or max_age"):
        btw_retention.apply_retention(root, "fs/x")


def test_journal_replay_torn_line_and_pending(tmp_path):
    root = str(tmp_path)
    (tmp_path / "a").write_bytes(b"A")
    (tmp_path / "b").write_bytes(b"B")
    path = os.path.join(root, ".btw-sync", "journal-t.jsonl")
    os.makedirs(os.path.dirname(path))
    sha_a = btw_s3.hash_file(os.path.join(root, "a"))[0]
    lines = [
        {"op": "start", "path": "a", "sha256": sha_a},
        {"op": "done", "path": "a", "sha256": sha_a},
        {"op": "start", "path": "b", "sha256": "x"},
    ]
    with open(path, "wb") as f:
        f.write(b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b'{"op":"do')
    journal = btw_s3.Journal(path)
    assert journal.torn_bytes == 9 and set(journal.synced) == {"a"} and set(journal.inflight) == {"b"}
    assert btw_s3.pending(root, journal) == [{"path": "b", "reason": "interrupted upload"}]
    journal.open_for_append()
    journal.close()
    assert open(path, "rb").read().endswith(b"}\n")
    with open(path, "ab") as f:
        f.write(b"garbage\n")
    with pytest.raises(btw_s3.BtwS3Error, match="corrupt at line 4"):
        btw_s3.Journal(path)


def test_local_files_skip_state_and_partials(tmp_path):
    for rel in (
        "set/a.tar",
        ".btw-sync/journal-x.jsonl",
        "set/.partial-b.tar",
        "set/.staging-1/d.dump",
        "set/chain-1/rdiff-backup-data/x",
        "set/.x.tmp-12",
    ):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"1")
    assert sorted(btw_s3.local_files(str(tmp_path))) == ["set/a.tar", "set/chain-1/rdiff-backup-data/x"]


def test_bookkeeping_beside_the_backups_is_not_synced_but_the_same_names_in_a_chain_are(tmp_path):
    """A set's log.txt (a note on every unchanged run) and the run reports written after the sync
    are not backups: sending them made every unchanged run a change and kept the root unsynced."""
    for rel in (
        "fs/www/log.txt",
        "fs/www/backup-report-20261202T140240Z.json",
        "fs/www/www-20261202T140240Z.tar",
        "fs/www/.btw-manifest.json",
        "fs/www/chain-20261202T140219Z/d/log.txt",
        "fs/www/chain-20261202T140219Z/backup-report-20261202T140240Z.json",
    ):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"1")
    assert sorted(btw_s3.local_files(str(tmp_path))) == [
        "fs/www/.btw-manifest.json",
        "fs/www/chain-20261202T140219Z/backup-report-20261202T140240Z.json",
        "fs/www/chain-20261202T140219Z/d/log.txt",
        "fs/www/www-20261202T140240Z.tar",
    ]


def test_kms_uploads_are_confirmed_by_size_and_sha256_not_by_the_etag():
    """SSE-KMS ETags are not the MD5 of the data (AWS documents this)."""
    md5, sha = "0" * 32, "a" * 64
    head = {"size": 10, "sha256": sha, "etag": "f" * 32, "sse": "aws:kms"}
    kms = btw_s3.S3Target("b", client=FlakyClient([]), sse="aws:kms")
    assert kms.confirms(head, 10, sha, md5)
    assert not kms.confirms(dict(head, sha256="b" * 64), 10, sha, md5)
    assert not kms.confirms(head, 11, sha, md5)
    assert not kms.confirms(dict(head, sse="AES256"), 10, sha, md5)
    aes = btw_s3.S3Target("b", client=FlakyClient([]), sse="AES256")
    assert not aes.confirms(dict(head, sse="AES256"), 10, sha, md5)  # SSE-S3: the ETag is the MD5
    assert aes.confirms(dict(head, sse="AES256", etag=md5), 10, sha, md5)


class FlakyClient:
    """Stands in for boto3's client to exercise the retry classification only."""

    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def head_bucket(self, Bucket):  # noqa: N803
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {}


def client_error(code):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}}, "HeadBucket")


def test_retries_with_backoff_then_success_and_no_retry_on_auth():
    from botocore.exceptions import EndpointConnectionError

    delays = []
    client = FlakyClient([EndpointConnectionError(endpoint_url="http://x"), client_error("SlowDown")])
    target = btw_s3.S3Target("b", client=client, retries=3, backoff_base=1, sleep=delays.append)
    target.preflight()
    assert client.calls == 3 and len(delays) == 2 and 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2
    client = FlakyClient([client_error("InvalidAccessKeyId")])
    target = btw_s3.S3Target("b", client=client, retries=5, sleep=delays.append)
    with pytest.raises(btw_s3.BtwS3Error, match="credentials rejected"):
        target.preflight()
    assert client.calls == 1
    with pytest.raises(btw_s3.BtwS3Error, match="not supported"):
        btw_s3.S3Target("b", client=client, sse="none")


def test_an_endpoint_lost_mid_request_is_reported_as_unreachable():
    """A connection closed or stalled mid-upload is the endpoint going away, said as such."""
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    for exc in (ConnectionClosedError(endpoint_url="http://s3:9000/b/k"),
                ReadTimeoutError(endpoint_url="http://s3:9000/b/k")):
        client = FlakyClient([exc, exc])
        target = btw_s3.S3Target("b", client=client, endpoint_url="http://s3:9000", retries=2,
                                 sleep=lambda _: None)
        lost = r"S3 endpoint http://s3:9000 unreachable \(connection lost mid-request\) after 2"
        with pytest.raises(btw_s3.BtwS3Error, match=lost):
            target.preflight()
        assert client.calls == 2


def test_volatile_dump_lines_are_ignored(tmp_path):
    a, b = tmp_path / "a.sql", tmp_path / "b.sql"
    a.write_bytes(
        b"\\restrict abc123\n-- Dumped from database version 15.18\nCREATE ROLE x;\n\\unrestrict abc123\n"
    )
    b.write_bytes(
        b"\\restrict zzz999\n-- Dumped from database version 15.18\nCREATE ROLE x;\n\\unrestrict zzz999\n"
    )
    runner = btw_fs.Runner()
    assert btw_db.content_hash(runner, "pg_globals", str(a)) == btw_db.content_hash(
        runner, "pg_globals", str(b)
    )
    b.write_bytes(b"-- Dumped from database version 15.18\nCREATE ROLE y;\n")
    assert btw_db.content_hash(runner, "pg_globals", str(a)) != btw_db.content_hash(
        runner, "pg_globals", str(b)
    )


def test_dump_commands_keep_passwords_off_the_command_line(tmp_path):
    conn = {"host": "db1", "port": 3306, "user": "backup", "password": 's3cr"et'}
    argv, env = btw_db.dump_command("mysqldump", "app", conn, "/out.sql", str(tmp_path))
    assert argv[1].startswith("--defaults-file=") and "--single-transaction" in argv
    assert not any("s3cr" in a for a in argv) and env == {}
    cnf = argv[1].split("=", 1)[1]
    assert oct(os.stat(cnf).st_mode & 0o777) == "0o600"
    assert 'password="s3cr\\"et"' in open(cnf).read()
    argv, env = btw_db.dump_command(
        "pg_dump",
        "shop",
        {"user": "u", "password": "pw"},
        "/o.dump",
        str(tmp_path),
        pg_bin_dir="/usr/lib/postgresql/15/bin",
    )
    assert "--format=custom" in argv and "pw" not in argv and env == {"PGPASSWORD": "pw"}
    assert argv[-2:] == ["--dbname", "shop"]


def test_list_sets_finds_tar_and_chain_sets_and_ignores_partials(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "fs", "etc"))
    for name in ("etc-20260101T000000Z.tar.zst", ".partial-etc-20260102T000000Z.tar.zst", "log.txt"):
        with open(os.path.join(root, "fs", "etc", name), "wb") as f:
            f.write(b"12345")
    fake_chain(os.path.join(root, "db", "wiki"), "chain-20270101T000000Z", [1000, 2000])
    os.makedirs(os.path.join(root, "db", "wiki", ".partial-chain-20270102T000000Z", "rdiff-backup-data"))
    os.makedirs(os.path.join(root, ".btw-sync"))
    sets = btw_retention.list_sets(root)
    assert sorted(sets) == ["db/wiki", "fs/etc"]
    assert [(b["name"], b["kind"], b["size_bytes"]) for b in sets["fs/etc"]] == [
        ("etc-20260101T000000Z.tar.zst", "tar", 5)
    ]
    (chain,) = sets["db/wiki"]
    assert chain["kind"] == "rdiff-chain" and chain["backups"] == 2
    assert chain["date"] == "1970-01-01T00:16:40Z"


def test_runner_stream_reports_a_failing_command():
    runner = btw_fs.Runner()
    assert list(runner.stream(["printf", "a\\nb\\n"])) == [b"a\n", b"b\n"]
    with pytest.raises(btw_fs.BtwError, match="failed \\(rc=2\\)"):
        list(runner.stream(["ls", "/nonexistent-dir-for-btw-test"]))
    with pytest.raises(btw_fs.BtwError, match="command not found"):
        runner.run(["no-such-command-btw"])
