#!/usr/bin/python
"""Ansible module: point-in-time recovery from a full backup and the binlog archive."""

DOCUMENTATION = r"""
---
module: mysql_pitr_restore
short_description: Restore MySQL/MariaDB to a datetime, a GTID or a binlog position
description:
  - Picks the newest full backup (of O(full_backups)) before the target, restores it into a new
    scratch instance (O(scratch_dir)) or into an existing server (O(target_defaults_file)), and
    replays the archived binlogs from the backup's coordinates up to the target, exclusive of the
    target transaction (C(mariadb-binlog --start-position/--stop-position | mariadb --binary-mode)).
  - Everything is decided before anything changes. A target outside the archive's range, before the
    oldest backup, or needing a binlog the archive lacks is refused with the range the archive covers.
  - O(skip_gtid) or O(skip_position) leaves one transaction out and goes on (the DROP at 14:02,
    keeping the writes after it).
  - A scratch instance is a private mariadbd on a socket in O(scratch_dir) (no network, no binlog),
    removed again when the restore fails. An existing server cannot be rolled back by this module;
    if the replay fails half way, the message says how many transactions were applied.
  - A btw mysqldump set's dump (O(full_backups) C(kind=btw)) holds one database. It is a starting point
    when O(database) names that database (the newest full backup of any kind before the target is
    used), or when the backups listed are btw dumps of one database only. From a btw dump the scratch
    instance holds that database alone (other databases are not restored) and the replay is
    filtered to it (C(mariadb-binlog --database)); transactions that filter cannot replay exactly (a
    statement on the database run under another default database, one statement changing it and
    another database) are refused in the plan. A btw base is restored into a scratch instance only.
  - Check mode reports the plan (backup, ranges, transactions, where it stops) and changes nothing.
version_added: "1.0.0"
options:
  archive_dir:
    description: The source's binlog archive directory.
    type: path
    required: true
  full_backups:
    description:
      - As in M(mysql_binlog_archive_status) (dicts with C(kind) C(dump), C(lvm) or C(btw) and C(path)).
    type: list
    elements: dict
    required: true
  database:
    description:
      - Restore this one database. A btw dump of it may then be the base (when it is the newest full
        backup before the target); an LVM backup or full dump, when newer, restores every database as usual.
      - Refused when no listed btw set holds a dump of it with binlog coordinates.
    type: str
  target_datetime:
    description: Recover to just before this moment (ISO 8601; UTC without a zone, or with an offset).
    type: str
  target_gtid:
    description: Recover to just before the transaction with this GTID.
    type: str
  target_position:
    description:
      - Recover up to this binlog position (C(file:position)); transactions ending after it are not applied.
    type: str
  target_latest:
    description: Recover everything the archive holds.
    type: bool
    default: false
  skip_gtid:
    description: Leave out the transaction with this GTID and go on.
    type: str
  skip_position:
    description: Leave out the transaction starting at this C(file:position) and go on.
    type: str
  scratch_dir:
    description: New (or empty) directory for a scratch instance to restore into.
    type: path
  scratch_user:
    description: System user the scratch mariadbd runs as.
    type: str
    default: mysql
  scratch_options:
    description: Extra mariadbd options for the scratch instance (e.g. C(--innodb-buffer-pool-size=1G)).
    type: list
    elements: str
    default: []
  scratch_keep_running:
    description: Leave the scratch instance running after the restore (to inspect or dump it).
    type: bool
    default: true
  target_defaults_file:
    description: 0600 option file naming an existing server to restore into (replaces its data).
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: The shop database as it was just before 14:02 UTC, in a scratch instance
  mysql_pitr_restore:
    archive_dir: /srv/backup/binlog/db1
    full_backups:
      - kind: lvm
        path: /srv/backup/lvm
    target_datetime: "2026-12-02 14:02:00"
    scratch_dir: /srv/restore/db1-1402

- name: The shop database alone, from its btw mysqldump set if that is the newest base
  mysql_pitr_restore:
    archive_dir: /srv/backup/binlog/db1
    full_backups:
      - kind: lvm
        path: /srv/backup/lvm
      - kind: btw
        path: /srv/backups/db/shop
    database: shop
    target_gtid: 0-1-4711
    scratch_dir: /srv/restore/shop-4711
"""

RETURN = r"""
backup:
  description:
    - The full backup restored (kind, name, path, binlog_file, binlog_position, gtid, time, database).
    - C(database) is the one database of a btw dump, null for an LVM backup or a full dump.
  returned: always
  type: dict
database:
  description: The one database restored and replayed (a btw base), null when every database is.
  returned: always
  type: str
restores:
  description: What the restored instance holds, in words (every database, or one database only).
  returned: always
  type: str
transactions:
  description: Transactions the plan replays.
  returned: always
  type: int
transactions_applied:
  description: Transactions replayed.
  returned: when not in check mode
  type: int
ranges:
  description: The binlog ranges replayed (from_file, from_position, to_file, to_position, transactions).
  returned: always
  type: list
  elements: dict
last_applied:
  description: The last transaction applied (file, position, end_position, time, gtid).
  returned: always
  type: dict
stops_before:
  description: The first transaction not applied (the target), null when the archive's end.
  returned: always
  type: dict
skipped:
  description: The transaction left out.
  returned: always
  type: dict
archive:
  description: The range the archive covers, in words.
  returned: always
  type: str
scratch:
  description: The scratch instance (directory, socket, pid, defaults_file, running).
  returned: with O(scratch_dir), when not in check mode
  type: dict
duration_seconds:
  description: Duration of the restore and replay.
  returned: when not in check mode
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.binlog_archive import ArchiveError
from ansible.module_utils.mysql_pitr import (
    check_destination,
    execute,
    parse_skip,
    parse_target,
    plan,
    summary,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            archive_dir=dict(type="path", required=True),
            full_backups=dict(type="list", elements="dict", required=True),
            database=dict(type="str"),
            target_datetime=dict(type="str"),
            target_gtid=dict(type="str"),
            target_position=dict(type="str"),
            target_latest=dict(type="bool", default=False),
            skip_gtid=dict(type="str"),
            skip_position=dict(type="str"),
            scratch_dir=dict(type="path"),
            scratch_user=dict(type="str", default="mysql"),
            scratch_options=dict(type="list", elements="str", default=[]),
            scratch_keep_running=dict(type="bool", default=True),
            target_defaults_file=dict(type="path"),
        ),
        required_one_of=[("scratch_dir", "target_defaults_file")],
        mutually_exclusive=[("scratch_dir", "target_defaults_file"), ("skip_gtid", "skip_position")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        target = parse_target(
            p["target_datetime"], p["target_gtid"], p["target_position"], p["target_latest"]
        )
        the_plan = plan(
            p["archive_dir"],
            p["full_backups"],
            target,
            parse_skip(p["skip_gtid"], p["skip_position"]),
            database=p["database"],
        )
        check_destination(the_plan, in_place=bool(p["target_defaults_file"]))
        if module.check_mode:
            module.exit_json(changed=True, **summary(the_plan))
        result = execute(
            the_plan,
            scratch_dir=p["scratch_dir"],
            target_defaults_file=p["target_defaults_file"],
            scratch_user=p["scratch_user"],
            scratch_options=p["scratch_options"],
            keep_running=p["scratch_keep_running"],
        )
    except (ArchiveError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
