#!/usr/bin/python
"""Ansible module: restore an LVM snapshot backup of a MySQL/MariaDB datadir, into a scratch
directory (proven by a throwaway server) or, step by step under a play's guard, in place."""

DOCUMENTATION = r"""
---
module: lvm_snapshot_restore
short_description: Restore an LVM snapshot backup of a MySQL/MariaDB datadir, in a scratch place or in place
description:
  - Works on the layout lvm_snapshot_copy publishes (C(<dest>/<UTC timestamp>/<label>/...) or
    C(<label>.tar), C(MANIFEST.sha256), C(metadata.json)). Every step that copies checks the room on
    the target filesystem first, and the files of the volume against the manifest while it copies;
    a copy of a backup that fails its manifest is removed before anything uses it.
  - C(step=scratch) copies the backup's datadir into O(scratch_dir) (a new or empty directory, never
    inside the live datadir or the backup directory), owned by O(scratch_user); re-points the binlog
    index inside the copy; starts a throwaway C(mariadbd --no-defaults) on it (own socket, no network,
    no binlog, grants skipped) as that user; runs CHECK TABLE on every table; counts the rows of every
    table and compares them with the counts the backup recorded at its verification; stops it. The
    directory is removed, or with O(keep) kept with a server running on its own socket (and
    O(scratch_port) on 127.0.0.1 when given). The live server is not touched.
  - The in-place steps are run by playbooks/lvm_snapshot_restore.yml under its confirmation, in this
    order. C(prepare) stages the copy inside O(datadir) (the same filesystem, also when the datadir is
    a mount point), owned like the datadir. C(swap) (server stopped) moves every entry of the datadir
    into C(<datadir>/.pre-restore-<run>) and the staged entries in. C(check) runs CHECK TABLE on every
    table of the restarted server. C(rollback) puts the set-aside entries back, judged by what is on
    disk (what the failed restore left goes to C(.failed-restore-<run>)). C(finish) removes what is
    left of the staging and, unless O(keep_previous), the set-aside data.
version_added: "1.0.0"
options:
  step:
    description: What to do (see the description).
    type: str
    choices: [scratch, prepare, swap, check, rollback, finish]
    required: true
  dest:
    description: The backup directory (C(lvm_snapshot_backup_dest)). Needed by C(scratch) and C(prepare).
    type: path
  name:
    description: The backup to restore, a directory name such as C(20261122T013000Z), or C(latest).
    type: str
    default: latest
  label:
    description: The volume of the backup that holds the datadir.
    type: str
    default: mysql
  subdir:
    description: The datadir inside that volume.
    type: str
    default: "."
  datadir:
    description:
      - The live datadir. The in-place steps replace its contents; C(scratch) only refuses a scratch
        directory inside or around it.
    type: path
  run:
    description: The run's UTC timestamp (C(20261203T041500Z)) naming its staging and set-aside directories.
    type: str
  scratch_dir:
    description:
      - C(scratch) - a new or empty directory for the copy and its server (socket path at most 107 bytes).
    type: path
  scratch_user:
    description: C(scratch) - the unprivileged user that owns the copy and runs its server.
    type: str
    default: mysql
  scratch_port:
    description:
      - C(scratch) with O(keep) - a TCP port on 127.0.0.1 for the kept server; C(0) for the socket only.
    type: int
    default: 0
  keep:
    description: C(scratch) - keep the directory with a server running on it, for the operator.
    type: bool
    default: false
  keep_previous:
    description: C(finish) - keep the set-aside previous data in C(<datadir>/.pre-restore-<run>).
    type: bool
    default: true
  start_timeout:
    description: Seconds the throwaway server may take to start (InnoDB crash recovery of the copy).
    type: int
    default: 300
extends_documentation_fragment:
  - mysql_connection
attributes:
  check_mode:
    support: full
    details:
      - C(scratch) and C(prepare) run their checks (backup, target, room, port) and report the plan.
      - Nothing is copied or moved.
  diff_mode:
    support: none
notes:
  - The login_* options are used by C(check) only (the restored live server).
  - MariaDB lists the C(.pre-restore-<run>) directory in a mount-point datadir as a database
    C(#mysql50#.pre-restore-<run>), as it lists an ext4 C(lost+found); it holds no tables.
requirements:
  - rsync, GNU tar (for C(method=tar) backups), mariadbd or mysqld, PyMySQL
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Restore the newest backup into a scratch directory and prove it
  lvm_snapshot_restore:
    step: scratch
    dest: /srv/backup/lvm
    scratch_dir: /srv/restore/drill
    datadir: /var/lib/mysql

- name: Keep a restored copy running on port 3399 for a look
  lvm_snapshot_restore:
    step: scratch
    dest: /srv/backup/lvm
    name: 20261122T013000Z
    scratch_dir: /srv/restore/1122
    keep: true
    scratch_port: 3399

- name: Stage the copy inside the datadir (in place, first step)
  lvm_snapshot_restore:
    step: prepare
    dest: /srv/backup/lvm
    datadir: /var/lib/mysql
    run: 20261203T041500Z
"""

RETURN = r"""
backup:
  description: The backup restored (C(scratch), C(prepare)).
  returned: when a backup was chosen
  type: str
name:
  description: Its name.
  returned: when a backup was chosen
  type: str
bytes:
  description: Bytes of the datadir in the backup (the archive's size for tar).
  returned: when a backup was chosen
  type: int
files_checked:
  description: Files of the volume checked against the manifest.
  returned: when the backup was copied
  type: int
tables_checked:
  description: Tables that passed CHECK TABLE.
  returned: C(scratch), C(check)
  type: int
row_counts:
  description:
    - Rows per table (C(db.table)), every table for C(scratch), the tables the backup recorded for C(check).
  returned: C(scratch), C(check)
  type: dict
row_counts_compared:
  description: Tables whose restored count was compared with the count the backup recorded.
  returned: C(scratch)
  type: list
  elements: str
scratch_dir:
  description: The scratch directory.
  returned: C(scratch)
  type: str
socket:
  description: The kept scratch server's socket (its client option file is O(scratch_dir)/client.cnf).
  returned: C(scratch) with O(keep)
  type: str
aside:
  description: Where the live entries are set aside.
  returned: C(prepare), C(swap)
  type: str
state:
  description: C(rollback) - C(untouched) (nothing had been moved) or C(rolled_back).
  returned: C(rollback)
  type: str
msg:
  description: What was done, and for C(rollback) the state things are in.
  returned: always
  type: str
seconds:
  description: Duration of a scratch restore.
  returned: C(scratch)
  type: float
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.lvm_restore import (
    RestoreError,
    finish_in_place,
    prepare_in_place,
    read_metadata,
    rollback_in_place,
    scratch_restore,
    swap_in_place,
)
from ansible.module_utils.mysql_connection import (
    HAS_PYMYSQL,
    MYSQL_ERRORS,
    MySQLConnectionError,
    connect,
    connection_argument_spec,
    login_params,
)
from ansible.module_utils.mysql_datadir_verify import VerifyError, check_tables

NEEDS = dict(scratch=("dest", "scratch_dir"), prepare=("dest", "datadir", "run"), swap=("datadir", "run"),
             rollback=("datadir", "run"), finish=("datadir", "run"), check=("dest",))


def check_live(p):
    """CHECK TABLE every table of the restored, restarted server; count the tables the backup recorded."""
    from ansible.module_utils.lvm_restore import choose

    metadata = read_metadata(choose(p["dest"], p["name"]))
    recorded = ((metadata.get("verification") or {}).get("row_counts")) or {}
    import pymysql.cursors

    conn = connect(login_params(p))
    try:
        with conn.cursor(pymysql.cursors.Cursor) as cur:  # tuples, as check_tables reads them
            checked = check_tables(cur, sorted(recorded))
    finally:
        conn.close()
    return dict(checked, changed=False, recorded_row_counts=recorded,
                msg=f"{checked['tables_checked']} tables check OK on the restored server")


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            step=dict(type="str", required=True, choices=list(NEEDS)),
            dest=dict(type="path"),
            name=dict(type="str", default="latest"),
            label=dict(type="str", default="mysql"),
            subdir=dict(type="str", default="."),
            datadir=dict(type="path"),
            run=dict(type="str"),
            scratch_dir=dict(type="path"),
            scratch_user=dict(type="str", default="mysql"),
            scratch_port=dict(type="int", default=0),
            keep=dict(type="bool", default=False),
            keep_previous=dict(type="bool", default=True),
            start_timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    p = module.params
    step = p["step"]
    missing = [k for k in NEEDS[step] if not p[k]]
    if missing:
        module.fail_json(msg=f"step {step} needs {', '.join(missing)}; nothing was changed")
    if step in ("scratch", "check") and not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"))
    check = module.check_mode
    try:
        if step == "scratch":
            r = scratch_restore(p["dest"], p["name"], p["label"], p["subdir"], p["scratch_dir"],
                                live_datadir=p["datadir"], user=p["scratch_user"], port=p["scratch_port"],
                                keep=p["keep"], check_mode=check, start_timeout=p["start_timeout"])
            r.update(changed=not check, msg=(
                f"would restore {r['name']} into {r['scratch_dir']}" if check else
                f"restored {r['name']} into {r['scratch_dir']}: {r['tables_checked']} tables check OK, "
                f"rows of {len(r['row_counts'])} counted, {len(r['row_counts_compared'])} equal to the "
                "backup's record"
                + ("; the server keeps running" if p["keep"] else "; scratch copy removed")))
        elif step == "prepare":
            r = prepare_in_place(p["dest"], p["name"], p["label"], p["subdir"], p["datadir"], p["run"],
                                 check_mode=check)
            verb = "would stage" if check else "staged"
            r.update(changed=not check, msg=f"{verb} {r['name']} in {r['staging']}")
        elif check:
            r = dict(changed=step != "check", msg=f"step {step} skipped in check mode")
        elif step == "swap":
            r = swap_in_place(p["datadir"], p["run"])
            r.update(changed=True,
                     msg=f"restored data moved into {p['datadir']}; previous data in {r['aside']}")
        elif step == "rollback":
            r = rollback_in_place(p["datadir"], p["run"])
            r["changed"] = r["state"] != "untouched"
        elif step == "finish":
            r = finish_in_place(p["datadir"], p["run"], p["keep_previous"])
            r["msg"] = f"previous data kept in {r['previous']}" if r["previous"] else "previous data removed"
        else:
            r = check_live(p)
    except (RestoreError, VerifyError) as exc:
        module.fail_json(msg=str(exc))
    except MySQLConnectionError as exc:
        module.fail_json(msg=f"the restored server: {exc}")
    except MYSQL_ERRORS as exc:
        module.fail_json(msg=f"the restored server: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"step {step} failed: {exc}")
    module.exit_json(**r)


if __name__ == "__main__":
    main()
