#!/usr/bin/python
"""Ansible module: record backup runs as Prometheus textfile-collector metrics."""

DOCUMENTATION = r"""
---
module: backup_metrics
short_description: Record backup runs as Prometheus textfile-collector metrics
description:
  - Writes C(backup_last_success_timestamp_seconds), C(backup_last_run_timestamp_seconds),
    C(backup_last_result), C(backup_last_suspect), C(backup_last_duration_seconds),
    C(backup_last_size_bytes) and, where given, C(backup_last_lock_seconds) and
    C(backup_last_downtime_seconds), labelled by C(strategy) and C(set), into one file of
    node_exporter's textfile collector directory.
  - C(strategy) is the run_backup strategy name the playbooks publish (C(seafile_backup_server),
    C(lvm_snapshot_backup), C(fcrepo_backup), C(fs_backup), C(db_backup), C(offsite_sync); the
    operational playbooks their own names). Series still under the labels used before (C(btw_fs),
    C(btw_db), C(btw_offsite), C(seafile_replication), C(lvm_snapshot), fcrepo's C(hot), C(pause),
    C(shutdown), C(rest)) are moved to the current name, keeping their last success.
  - The file is rewritten atomically (temporary file in the same directory, then rename, mode
    0644) under a lock by the writer shared with M(seafile_backup_metrics); series of other
    strategies and sets already in the file are kept.
  - A failed run updates result, duration and last-run time, and keeps the last success time and
    size of the previous good backup, so staleness alerts keep working.
  - A C(suspect) run (the shrink guard kept its backup without counting it as good) is recorded as
    not a success (C(backup_last_result) 0) with C(backup_last_suspect) 1.
  - Give either O(runs) (the C(backup_runs) list the strategy playbooks publish with set_stats) or
    O(strategy) and O(result) for one run.
version_added: "1.0.0"
options:
  collector_dir:
    description: node_exporter's C(--collector.textfile.directory). Must exist.
    type: path
    required: true
  file_name:
    description: Name of the metrics file in O(collector_dir); must end in C(.prom).
    type: str
    default: backup_toolkit.prom
  runs:
    description:
      - List of runs, each a mapping with C(strategy), C(result) (C(ok), C(suspect) or C(failed)) and
        optionally C(set) (default the C(host) key, then C(default)), C(duration_seconds), C(size_bytes),
        C(lock_seconds), C(downtime_seconds), C(timestamp) (Unix time the run finished, default now).
    type: list
    elements: dict
  strategy:
    description: Strategy of a single run (when O(runs) is not given).
    type: str
  set:
    description: Backup set label of a single run (a database, a volume, a host).
    type: str
    default: default
  result:
    description: Result of a single run.
    type: str
    choices: [ok, suspect, failed]
  duration_seconds:
    description: Duration of a single run.
    type: float
  size_bytes:
    description: Size of the backup of a single run.
    type: int
  lock_seconds:
    description: Seconds writes were locked during a single run.
    type: float
  downtime_seconds:
    description: Seconds the application was down during a single run.
    type: float
  timestamp:
    description: Unix time a single run finished; default now.
    type: float
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Publish the metrics of this run
  backup_metrics:
    collector_dir: /var/lib/prometheus/node-exporter
    runs: "{{ backup_runs }}"

- name: Record one failed run
  backup_metrics:
    collector_dir: /var/lib/prometheus/node-exporter
    strategy: db_backup
    set: wiki
    result: failed
    duration_seconds: 12.5
"""

RETURN = r"""
path:
  description: The metrics file written.
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/backup_toolkit.prom
recorded:
  description: Number of runs recorded.
  returned: always
  type: int
  sample: 1
metrics:
  description: The full content of the metrics file after the update.
  returned: always
  type: str
"""

from ansible.module_utils.backup_metrics import DEFAULT_FILE, MetricsError, record
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            collector_dir=dict(type="path", required=True),
            file_name=dict(type="str", default=DEFAULT_FILE),
            runs=dict(type="list", elements="dict"),
            strategy=dict(type="str"),
            set=dict(type="str", default="default"),
            result=dict(type="str", choices=["ok", "suspect", "failed"]),
            duration_seconds=dict(type="float"),
            size_bytes=dict(type="int"),
            lock_seconds=dict(type="float"),
            downtime_seconds=dict(type="float"),
            timestamp=dict(type="float"),
        ),
        mutually_exclusive=[("runs", "strategy")],
        required_one_of=[("runs", "strategy")],
        required_by={"strategy": "result"},
        supports_check_mode=True,
    )
    p = module.params
    if p["runs"] is not None:
        runs = p["runs"]
    else:
        runs = [{key: p[key] for key in ("strategy", "set", "result", "duration_seconds", "size_bytes",
                                         "lock_seconds", "downtime_seconds", "timestamp")}]
    try:
        changed, before, after, path = record(p["collector_dir"], runs, p["file_name"],
                                              check_mode=module.check_mode)
    except MetricsError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, path=path, recorded=len(runs), metrics=after,
                     diff={"before": before, "after": after, "before_header": path, "after_header": path})


if __name__ == "__main__":
    main()
