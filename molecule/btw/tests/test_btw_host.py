"""State of the backup host after converge (fs, db and off-site playbooks) and verify (a change
backed up, the www tree and the wiki database restored, a second sync): run by
molecule/_shared/testinfra.yml."""
import hashlib
import os
from pathlib import Path

import boto3
import pytest
import yaml

SETTINGS = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())[
    "provisioner"]["inventory"]["group_vars"]["backup_hosts"]
ROOT = SETTINGS["btw_backup_root"]
BUCKET, PREFIX = SETTINGS["btw_backup_s3_bucket"], SETTINGS["btw_backup_s3_prefix"] + "/"


@pytest.fixture(scope="module")
def bucket():
    """{key under the prefix: (sha256 of the content, ServerSideEncryption)} read from the S3
    stand-in, which prepare started on the podman bridge (molecule/btw/moto.sh)."""
    state = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    assert state, "MOLECULE_EPHEMERAL_DIRECTORY is not set: run through molecule (verify)"
    s3 = boto3.client("s3", endpoint_url=Path(state, "moto_endpoint").read_text().strip(),
                      region_name="us-east-1", aws_access_key_id=SETTINGS["btw_backup_s3_access_key"],
                      aws_secret_access_key=SETTINGS["btw_backup_s3_secret_key"])
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        for entry in page.get("Contents", []):
            obj = s3.get_object(Bucket=BUCKET, Key=entry["Key"])
            objects[entry["Key"][len(PREFIX):]] = (hashlib.sha256(obj["Body"].read()).hexdigest(),
                                                   obj.get("ServerSideEncryption"))
    return objects


def test_tagged_cache_directory_left_out_of_the_www_backup(host):
    found = host.check_output("find %s/fs/www -name index.html -o -name 'tmp.bin*'", ROOT).splitlines()
    assert found, "index.html is not in the www backup"
    assert [path for path in found if "/tmp.bin" in path] == []


def test_dumps_are_0600_and_group_owned_as_configured(host):
    dumps = host.check_output("stat -c '%%a %%U:%%G %%n' %s/db/wiki/*/wiki.dump", ROOT).splitlines()
    assert dumps
    owner = SETTINGS["btw_backup_owner"]  # user:group
    assert [line.split(" ", 2)[:2] for line in dumps] == [["600", owner]] * len(dumps), dumps


def test_unchanged_source_noted_in_the_log(host):
    assert "www: source /srv/data/www unchanged" in host.file(f"{ROOT}/fs/www/log.txt").content_string


def test_same_size_same_mtime_change_was_stored_and_restored(host):
    assert host.file("/srv/restore/www/index.html").content_string == "<h1>version ONE</h1>\n"


def test_restored_wiki_database_holds_the_data(host):
    select = host.check_output("runuser -u postgres -- psql -At -d wiki_restored -c %s",
                               "SELECT body FROM pages WHERE id = 1")
    assert select == "hello"


def test_bucket_holds_every_local_file_encrypted_and_identical(host, bucket):
    # every regular file under the root but the sync's journal, unfinished backups and a set's
    # bookkeeping beside its backups (log.txt, run reports: not sent)
    listing = host.check_output(
        "cd %s && find . -type d \\( -name .btw-sync -o -name '.partial-*' -o -name '.staging-*' \\)"
        " -prune -o -type f"
        " ! \\( \\( -name log.txt -o -name 'backup-report-*.json' \\) ! -path '*/chain-*' \\)"
        " -exec sha256sum {} +", ROOT)
    local = {path[2:]: digest for digest, path in (line.split("  ", 1) for line in listing.splitlines())}
    assert len(local) > 10
    assert sorted(path for path, digest in local.items() if bucket.get(path, ("",))[0] != digest) == []
    assert sorted(key for key, (_, sse) in bucket.items() if sse != "AES256") == []


def test_sync_left_no_progress_directory(host):
    assert host.check_output("find /tmp -maxdepth 1 -type d -name 'btw-s3-progress.*'") == ""


def test_databases_still_serve(host):
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert host.socket("unix:///run/mysqld/mysqld.sock").is_listening
