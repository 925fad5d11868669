"""Issue #15 items 8 and 9 on real LVM in the lab VM (scripts/lab/lvm-vm.sh); the host tests stand LVM
in (tests/integration/test_lvm_mysql_lock.py, test_lvm_copy_host.py).

- Item 9, the read-lock watchdog: the real lvcreate hangs under FLUSH TABLES WITH READ LOCK because
  another process holds LVM's own lock of the VG (a shared flock on <locking_dir>/V_vgdata: lvs and
  vgs still read, a command that changes the VG waits). playbooks/lvm_snapshot_backup.yml, run with
  lvm_snapshot_backup_lock_max_seconds=5, must end the lock at the bound (writes resume while LVM is
  still held), interrupt lvcreate and fail saying so, leaving no snapshot, mount or partial copy, the
  earlier backups as they were, and the application started again while LVM is still held (the
  module's removal of the half-made snapshot, which waits on the same VG lock, comes after the
  application's start and is bounded; the play ends once the test lets LVM go).
- Item 8, the cleanup: lvm_snapshot_cleanup, with the playbook's arguments, on a mount root that is
  itself a mount and holds a foreign tmpfs, a bind mount under a toolkit snapshot's name and a real
  snapshot mounted as a killed run leaves it. Only that snapshot mount goes (and the two snapshot
  LVs); mount_root / and /run are refused before anything is looked at.
"""

import json
import os
import subprocess

import pytest
import yaml

from tests.integration.test_lvm_vm_faults import SETTINGS, run_backup
from tests.lib import canary
from tests.lib.lvm_vm import ssh, ssh_result

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEST = SETTINGS["lvm_snapshot_backup_dest"]
ROOT = "/run/lvm-snapshot-backup"  # the role's lvm_snapshot_backup_mount_root
VG_LOCK = "/run/lock/lvm/V_vgdata"  # LVM's file lock of vgdata (lvm2 2.03: flock in global/locking_dir)
HOLDER = "hardening-vg-lock"  # the transient unit holding it
WRITE_RECORD = "/run/hardening-write"
BOUND = 5  # lvm_snapshot_backup_lock_max_seconds
# a backup the failed run must leave alone when the VM has none yet (this module run on its own)
STAND_IN = f"{DEST}/20000101T000000Z"

pytestmark = [pytest.mark.slow, pytest.mark.vm]


@pytest.fixture(scope="module")
def lab(lab_vm, tmp_path_factory):
    base = tmp_path_factory.mktemp("lvmhardening")
    settings = base / "settings.json"
    canary.write_private(settings, json.dumps(SETTINGS))
    return {"inventory": lab_vm, "settings": str(settings), "base": base}


def facts(output):
    """key=value lines printed by a script in the VM."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


# the destination's tree, every entry with its inode, size, times and mode: equal = untouched
DEST_DIGEST = f"find {DEST} -printf '%P %i %s %T@ %C@ %m\\n' | sort | sha256sum | cut -c1-16"

PREPARE = f"""set -e
[ "$(lvmconfig --typeconfig full global/locking_dir)" = 'locking_dir="/run/lock/lvm"' ]
[ "$(lvs --noheadings -o lv_name vgdata | grep -c backup-snap || true)" = 0 ]
systemctl is-active --quiet lab-app mariadb lab-writer
rm -f {WRITE_RECORD}
if ls {DEST} | grep -qE '^[0-9]{{8}}T[0-9]{{6}}Z$'; then echo stand_in=no; else
  mkdir -p {STAND_IN}/app && echo stand-in > {STAND_IN}/app/index.html && echo stand_in=yes; fi
echo dest=$({DEST_DIGEST})
echo start=$(date +%s.%N)
systemd-run --quiet --collect --unit={HOLDER} flock --shared {VG_LOCK} sleep 600
# held once an exclusive lock (what lvcreate asks for) is refused
timeout 30 sh -c 'until ! flock -n -x {VG_LOCK} true; do sleep 0.1; done'
"""

# In the VM while the play runs: once lvcreate waits on the VG lock, a write of our own; then, with
# LVM still held, wait for that write and for lvcreate to be gone; then let LVM go. Bounded waits.
DURING_HANG = f"""end=$((SECONDS + 180))
until pgrep -x lvcreate > /dev/null; do
  [ $SECONDS -lt $end ] || {{ echo lvcreate_seen=never; systemctl stop {HOLDER}; exit 0; }}; sleep 0.1
done
echo lvcreate_seen=$(date +%s.%N)
( t0=$(date +%s.%N)
  mariadb -e "SET SESSION lock_wait_timeout = 300; INSERT INTO app.events (payload) VALUES ('hardening')"
  rc=$?; echo "$t0 $(date +%s.%N) $rc" > {WRITE_RECORD} ) > /dev/null 2>&1 &
until [ -s {WRITE_RECORD} ] || [ $SECONDS -ge $end ]; do sleep 0.1; done
until ! pgrep -x lvcreate > /dev/null || [ $SECONDS -ge $end ]; do sleep 0.1; done
echo write=$(cat {WRITE_RECORD} 2>/dev/null)
echo lvcreate_left=$(pgrep -c -x lvcreate)
echo holder=$(systemctl is-active {HOLDER})
echo lvm_waiting=$(pgrep -a -x lvremove | cut -d' ' -f2- | tr '\\n' ';')
# the application comes back while LVM is still held (the run's own lvremove waits for LVM after it)
until systemctl is-active --quiet lab-app || [ $SECONDS -ge $end ]; do sleep 0.2; done
echo app=$(systemctl is-active lab-app)
echo app_holder=$(systemctl is-active {HOLDER})
echo released=$(date +%s.%N)
systemctl stop {HOLDER}
"""

def after_the_run(start, released):
    return f"""
echo snapshots=$(lvs --noheadings -o lv_name vgdata | grep -c backup-snap)
echo mounts=$(grep -c {ROOT} /proc/mounts)
echo partials=$(ls -a {DEST} | grep -c '^[.]partial-')
echo lvm_running=$(pgrep -c -x 'lvcreate|lvremove')
echo dest=$({DEST_DIGEST})
echo services=$(systemctl is-active lab-app mariadb lab-writer | tr '\\n' ' ')
mariadb -e 'SET SESSION lock_wait_timeout = 3; INSERT INTO app.events (payload) VALUES ("after")' \\
  && echo write=ok
# the lab writer's commits from before the play until LVM was let go: the longest pause
awk -v s={start} -v e={released} '$2 >= s && $2 <= e {{ if (p && $2 - p > m) m = $2 - p; p = $2 }}
  END {{ print "writer_pause=" m + 0 }}' /var/log/lab-writer.log
"""


# the stand-in, when this module made it, holds its own mark
RELEASE = (f"systemctl stop {HOLDER} 2> /dev/null; rm -f {WRITE_RECORD};"
           f" grep -qsx stand-in {STAND_IN}/app/index.html && rm -rf {STAND_IN}; true")


def test_a_real_lvcreate_hung_under_the_read_lock_is_stopped_at_the_bound(lab):
    proc = None
    released = False
    try:
        before = facts(ssh(PREPARE))
        proc = run_backup(lab, {"lvm_snapshot_backup_lock_max_seconds": BOUND}, background=True)
        hang = facts(ssh(DURING_HANG))
        out = proc.communicate(timeout=900)[0]
        assert hang["lvcreate_seen"] != "never", ("lvcreate never ran", out[-3000:])
        # our write, issued while lvcreate waited on LVM, went through with LVM still held
        assert hang["write"], ("no write went through while LVM was held: the read lock outlived its "
                               "bound", hang, out[-3000:])
        _, t1, rc = hang["write"].split()
        assert rc == "0" and float(t1) < float(hang["released"]) and hang["holder"] == "active", hang
        # and lvcreate ended then too: interrupted, not finished (LVM was still held)
        assert hang["lvcreate_left"] == "0", hang
        # the application started again while LVM was still held: not after the run's lvremove
        assert (hang["app"], hang["app_holder"]) == ("active", "active"), hang

        text = " ".join(out.split())
        assert proc.returncode != 0, out[-3000:]
        assert 'LVM snapshot backup FAILED at "Steps 1-5' in text, out[-3000:]
        assert (f"the global read lock was held longer than lock_max_seconds={BOUND} s while the "
                "snapshots were created (lvcreate hung?): the watchdog ended the lock's session after"
                ) in text, out[-3000:]
        assert "(KILL CONNECTION" in text and "from a second session), so writes resumed" in text, out[-3000:]
        assert "signals sent to the snapshot step: SIGINT" in text, out[-3000:]
        assert "creating snapshot vgdata/mysql-backup-snap failed" in text, out[-3000:]
        assert "the backup FAILED (no snapshot is kept)" in text, out[-3000:]
        assert "The application services were started again, then the snapshots this run made were removed" \
            in text, out[-3000:]

        after = facts(ssh(after_the_run(before["start"], hang["released"]) + RELEASE))
        released = True
        assert after["snapshots"] == "0" and after["mounts"] == "0" and after["partials"] == "0", after
        assert after["lvm_running"] == "0", after
        assert after["dest"] == before["dest"], "the backup destination changed"
        assert after["services"].split() == ["active"] * 3 and after["write"] == "ok", after
        # no write committed while the lock was held (at least the bound), and commits came back before
        # LVM was let go (our write above)
        assert float(after["writer_pause"]) >= BOUND - 0.5, (after, hang)
    finally:
        if not released:
            ssh_result(RELEASE)
        if proc is not None and proc.poll() is None:
            try:
                proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


# -- item 8: the cleanup on real mounts ---------------------------------------------------------------
FOREIGN = f"{ROOT}/not-ours"
OURS = f"{ROOT}/vgdata-mysql-backup-snap"  # snapshot_mountpoint(ROOT, "vgdata", "mysql-backup-snap")
LOOKALIKE = f"{ROOT}/vgdata-app-backup-snap"  # a toolkit snapshot's name, another device mounted there
BIND_SOURCE = "/run/hardening-bind"

# exit 3: something is in the way, nothing was made (and nothing is cleaned up afterwards)
MAKE_MOUNTS = f"""set -e
[ "$(lvs --noheadings -o lv_name vgdata | grep -c backup-snap || true)" = 0 ] || exit 3
! grep -q ' {ROOT}' /proc/mounts || exit 3
[ -d {ROOT} ] && echo root_existed=yes || echo root_existed=no
mkdir -p {ROOT} {BIND_SOURCE}
mount -t tmpfs -o size=1m,mode=0700 hardening-root {ROOT}
echo operator > {ROOT}/note
mkdir {FOREIGN} && mount -t tmpfs -o size=1m hardening-foreign {FOREIGN} && echo foreign > {FOREIGN}/file
echo bound > {BIND_SOURCE}/file
lvcreate -q -y -s -L 16M -n mysql-backup-snap vgdata/mysql
lvcreate -q -y -s -kn -n app-backup-snap vgdata/app
mkdir {OURS} && mount -t ext4 -o ro,noload /dev/vgdata/mysql-backup-snap {OURS}
mkdir {LOOKALIKE} && mount --bind {BIND_SOURCE} {LOOKALIKE}
"""

UNDO_MOUNTS = f"""for m in {LOOKALIKE} {OURS} {FOREIGN} {ROOT}; do mountpoint -q $m && umount $m; done
for lv in mysql app; do
  lvs vgdata/$lv-backup-snap > /dev/null 2>&1 && lvremove -q -y vgdata/$lv-backup-snap
done
rm -rf {BIND_SOURCE}
"""

# what is left after the cleanup, read before it is undone
STATE = f"""echo mounts=$(findmnt -rn -o TARGET,SOURCE | grep '^{ROOT}' | tr '\\n' ';')
echo files=$(cat {ROOT}/note {FOREIGN}/file {LOOKALIKE}/file | tr '\\n' ' ')
echo snapshots=$(lvs --noheadings -o lv_name vgdata | grep -c backup-snap)
echo our_dir=$(test -e {OURS} && echo left || echo removed)
"""

# one inventory alias of the VM per mount root: the two refusals run side by side, then the cleanup
REFUSED = {"refuse-root": "/", "refuse-run": "/run"}


def run_cleanup(lab):
    """lvm_snapshot_cleanup with the arguments the backup playbook gives it, on each alias's mount
    root; the results by task and alias (json callback)."""
    with open(lab["inventory"]) as handle:
        [vm_host] = yaml.safe_load(handle)["all"]["children"]["lvm_backup_hosts"]["hosts"].values()
    inventory = lab["base"] / "cleanup-hosts.yml"
    canary.write_private(inventory, json.dumps({"all": {"children": {"lvm_backup_hosts": {"hosts": {
        alias: {**vm_host, "cleanup_mount_root": root} for alias, root in {**REFUSED, "ours": ROOT}.items()
    }}}}}))
    cleanup = {"lvm_snapshot_cleanup": {"mount_root": "{{ cleanup_mount_root }}"}}
    playbook = lab["base"] / "cleanup.yml"
    playbook.write_text(json.dumps([{
        "name": "lvm_snapshot_cleanup on real mounts",
        "hosts": "lvm_backup_hosts",
        "gather_facts": False,
        "module_defaults": {"lvm_snapshot_cleanup": {
            "vgs": ["vgdata"], "snapshot_suffix": "-backup-snap", "dest": DEST, "retries": 3}},
        "tasks": [
            {"name": "refused", **cleanup, "when": "inventory_hostname != 'ours'", "ignore_errors": True},
            {"name": "cleanup", **cleanup, "when": "inventory_hostname == 'ours'"},
        ],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_HOST_KEY_CHECKING="False")
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(playbook)], cwd=TOP, env=env,
                          capture_output=True, text=True, timeout=600)
    assert "{" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.JSONDecoder().raw_decode(proc.stdout, proc.stdout.index("{"))[0]
    assert proc.returncode == 0, data
    return {t["task"]["name"]: t["hosts"] for t in data["plays"][0]["tasks"]}


def test_the_cleanup_unmounts_only_its_own_snapshot_mount(lab):
    made = ssh_result(MAKE_MOUNTS)
    assert made.returncode != 3, f"a snapshot or a mount under {ROOT} is there already:\n{made.stdout}"
    undo = UNDO_MOUNTS + ("rmdir " + ROOT if facts(made.stdout).get("root_existed") == "no" else "")
    undone = False
    try:
        assert made.returncode == 0, made.stdout + made.stderr
        results = run_cleanup(lab)
        for alias, root in REFUSED.items():
            result = results["refused"][alias]
            assert result.get("failed") and result["msg"].startswith(f"mount_root {root} is refused"), result
            assert "it is a system directory" in result["msg"], result
            assert result["msg"].endswith("nothing was unmounted or removed"), result
        cleaned = results["cleanup"]["ours"]
        # the refusals ran first and left all in place: the cleanup found the mount and both snapshots
        assert cleaned["unmounted"] == [OURS], cleaned
        assert sorted(cleaned["left_mounted"]) == sorted([ROOT, FOREIGN, LOOKALIKE]), cleaned
        assert sorted(cleaned["removed_snapshots"]) == ["vgdata/app-backup-snap", "vgdata/mysql-backup-snap"]

        state = facts(ssh(STATE + undo))
        undone = True
        assert sorted(state["mounts"].split(";")[:-1]) == [
            f"{ROOT} hardening-root",
            f"{FOREIGN} hardening-foreign",
            f"{LOOKALIKE} tmpfs[/hardening-bind]",  # /run's tmpfs, its /hardening-bind
        ], state
        assert state["files"].split() == ["operator", "foreign", "bound"], state
        assert state["snapshots"] == "0" and state["our_dir"] == "removed", state
    finally:
        if not undone:
            ssh_result(undo)
