#!/usr/bin/python
"""Ansible module: facts of one source's binlog archive (files, range, gaps, lag, events)."""

DOCUMENTATION = r"""
---
module: mysql_binlog_archive_status
short_description: What a MySQL/MariaDB binlog archive holds, its gaps and its lag behind the source
description:
  - Reads the binlog files of one source's archive (as roles/mysql_binlog_archive's archiver
    writes them) and reports the files, the range covered (time, GTID, file:position of the first
    and last complete transaction), the gaps, and the lag in bytes and seconds.
  - With O(defaults_file), asks the source (C(SHOW BINARY LOGS) through the mariadb client, with that
    0600 option file as C(--defaults-file)). An unreachable source is reported in RV(source_error),
    the archive's own facts still come back.
  - Gaps are counted from the binlog file of the oldest full backup listed in O(full_backups), as
    a file missing from the archive (purged on the source before it was archived), a file archived
    incomplete, or a source that was re-initialised.
  - With O(events_since) or O(events_until), lists the transactions in that window (optionally only
    those touching O(events_database) / O(events_table)), to find the moment to recover to.
  - Changes nothing but the metrics file (O(metrics_dir)).
version_added: "1.0.0"
options:
  directory:
    description: The source's archive directory (C(<archive root>/<source name>)).
    type: path
    required: true
  defaults_file:
    description:
      - 0600 option file with the archiver's login on the source ([client] host, port, user, password).
    type: path
  full_backups:
    description:
      - The full backups whose coordinates count, each a dict with C(kind) (C(dump), C(lvm) or C(btw))
        and C(path) (a dump file or a directory of dumps; an LVM backup destination; a btw mysqldump
        set's destination, whose stored dumps recorded their coordinates), for C(lvm) optionally
        C(label) and C(subdir).
    type: list
    elements: dict
    default: []
  events_since:
    description: List the transactions at or after this datetime (ISO 8601; UTC without a zone).
    type: str
  events_until:
    description: List the transactions at or before this datetime.
    type: str
  events_database:
    description: Only transactions touching this database.
    type: str
  events_table:
    description: Only transactions touching this table (name without database).
    type: str
  events_limit:
    description: At most this many transactions listed.
    type: int
    default: 200
  max_lag_seconds:
    description: With a value, RV(healthy) is false when the lag is larger (or unknown).
    type: int
  metrics_dir:
    description:
      - node_exporter's textfile collector directory; when given, the facts are written there as
        C(mysql_binlog_archive_<source>.prom) (lag_bytes, lag_seconds, gaps, files, size_bytes,
        last_transaction_timestamp_seconds, source_up, healthy; label C(source)).
    type: path
  source:
    description: The source's name, the metrics' C(source) label (default the directory's name).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: How is the archive of db1?
  mysql_binlog_archive_status:
    directory: /srv/backup/binlog/db1
    defaults_file: /etc/mysql-binlog-archive/db1.cnf
    full_backups:
      - kind: lvm
        path: /srv/backup/lvm
  register: archive

- name: What happened to shop.orders around 14:02?
  mysql_binlog_archive_status:
    directory: /srv/backup/binlog/db1
    events_since: "2026-12-02 14:00:00"
    events_until: "2026-12-02 14:05:00"
    events_database: shop
    events_table: orders
"""

RETURN = r"""
files:
  description: Archived binlog files (name, size, closed = ends with a rotate event), oldest first.
  returned: always
  type: list
  elements: dict
first:
  description: First complete transaction archived (file, position, end_position, time, timestamp, gtid).
  returned: always
  type: dict
last:
  description: Last complete transaction archived.
  returned: always
  type: dict
transactions:
  description: Complete transactions in the archive.
  returned: always
  type: int
gaps:
  description: Breaks in continuity (kind missing, truncated or reinitialised; file; detail).
  returned: always
  type: list
  elements: dict
continuous:
  description: No gap.
  returned: always
  type: bool
lag_bytes:
  description: Bytes the source has written that the archive has not (null without the source).
  returned: always
  type: int
lag_seconds:
  description: 0 when caught up, else seconds since the newest archived transaction (null without the source).
  returned: always
  type: float
needed_from:
  description: Binlog file of the oldest full backup (where continuity must start).
  returned: always
  type: str
source_error:
  description: Why the source could not be asked, if it could not.
  returned: always
  type: str
healthy:
  description: Continuous, source reachable and (with O(max_lag_seconds)) lag within it.
  returned: always
  type: bool
problems:
  description: Why RV(healthy) is false, one sentence each.
  returned: always
  type: list
  elements: str
metrics_file:
  description: The metrics file written.
  returned: with O(metrics_dir)
  type: str
events:
  description: Transactions in the window asked for (file, position, time, gtid, events, tables, statement).
  returned: when O(events_since) or O(events_until) is given
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.binlog_archive import ArchiveError, status
from ansible.module_utils.binlog_archive_metrics import write as write_metrics
from ansible.module_utils.mysql_full_backups import oldest_needed_file
from ansible.module_utils.mysql_pitr import ArchiveIndex, parse_datetime


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type="path", required=True),
            defaults_file=dict(type="path"),
            full_backups=dict(type="list", elements="dict", default=[]),
            events_since=dict(type="str"),
            events_until=dict(type="str"),
            events_database=dict(type="str"),
            events_table=dict(type="str"),
            events_limit=dict(type="int", default=200),
            max_lag_seconds=dict(type="int"),
            metrics_dir=dict(type="path"),
            source=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        needed = oldest_needed_file(p["full_backups"])
        facts = status(p["directory"], p["defaults_file"], needed)
        problems = [g["detail"] for g in facts["gaps"]]
        if facts["source_error"]:
            problems.append(facts["source_error"])
        if not facts["files"]:
            problems.append(f"the archive {p['directory']} holds no binlog file yet")
        if p["max_lag_seconds"] is not None and p["defaults_file"]:
            lag = facts["lag_seconds"]
            if lag is None or lag > p["max_lag_seconds"]:
                problems.append(
                    f"the archive lags {lag} s behind the source (limit {p['max_lag_seconds']} s)"
                )
        facts.update(healthy=not problems, problems=problems)
        if p["metrics_dir"]:
            source = p["source"] or os.path.basename(p["directory"].rstrip("/"))
            facts["metrics_file"] = write_metrics(p["metrics_dir"], source, facts, module.check_mode)
        if p["events_since"] or p["events_until"]:
            index = ArchiveIndex(p["directory"])
            facts["events"] = index.events(
                since=parse_datetime(p["events_since"]) if p["events_since"] else None,
                until=parse_datetime(p["events_until"]) if p["events_until"] else None,
                database=p["events_database"],
                table=p["events_table"],
                limit=p["events_limit"],
            )
    except (ArchiveError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
