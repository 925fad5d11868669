#!/usr/bin/python
"""Ansible module: FLUSH TABLES WITH READ LOCK held in this process while LVM snapshots are created."""

DOCUMENTATION = r"""
---
module: lvm_snapshot_lock
short_description: Lock MySQL/MariaDB, snapshot one or more LVM volumes, unlock, in one process
description:
  - Steps 1 to 5 of the eXo Platform LVM snapshot procedure in a single module run, because FLUSH
    TABLES WITH READ LOCK lives only as long as its session and cannot be held across Ansible tasks,
    and so that the application (O(app_services)) is down only while the snapshots are taken.
  - Plans the snapshots first (unknown VG/LV, a snapshot name that already exists, a size larger
    than the VG's free space are refused before anything is locked). Sizes are a size or a
    percentage of the origin, rounded up to whole extents. Thin LVs take no size.
  - Looks for statements running for O(long_query_seconds) or more and waits up to
    O(long_query_wait_seconds) for them to end, else refuses (FTWRL would queue behind them while
    blocking every writer).
  - Takes the lock with O(lock_wait_timeout), reads the binlog coordinates and GTID position at the
    lock, creates every snapshot, and releases the lock in a C(finally). If one lvcreate fails the
    snapshots already created (and the one it was creating) are removed, after the application
    services were started again (each C(lvremove) bounded to 60 s; a hung LVM makes it wait too).
  - A watchdog bounds the lock to O(lock_max_seconds) - a hung C(lvcreate) would otherwise block
    every production write for as long as it hangs. Past the bound it ends the lock's session from
    a second session (C(KILL CONNECTION); the server releases the lock with it), interrupts the
    C(lvcreate) (SIGINT, then SIGTERM, then SIGKILL), starts the application again, removes the
    snapshots of this run, half-made ones included, and the module fails saying so.
  - With O(lock_mysql=false) only the snapshots are taken (application data without a database).
  - In check mode only the plan is returned (and the MySQL server is reached once when
    O(lock_mysql=true), so an unreachable server is reported before the application is stopped).
version_added: "1.0.0"
author: Backup toolkit team
options:
  snapshots:
    description: Volumes to snapshot together, under one lock.
    type: list
    elements: dict
    required: true
    suboptions:
      vg:
        description: Volume group.
        type: str
        required: true
      lv:
        description: Origin logical volume.
        type: str
        required: true
      size:
        description:
          - Copy-on-write space of a classic snapshot, C(200M), C(1G) or a percentage of the origin
            C(20%). Rounded up to whole extents. Ignored for thin LVs.
        type: str
      name:
        description: Snapshot name; default the origin name followed by O(snapshot_suffix).
        type: str
      label:
        description: Name of this volume in the backup (passed to lvm_snapshot_copy); default the LV name.
        type: str
  snapshot_suffix:
    description: Suffix of snapshot names (also how lvm_snapshot_cleanup recognises stale ones).
    type: str
    default: -backup-snap
  backup_dest:
    description:
      - Where the snapshots will be copied; refused during planning (before any lock) when it is on
        one of the volumes being snapshotted.
    type: path
  app_services:
    description:
      - systemd services of the application, stopped (in order) right before the lock and started
        again (reverse order) right after the unlock, in this same process, so the application is
        down only for the lock and the snapshots. Started again even when a step fails.
      - In check mode each must be a known unit.
    type: list
    elements: str
    default: []
  lock_mysql:
    description: Take FLUSH TABLES WITH READ LOCK around the snapshots.
    type: bool
    default: true
  long_query_seconds:
    description: A statement running this long or longer blocks the lock.
    type: int
    default: 30
  long_query_wait_seconds:
    description: How long to wait for such statements to end before refusing.
    type: int
    default: 30
  lock_wait_timeout:
    description: Session lock_wait_timeout for FLUSH TABLES WITH READ LOCK, in seconds.
    type: int
    default: 10
  lock_max_seconds:
    description:
      - Longest time the read lock may be held while the snapshots are created; past it the
        watchdog releases the lock, stops C(lvcreate), and the run fails. On any failure the
        application services are started again first, then the snapshots the run made (half-made
        ones too) are removed, each C(lvremove) bounded to 60 s (a hung LVM makes it wait too).
      - 0 disables the watchdog (not recommended).
    type: float
    default: 60
  login_user:
    description:
      - MySQL user on the server being snapshotted (needs RELOAD, PROCESS, and REPLICATION CLIENT /
        BINLOG MONITOR); when not given, the C(user) of O(config_file).
    type: str
extends_documentation_fragment:
  - mysql_connection
requirements:
  - lvm2
  - PyMySQL (when O(lock_mysql=true))
"""

EXAMPLES = r"""
- name: Flush & read lock, create the snapshots, unlock
  lvm_snapshot_lock:
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    snapshots:
      - {vg: vgdata, lv: mysql, size: 20%}
      - {vg: vgdata, lv: app, size: 256M}
  register: lock
"""

RETURN = r"""
snapshots:
  description: The snapshots created (or planned in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{vg: vgdata, origin: mysql, name: mysql-backup-snap, path: /dev/vgdata/mysql-backup-snap,
            origin_path: /dev/vgdata/mysql, thin: false, size_bytes: 209715200, extents: 50}]
lock_seconds:
  description: Time FLUSH TABLES WITH READ LOCK was held (0 without lock).
  returned: success
  type: float
app_downtime_seconds:
  description: Time from stopping the first application service to starting the last one (0 without services).
  returned: success
  type: float
lock_wait_seconds:
  description: Time taken to obtain the lock.
  returned: success
  type: float
snapshot_seconds:
  description: Time spent creating all snapshots.
  returned: success
  type: float
coordinates:
  description: Binlog file/position and GTID position read under the lock.
  returned: success with lock_mysql
  type: dict
  sample: {binlog_file: mysql-bin.000002, binlog_position: 4521, gtid: 0-1-42}
server_version:
  description: MySQL/MariaDB version.
  returned: success with lock_mysql
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.lvm_snapshot import (
    LvmError,
    create_snapshots,
    plan_snapshots,
    read_lvs,
    read_vgs,
    remove_snapshots,
    run_with_services_stopped,
)
from ansible.module_utils.lvm_snapshot_copy import CopyError, check_destination
from ansible.module_utils.mysql_connection import (
    HAS_PYMYSQL,
    PYMYSQL_IMPORT_ERROR,
    MySQLConnectionError,
    connect,
    connection_argument_spec,
    login_params,
)
from ansible.module_utils.mysql_lock import MysqlLockError, lock_and_snapshot, no_lock_snapshot
from ansible.module_utils.stoppable_runner import StoppableRunner

# each lvremove of a failed run's snapshots, made once the application runs again, is bounded (s)
LVREMOVE_BOUND = 60


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            snapshots=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    vg=dict(type="str", required=True),
                    lv=dict(type="str", required=True),
                    size=dict(type="str"),
                    name=dict(type="str"),
                    label=dict(type="str"),
                ),
            ),
            snapshot_suffix=dict(type="str", default="-backup-snap"),
            backup_dest=dict(type="path"),
            app_services=dict(type="list", elements="str", default=[]),
            lock_mysql=dict(type="bool", default=True),
            long_query_seconds=dict(type="int", default=30),
            long_query_wait_seconds=dict(type="int", default=30),
            lock_wait_timeout=dict(type="int", default=10),
            lock_max_seconds=dict(type="float", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["lock_max_seconds"] < 0:
        module.fail_json(msg="lock_max_seconds must be 0 (no watchdog) or a number of seconds", snapshots=[])
    if p["lock_mysql"] and not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))

    def runner(args):
        return module.run_command(args, environ_update={"LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"})

    try:
        plans = plan_snapshots(p["snapshots"], read_lvs(runner), read_vgs(runner), p["snapshot_suffix"])
        if p["backup_dest"]:
            check_destination(p["backup_dest"], [plan["origin_path"] for plan in plans])
    except (LvmError, CopyError) as exc:
        module.fail_json(msg=f"snapshot plan refused, nothing locked or created: {exc}", snapshots=[])
    if module.check_mode:
        for name in p["app_services"]:
            rc, out, err = runner(["systemctl", "show", "-p", "LoadState", "--value", name])
            if rc != 0 or out.strip() != "loaded":
                module.fail_json(
                    msg=f"application service {name!r} is not a known systemd unit", snapshots=[]
                )
        server_version = None
        if p["lock_mysql"]:  # reachable now, or the run would stop the application for nothing
            try:
                conn = connect(login_params(p))
            except MySQLConnectionError as exc:
                module.fail_json(
                    msg=f"MySQL unreachable, nothing locked and no snapshot taken: {exc}", snapshots=[]
                )
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT VERSION() AS v")
                    server_version = cur.fetchone()["v"]
            finally:
                conn.close()
        module.exit_json(
            changed=True,
            snapshots=plans,
            lock_seconds=0.0,
            snapshot_seconds=0.0,
            server_version=server_version,
        )

    # lvcreate runs through a runner the lock's watchdog can interrupt (module.run_command cannot be)
    lvcreate_runner = StoppableRunner(env={"LVM_SUPPRESS_FD_WARNINGS": "1"})

    # every snapshot this run made or may have half-made: on a failure they are removed only once the
    # application services run again (a hung LVM makes lvremove wait too; bounded, see below)
    made = []

    def snapshot():
        created, _seconds = create_snapshots(lvcreate_runner, plans, stopped=lambda: lvcreate_runner.stopped,
                                             cleanup=made.extend)
        made.extend(created)
        return created

    def remove_made():
        """Remove what this run made, each lvremove bounded; a sentence for the failure message."""
        if not made:
            return ""

        def bounded(args):
            return runner(["timeout", "-s", "INT", "-k", "10", str(LVREMOVE_BOUND), *args])

        problems = remove_snapshots(bounded, made)
        names = ", ".join(f"{m['vg']}/{m['name']}" for m in made)
        if problems:
            return (f" The application services were started again first; removing the snapshots this "
                    f"run made ({names}) failed (LVM busy or hung? each lvremove is bounded to "
                    f"{LVREMOVE_BOUND} s): {'; '.join(problems)}. Remove them with the cleanup step "
                    "(lvm_snapshot_cleanup) once LVM answers.")
        return (f" The application services were started again, then the snapshots this run made "
                f"were removed ({names}).")

    def lock_and_snap():
        if p["lock_mysql"]:
            params = login_params(p)
            return lock_and_snapshot(
                lambda: connect(params),
                snapshot,
                long_query_seconds=p["long_query_seconds"],
                long_query_wait_seconds=p["long_query_wait_seconds"],
                lock_wait_timeout=p["lock_wait_timeout"],
                max_lock_seconds=p["lock_max_seconds"] or None,
                on_lock_expired=lvcreate_runner.stop,
            )
        return no_lock_snapshot(snapshot)

    try:
        result, downtime = run_with_services_stopped(runner, p["app_services"], lock_and_snap)
    except (MysqlLockError, LvmError) as exc:
        module.fail_json(msg=str(exc) + remove_made(), snapshots=[])
    except Exception as exc:  # the lock is already released by the core's finally
        module.fail_json(msg=f"unexpected error, lock released: {exc}" + remove_made(),
                         exception=traceback.format_exc())
    result["app_downtime_seconds"] = round(downtime, 3)
    snapshots = result.pop("snapshot")
    module.exit_json(changed=True, snapshots=snapshots, **result)


if __name__ == "__main__":
    main()
