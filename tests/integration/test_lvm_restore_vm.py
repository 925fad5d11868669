"""playbooks/lvm_snapshot_restore.yml on real LVM in the lab VM, on the role's default layout: a
MariaDB whose datadir is itself the mount point of its LV (a second server beside the lab's, unit
lab-mp-db). One real backup of it (lvm_snapshot_backup.yml, lock, snapshot, copy, verification
counting shop.orders), then:
- a scratch restore while the live server keeps writing: proven, removed, the live server untouched
  (same process, its rows still growing);
- an in-place restore: the contents swapped under the mount, the server back on the backup's data;
- an in-place restore that fails half way (an immutable file the set-aside cannot move): the live
  data is put back from what is on disk and the server runs on it.
"""

import json
import os
import subprocess

import pytest

from tests.lib.lvm_vm import ssh, ssh_result

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKUP = os.path.join(TOP, "playbooks", "lvm_snapshot_backup.yml")
RESTORE = os.path.join(TOP, "playbooks", "lvm_snapshot_restore.yml")
HOST = "lvmlab"
SOCK = "/run/mysqld/mp.sock"
ROWS = 400

SETTINGS = {
    "lvm_snapshot_backup_volumes": [{"vg": "vgdata", "lv": "mp", "size": "50%", "label": "mysql"}],
    "lvm_snapshot_backup_dest": "/srv/backup/lvm-mp",
    "lvm_snapshot_backup_keep": 2,
    "lvm_snapshot_backup_app_services": [],
    "lvm_snapshot_backup_poll_interval": 0.5,
    "lvm_snapshot_backup_mysql_login_unix_socket": SOCK,
    "lvm_snapshot_backup_verify_mysql_label": "mysql",
    "lvm_snapshot_backup_verify_count_tables": ["shop.orders"],
    # the role's default layout: the datadir is the LV's mount point
    "lvm_snapshot_backup_restore_datadir": "/srv/mp",
    "lvm_snapshot_backup_restore_subdir": ".",
    "lvm_snapshot_backup_restore_service": "lab-mp-db",
}

UNIT = f"""[Unit]
Description=lab MariaDB whose datadir is an LV mount point (test_lvm_restore_vm)
[Service]
Type=notify
User=mysql
ExecStart=/usr/sbin/mariadbd --no-defaults --datadir=/srv/mp --socket={SOCK} --pid-file=/run/mysqld/mp.pid \\
  --skip-networking --log-bin=/srv/mp/mysql-bin --server-id=7 --innodb-buffer-pool-size=32M \\
  --innodb-log-file-size=8M --log-error=/var/log/lab-mp-db.err
TimeoutStartSec=300
"""

pytestmark = [pytest.mark.slow, pytest.mark.vm]


def sql(statement):
    return ssh(f"mariadb -N -S {SOCK} -e {json.dumps(statement)}")


def main_pid():
    return ssh("systemctl show -p MainPID --value lab-mp-db")


def run(playbook, lab, extra=None):
    settings = lab["base"] / "settings.json"
    settings.write_text(json.dumps(dict(SETTINGS, **(extra or {}))))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="False")
    proc = subprocess.run(["ansible-playbook", "-i", lab["inventory"], playbook, "-e", f"@{settings}"],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=1200)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def mp(lab_vm, tmp_path_factory):
    lab = dict(base=tmp_path_factory.mktemp("lvmrestore"), inventory=lab_vm)
    ssh("set -e; lvcreate -q -y -L 320M -n mp vgdata; mkfs.ext4 -q /dev/vgdata/mp; mkdir -p /srv/mp;"
        " mount /dev/vgdata/mp /srv/mp; chown mysql:mysql /srv/mp; chmod 750 /srv/mp;"
        " mariadb-install-db --no-defaults --user=mysql --datadir=/srv/mp --skip-test-db"
        " --auth-root-authentication-method=socket > /dev/null;"
        f" cat > /etc/systemd/system/lab-mp-db.service <<'EOF'\n{UNIT}EOF\n"
        " systemctl daemon-reload; systemctl start lab-mp-db")
    try:
        sql(f"CREATE DATABASE shop; USE shop; CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY,"
            f" note VARCHAR(40)); INSERT INTO orders (note) SELECT CONCAT('o', seq) FROM seq_1_to_{ROWS}")
        rc, out = run(BACKUP, lab)
        assert rc == 0, out[-4000:]
        yield lab
    finally:
        ssh_result("systemctl stop mp-writer; systemctl stop lab-mp-db; chattr -i /srv/mp/zz-immutable;"
                   " umount /srv/mp; lvremove -q -y vgdata/mp; rm -rf /srv/mp /srv/backup/lvm-mp"
                   " /srv/restore-drill /etc/systemd/system/lab-mp-db.service; systemctl daemon-reload")


def test_scratch_restore_while_the_live_server_writes_leaves_it_untouched(mp):
    pid = main_pid()
    ssh(f"systemd-run --quiet --unit=mp-writer /bin/sh -c 'while :; do mariadb -S {SOCK}"
        f" -e \"INSERT INTO shop.orders (note) VALUES (1)\"; sleep 0.2; done'")
    try:
        rows_before = int(sql("SELECT COUNT(*) FROM shop.orders"))
        rc, out = run(RESTORE, mp, {"lvm_snapshot_backup_restore_scratch_dir": "/srv/restore-drill"})
        assert rc == 0, out[-4000:]
        assert "tables check OK" in out and "1 equal to the backup's record" in out, out[-3000:]
        assert ssh("test -e /srv/restore-drill && echo left || echo gone") == "gone"
        assert main_pid() == pid  # the live server was not restarted
        assert int(sql("SELECT COUNT(*) FROM shop.orders")) > rows_before  # and kept taking writes
    finally:
        ssh_result("systemctl stop mp-writer")


def test_the_restore_drill_proves_the_lvm_backup_and_publishes_rpo_rto(mp):
    metrics = mp["base"] / "metrics"
    metrics.mkdir()
    settings = mp["base"] / "drill.json"
    settings.write_text(json.dumps(dict(SETTINGS, restore_drill_strategies=["lvm"],
                                        backup_strategy="restore_drill", backup_metrics_dir=str(metrics))))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_SHOW_CUSTOM_STATS="1", ANSIBLE_HOST_KEY_CHECKING="False")
    playbook = os.path.join(TOP, "playbooks", "run_backup.yml")
    # the parent of the scratch directories is there already, with its own mode and an operator's file
    ssh("mkdir -p /var/tmp/restore-drill && chmod 0755 /var/tmp/restore-drill"
        " && echo kept > /var/tmp/restore-drill/keep.txt")
    proc = subprocess.run(["ansible-playbook", "-i", mp["inventory"], playbook, "-e", f"@{settings}"],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # left as they were (the drill made its own new directory inside, and removed it)
    assert ssh("stat -c %a /var/tmp/restore-drill && cat /var/tmp/restore-drill/keep.txt") == "755\nkept"
    ssh("rm /var/tmp/restore-drill/keep.txt")
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    runs = out.get("global_custom_stats", {}).get("backup_runs") or out["custom_stats"]["_run"]["backup_runs"]
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run["strategy"], run["mode"], run["set"]) == ("restore_drill", "lvm", "lvm/lvmlab")
    assert run["result"] == "ok", run
    assert run["restore_seconds"] > 0 and run["backup_age_seconds"] > 0
    checked = {c["check"]: (c["expected"], c["found"], c["ok"]) for c in run["details"]["checked"]}
    assert checked["rows shop.orders"] == (ROWS, ROWS, True)
    assert checked["tables CHECK TABLE OK"][1] >= 1
    assert ssh("ls /var/tmp/restore-drill | grep -c '^lvm-' || true") == "0"  # scratch removed
    text = (metrics / "backup_toolkit.prom").read_text()
    assert 'backup_last_restore_seconds{strategy="restore_drill",set="lvm/lvmlab"}' in text, text


def test_in_place_into_the_mount_point_datadir_and_a_failure_half_way_rolled_back(mp):
    assert int(sql("SELECT COUNT(*) FROM shop.orders")) > ROWS  # the live data is further than the backup
    rc, out = run(RESTORE, mp)
    assert rc != 0 and "restore refused, nothing was changed" in out, out[-3000:]  # no confirmation
    rc, out = run(RESTORE, mp, {"lvm_snapshot_backup_restore_confirm": HOST})
    assert rc == 0, out[-4000:]
    assert ssh("mountpoint -q /srv/mp && echo mounted") == "mounted"
    assert int(sql("SELECT COUNT(*) FROM shop.orders")) == ROWS  # the backup's data
    aside = ssh("ls -a /srv/mp | grep '^.pre-restore-' || true").split()
    assert len(aside) == 1 and ssh(f"test -d /srv/mp/{aside[0]}/shop && echo yes") == "yes"
    assert ssh("ls -a /srv/mp | grep -c '^.restore-staging-' || true") == "0"
    assert ssh("stat -c %U /srv/mp/shop/orders.ibd") == "mysql"

    # a restore that fails half way: the set-aside cannot move an immutable entry
    sql("INSERT INTO shop.orders (note) VALUES ('after the restore')")
    ssh("touch /srv/mp/zz-immutable && chattr +i /srv/mp/zz-immutable")
    try:
        rc, out = run(RESTORE, mp, {"lvm_snapshot_backup_restore_confirm": HOST})
    finally:
        ssh("chattr -i /srv/mp/zz-immutable && rm /srv/mp/zz-immutable")
    assert rc != 0, out[-3000:]
    assert "FAILED at \"Set the live data aside and move the restored data in\"" in out, out[-3000:]
    assert "the previous data is back in /srv/mp" in out, out[-3000:]
    assert ssh("systemctl is-active lab-mp-db") == "active"
    assert sql("SELECT COUNT(*) FROM shop.orders WHERE note = 'after the restore'") == "1"
    assert ssh("ls -a /srv/mp | grep -c '^.pre-restore-' || true") == "1"  # only the good restore's
    assert ssh("ls -a /srv/mp | grep -c -E '^.(restore-staging|failed-restore)-' || true") == "0"


def test_a_truncated_biggest_table_makes_the_next_backup_suspect_and_latest_stays(mp):
    """The shrink guard on real LVM (issue 14): the biggest table truncated in place, the next backup
    is kept but suspect, the run fails naming the drop, latest stays on the good backup."""
    good = ssh("ls /srv/backup/lvm-mp | grep -E '^[0-9]{8}T[0-9]{6}Z$' | tail -1")
    sql("TRUNCATE TABLE shop.orders")
    rc, out = run(BACKUP, mp)
    assert rc != 0, out[-3000:]
    assert "backup kept as SUSPECT" in out and "rows:shop.orders fell from" in out, out[-3000:]
    assert f"the last good backup, {good}, stays latest" in out, out[-3000:]
    assert "lvm_snapshot_backup_accept_shrink" in out or "accept_shrink: true" in out, out[-3000:]
    names = ssh("ls /srv/backup/lvm-mp | grep -E '^[0-9]{8}T[0-9]{6}Z$'").split()
    assert names[0] == good and len(names) == 2, names
    meta = json.loads(ssh(f"cat /srv/backup/lvm-mp/{names[1]}/metadata.json"))
    assert meta["status"] == "suspect" and meta["last_good"] == good
    assert meta["figures"]["rows:shop.orders"] == 0 and meta["figures"]["tables"] >= 1
    assert ssh("ls /run/lvm-snapshot-backup 2>/dev/null | wc -l") == "0"  # unmounted
    assert ssh("lvs --noheadings -o lv_name vgdata | grep -c backup-snap || true") == "0"
    # accept_shrink (the drop accepted once, the backup good and the new reference): unit-tested in
    # tests/unit/test_lvm_shrink_guard.py; one backup run fewer here under TCG
