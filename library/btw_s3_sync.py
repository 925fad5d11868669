#!/usr/bin/python
"""Ansible module: sync a backup root to S3 with a durable journal; list pending files; reset the journal."""

DOCUMENTATION = r"""
---
module: btw_s3_sync
short_description: Sync a backup root off-site to S3, surviving interruption
description:
  - O(state=synced) uploads every file under O(root) whose content (sha256) is not confirmed in the
    bucket, with server-side encryption, multipart uploads for large files and retries with
    exponential back-off. Files are compared by content, never by mtime or size.
  - Every step is recorded in an append-only journal C(<root>/.btw-sync/journal-<target>.jsonl),
    fsync'd per entry. A file counts as synced only after its upload completed and a HEAD of the
    object confirmed its size, its sha256 metadata and its encryption. An interrupted run (even
    SIGKILL) is finished by the next one. Stale multipart uploads are aborted, but only those
    this root's syncs started (their upload ids are journaled as boto3 starts them); other
    writers' uploads in the bucket are left alone, also with an empty O(prefix).
  - The set's own bookkeeping beside its backups (C(log.txt), the run reports
    C(backup-report-<time>.json)) is not sent, so an unchanged run sends nothing.
  - With O(sse=aws:kms) an upload is confirmed by its size and sha256 metadata (the ETag of an
    SSE-KMS object is not the MD5 of the data); with C(AES256) a single-part upload's ETag must
    also equal its MD5.
  - An fcntl lock (C(<root>/.btw-sync/lock)) keeps two syncs from running at once.
  - O(state=pending) lists what is not synced yet. O(state=reset) empties the journal and refuses
    while anything is pending (btw-backup C(sync-state --list) and C(--reset)).
  - Hidden temporary files (C(.partial-*), C(.staging-*), C(*.tmp-*)) are never uploaded.
version_added: "1.0.0"
requirements:
  - boto3 (Debian python3-boto3) for O(state=synced)
options:
  root:
    description: Absolute backup root to sync.
    type: path
    required: true
  bucket:
    description: Bucket name.
    type: str
    required: true
  prefix:
    description: Key prefix in the bucket (e.g. the host name).
    type: str
    default: ""
  endpoint_url:
    description: S3 endpoint for S3-compatible services; omit for AWS.
    type: str
  region:
    description: Region name.
    type: str
    default: us-east-1
  access_key:
    description: Access key id; default from the environment (C(AWS_ACCESS_KEY_ID)) or the instance profile.
    type: str
    no_log: true
  secret_key:
    description: Secret access key; default from the environment (C(AWS_SECRET_ACCESS_KEY)).
    type: str
    no_log: true
  session_token:
    description: Session token for temporary credentials.
    type: str
    no_log: true
  sse:
    description: Server-side encryption; always on.
    type: str
    choices: [AES256, "aws:kms"]
    default: AES256
  kms_key_id:
    description: KMS key for O(sse=aws:kms); default the bucket's key.
    type: str
  state:
    description: C(synced) to sync, C(pending) to list unsynced files, C(reset) to empty the journal.
    type: str
    choices: [synced, pending, reset]
    default: synced
  retries:
    description: Attempts per S3 call (transient errors only; rejected credentials fail at once).
    type: int
    default: 5
  backoff_base:
    description: First back-off delay in seconds, doubled after each failed attempt (with jitter, max 30 s).
    type: float
    default: 1.0
  multipart_threshold_mb:
    description: Files from this size (MiB) are uploaded in parts.
    type: int
    default: 64
  multipart_chunk_mb:
    description: Part size (MiB).
    type: int
    default: 16
  rehash_all:
    description:
      - Re-hash every file instead of reusing the journal's hash when the full stat (including
        ctime and inode) is unchanged.
    type: bool
    default: false
  progress_file:
    description:
      - Write progress to this file (JSON, rewritten at most once a second) for
        C(roles/backup_progress) to poll while the module runs with C(async) and C(poll=0)
        (O(state=synced) only).
      - Phases, one after the other - C(S3 sync (comparing)) (bytes of the files hashed, no total),
        then C(S3 sync) (done - bytes sent, counted per chunk as boto3 reads them, so a multipart
        upload reports within the file and a retried upload starts its file again from 0; total - bytes of
        the files the comparison found to send, less those the bucket turns out to hold already),
        then done or failed with the error message.
      - Holds no credentials. Put it in a private directory (for example one made by
        M(ansible.builtin.tempfile)) and remove it afterwards; its directory must exist (checked
        before anything else). Not written in check mode.
    type: path
attributes:
  check_mode:
    support: full
    details: Reports what would be uploaded or reset; contacts nothing and writes nothing.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Sync the backups off-site
  btw_s3_sync:
    root: /srv/backups
    bucket: example-backups
    prefix: "{{ inventory_hostname }}"
    sse: "aws:kms"
  environment:
    AWS_ACCESS_KEY_ID: "{{ vault_s3_key }}"
    AWS_SECRET_ACCESS_KEY: "{{ vault_s3_secret }}"
  no_log: true

- name: Sync as an async job, then follow it with progress lines (see roles/backup_progress)
  btw_s3_sync:
    root: /srv/backups
    bucket: example-backups
    prefix: "{{ inventory_hostname }}"
    progress_file: "{{ progress_dir.path }}/s3.progress"
  async: 43200
  poll: 0
  register: sync_job

- name: What is not synced yet
  btw_s3_sync:
    root: /srv/backups
    bucket: example-backups
    prefix: "{{ inventory_hostname }}"
    state: pending
  register: btw_pending
"""

RETURN = r"""
uploaded:
  description: Files uploaded (relative to O(root)).
  returned: state is synced
  type: list
  elements: str
confirmed_without_upload:
  description: Files found already in the bucket with the right sha256 (e.g. after an interrupted run).
  returned: state is synced
  type: list
  elements: str
bytes_uploaded:
  description: Bytes uploaded.
  returned: state is synced
  type: int
to_sync:
  description: Files the comparison with the journal found to sync (in check mode, what would be synced).
  returned: state is synced
  type: list
  elements: str
bytes_to_sync:
  description: Their size in bytes (the total of the progress file's C(S3 sync) phase at its start).
  returned: state is synced
  type: int
pending:
  description: Files not synced, each with path and reason.
  returned: always
  type: list
  elements: dict
journal:
  description: Path of the journal.
  returned: always
  type: str
backup_run:
  description: The run as the strategy playbooks publish it in C(backup_runs).
  returned: state is synced, also on failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.btw_module import ERRORS, ModuleRun
from ansible.module_utils.btw_s3 import S3Target, list_pending, reset, sync


def still_pending(where):
    """What is left to sync after a failed sync ([] when even that cannot be read)."""
    try:
        return list_pending(*where)["pending"]
    except ERRORS:
        return []


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            bucket=dict(type="str", required=True),
            prefix=dict(type="str", default=""),
            endpoint_url=dict(type="str"),
            region=dict(type="str", default="us-east-1"),
            access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True),
            session_token=dict(type="str", no_log=True),
            sse=dict(type="str", choices=["AES256", "aws:kms"], default="AES256"),
            kms_key_id=dict(type="str"),
            state=dict(type="str", choices=["synced", "pending", "reset"], default="synced"),
            retries=dict(type="int", default=5),
            backoff_base=dict(type="float", default=1.0),
            multipart_threshold_mb=dict(type="int", default=64),
            multipart_chunk_mb=dict(type="int", default=16),
            rehash_all=dict(type="bool", default=False),
            progress_file=dict(type="path"),
        ),
        required_together=[("access_key", "secret_key")],
        supports_check_mode=True,
    )
    p = module.params
    where = (p["root"], p["bucket"], p["prefix"], p["endpoint_url"])
    if p["state"] == "pending":
        result = ModuleRun(module).call(list_pending, *where, rehash_all=p["rehash_all"])
        module.exit_json(changed=False, **result)
    if p["state"] == "reset":
        changed, details = ModuleRun(module).call(reset, *where, check_mode=module.check_mode)
        module.exit_json(changed=changed, pending=[], **details)

    run = ModuleRun(
        module,
        "off-site sync failed: ",
        {"strategy": "offsite_sync", "set": p["prefix"] or p["bucket"], "location": None},
    )
    try:
        target = S3Target(
            p["bucket"],
            p["prefix"],
            p["endpoint_url"],
            p["region"],
            p["access_key"],
            p["secret_key"],
            p["session_token"],
            p["sse"],
            p["kms_key_id"],
            p["retries"],
            p["backoff_base"],
            multipart_threshold_mb=p["multipart_threshold_mb"],
            multipart_chunk_mb=p["multipart_chunk_mb"],
        )
        run.run["location"] = target.url
        summary = sync(
            p["root"],
            target,
            rehash_all=p["rehash_all"],
            check_mode=module.check_mode,
            progress_file=p["progress_file"],
        )
    except ERRORS as exc:
        left = still_pending(where)
        run.fail(exc, details=f"{exc}; {len(left)} file(s) pending", pending=left)
    changed = bool(summary["uploaded"] or summary["confirmed_without_upload"] or summary["aborted_multipart"])
    if module.check_mode:
        changed = bool(summary["to_sync"])
    run.ok(
        summary["bytes_uploaded"],
        summary["duration_seconds"],
        f"{len(summary['uploaded'])} uploaded, {len(summary['confirmed_without_upload'])} "
        f"confirmed already there, {summary['unchanged']} unchanged",
    )
    pending = [{"path": rel, "reason": "not synced"} for rel in summary["pending_after"]]
    module.exit_json(
        changed=changed,
        backup_run=run.run,
        pending=pending,
        **{k: v for k, v in summary.items() if k != "pending_after"},
    )


if __name__ == "__main__":
    main()
