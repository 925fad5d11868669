"""Point-in-time recovery from a real LVM snapshot backup, in the LVM lab VM (issue 16): the path that
tests/integration/test_mysql_pitr.py fakes on the host (a cold datadir laid out as an LVM backup), here
with every part real.

A MariaDB of its own (unit lab-pitr-db, binlog and GTIDs on) whose datadir is the mount point of its own
LV (vgdata/pitr on /srv/pitr); its binlogs archived as the unit of roles/mysql_binlog_archive archives
them (``python3 binlog_archive.py run --config <source>.json``, a transient systemd unit
lab-pitr-archive, connecting through the socket). Then: rows, a backup with
playbooks/lvm_snapshot_backup.yml (lock, snapshot, copy; metadata.json records the coordinates), more
writes across a binlog rotation, the tables' CHECKSUM TABLE and rows at that moment, a DELETE without
WHERE and writes after it, the archive caught up, and playbooks/mysql_pitr_restore.yml to just before
the DELETE's GTID into a scratch instance in the VM. The proof: the scratch server's checksums and rows
equal the recorded ones, exactly the transactions between the backup and the DELETE were replayed, and
the live server was not touched (same process, its rows as it left them).
"""

import json
import os
import subprocess

import pytest
import yaml
from ansible.module_utils import binlog_archive

from tests.lib.lvm_vm import ssh, ssh_result, vm

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKUP = os.path.join(TOP, "playbooks", "lvm_snapshot_backup.yml")
RESTORE = os.path.join(TOP, "playbooks", "mysql_pitr_restore.yml")
ARCHIVER_PROGRAM = os.path.join(TOP, "plugins", "module_utils", "binlog_archive.py")

# every name this module makes in the VM is its own (test_lvm_restore_vm uses lab-mp-db, vgdata/mp)
UNIT = "lab-pitr-db"
ARCHIVER_UNIT = "lab-pitr-archive"
SOCK = "/run/mysqld/pitr.sock"
LV = "pitr"
DATADIR = "/srv/pitr"  # the LV's mount point
DEST = "/srv/backup/lvm-pitr"
ARCHIVE_ROOT = "/srv/backup/binlog-pitr"
SOURCE = "pitrdb"
ARCHIVE = f"{ARCHIVE_ROOT}/{SOURCE}"
CONF = "/etc/lab-pitr-archive"  # the archiver's option file and configuration, as the role lays them out
LIB = "/usr/local/lib/lab-pitr-archive"
SCRATCH = "/var/tmp/pitr-scratch"
TABLES = "shop.orders, shop.customers"

BACKUP_SETTINGS = {
    "lvm_snapshot_backup_volumes": [{"vg": "vgdata", "lv": LV, "size": "50%", "label": "mysql"}],
    "lvm_snapshot_backup_snapshot_suffix": "-pitr-snap",
    "lvm_snapshot_backup_mount_root": "/run/lvm-pitr-backup",
    "lvm_snapshot_backup_dest": DEST,
    "lvm_snapshot_backup_app_services": [],
    "lvm_snapshot_backup_poll_interval": 0.5,
    "lvm_snapshot_backup_mysql_login_unix_socket": SOCK,
}

DB_UNIT = f"""[Unit]
Description=lab MariaDB on its own LV, binlogs archived (test_lvm_pitr_vm)
[Service]
Type=notify
User=mysql
ExecStart=/usr/sbin/mariadbd --no-defaults --datadir={DATADIR} --socket={SOCK} \\
  --pid-file=/run/mysqld/pitr.pid --skip-networking --log-bin={DATADIR}/mysql-bin --server-id=8 \\
  --binlog-format=ROW --gtid-strict-mode=ON \\
  --innodb-buffer-pool-size=32M --innodb-log-file-size=8M --log-error=/var/log/{UNIT}.err
TimeoutStartSec=300
"""

pytestmark = [pytest.mark.slow, pytest.mark.vm]


def sql(statement):
    return ssh(f"mariadb -N -S {SOCK} -e {json.dumps(statement)}")


def gtid_seq(gtid):
    domain, server, seq = gtid.split("-")
    assert (domain, server) == ("0", "8"), gtid
    return int(seq)


def run(lab, playbook, settings, callback=None):
    path = lab["base"] / f"{os.path.basename(playbook)}.json"
    path.write_text(json.dumps(settings))
    # the report into the test's directory (by default the callback writes it beside the run's
    # location, here the VM's /var/tmp/pitr-scratch, i.e. into the controller's /var/tmp)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="False", BACKUP_REPORT_PATH=str(lab["base"]))
    if callback:
        env["ANSIBLE_STDOUT_CALLBACK"] = callback
    proc = subprocess.run(["ansible-playbook", "-i", str(lab["inventory"]), playbook, "-e", f"@{path}"],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout, proc.stderr


def archive_caught_up():
    """The archive's status (binlog_archive.status, in the VM) once it holds all the source wrote."""
    probe = (f"import json, sys, time; sys.path.insert(0, {LIB!r}); import binlog_archive as b\n"
             "for _ in range(120):\n"
             f"    st = b.status({ARCHIVE!r}, {CONF + '/' + SOURCE + '.cnf'!r})\n"
             "    if st['lag_bytes'] == 0: break\n"
             "    time.sleep(0.25)\n"
             "print(json.dumps(st))")
    result = vm("ssh", "python3 -", input=probe, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def lab(lab_vm, tmp_path_factory):
    """The source on its LV with its archiver running, rows, one LVM snapshot backup of it."""
    base = tmp_path_factory.mktemp("lvmpitr")
    # the lab VM's inventory, with the host also in the archive host's group (mysql_pitr_restore.yml)
    with open(lab_vm) as f:
        inventory = yaml.safe_load(f)
    inventory["all"]["children"]["mysql_binlog_archive"] = {"hosts": {"lvmlab": None}}
    (base / "inventory.yml").write_text(yaml.safe_dump(inventory))
    option_file = binlog_archive.option_file_text(dict(socket=SOCK, user="root"))
    config = json.dumps(dict(directory=ARCHIVE, defaults_file=f"{CONF}/{SOURCE}.cnf", server_id=4801))
    with open(ARCHIVER_PROGRAM) as f:
        program = f.read()
    # one ssh session (each costs a second or more under TCG), the script and the archiver's program on
    # its stdin (read whole before it runs: nothing in it can read the rest as its own input)
    setup = (
        "{\nset -e\n"
        f"lvcreate -q -y -L 320M -n {LV} vgdata; mkfs.ext4 -q /dev/vgdata/{LV}; mkdir -p {DATADIR}\n"
        f"mount /dev/vgdata/{LV} {DATADIR}; chown mysql:mysql {DATADIR}; chmod 750 {DATADIR}\n"
        f"mariadb-install-db --no-defaults --user=mysql --datadir={DATADIR} --skip-test-db"
        " --auth-root-authentication-method=socket > /dev/null\n"
        f"cat > /etc/systemd/system/{UNIT}.service <<'EOF'\n{DB_UNIT}EOF\n"
        f"systemctl daemon-reload; systemctl start {UNIT}\n"
        # the role's layout: option file 0600 (root over the socket: no password), configuration, program
        f"install -d -m 0700 {CONF}; install -d -m 0755 {LIB}; install -d -m 0750 {ARCHIVE_ROOT}\n"
        f"umask 077; cat > {CONF}/{SOURCE}.cnf <<'EOF'\n{option_file}EOF\n"
        f"echo '{config}' > {CONF}/{SOURCE}.json; umask 022\n"
        f"cat > {LIB}/binlog_archive.py <<'PYEOF'\n{program}PYEOF\n"
        # the role's unit: ExecStart, Restart=on-failure, UMask (mysql-binlog-archive@.service.j2)
        f"systemd-run --quiet --unit={ARCHIVER_UNIT} -p Restart=on-failure -p RestartSec=1 -p UMask=0027"
        f" /usr/bin/python3 {LIB}/binlog_archive.py run --config {CONF}/{SOURCE}.json\n"
        "} < /dev/null\n"
    )
    lab = dict(base=base, inventory=base / "inventory.yml")
    try:
        done = vm("ssh", "bash -s", input=setup, check=False, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        sql("CREATE DATABASE shop; USE shop;"
            " CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), balance INT) ENGINE=InnoDB;"
            " CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer INT, amount DECIMAL(10,2),"
            " note VARCHAR(40)) ENGINE=InnoDB;"
            " INSERT INTO customers SELECT seq, CONCAT('c', seq), seq * 10 FROM seq_1_to_50;"
            " INSERT INTO orders (customer, amount, note)"
            "  SELECT seq % 50 + 1, seq * 1.25, CONCAT('before backup ', seq) FROM seq_1_to_300")
        rc, out, err = run(lab, BACKUP, BACKUP_SETTINGS)
        assert rc == 0, (out + err)[-4000:]
        lab["backup"] = ssh(f"ls {DEST} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$'")
        lab["metadata"] = json.loads(ssh(f"cat {DEST}/{lab['backup']}/metadata.json"))
        lab["pid"] = ssh(f"systemctl show -p MainPID --value {UNIT}")
        yield lab
    finally:
        ssh_result(f"systemctl stop {ARCHIVER_UNIT}; systemctl reset-failed {ARCHIVER_UNIT};"
                   f" pid=$(cat {SCRATCH}/mysqld.pid 2>/dev/null) && kill $pid"
                   " && for i in $(seq 120); do kill -0 $pid 2>/dev/null || break; sleep 0.25; done;"
                   " findmnt -rno TARGET | grep ^/run/lvm-pitr-backup/ | sort -r | xargs -r umount;"
                   f" lvremove -q -y vgdata/{LV}-pitr-snap 2>/dev/null;"
                   f" systemctl stop {UNIT}; umount {DATADIR}; lvremove -q -y vgdata/{LV};"
                   f" rm -rf {DATADIR} {DEST} {ARCHIVE_ROOT} {CONF} {LIB} {SCRATCH} /run/lvm-pitr-backup"
                   f" /etc/systemd/system/{UNIT}.service /var/log/{UNIT}.err; systemctl daemon-reload")


def test_restore_to_just_before_a_delete_from_an_lvm_backup_and_the_archive(lab):
    coordinates = lab["metadata"]["coordinates"]
    assert coordinates["binlog_file"] and coordinates["gtid"], lab["metadata"]
    # writes after the backup, only in the archive: inserts, updates, deletes, a rotation, a transaction
    sql("USE shop; INSERT INTO orders (customer, amount, note)"
        "  SELECT seq % 50 + 1, seq * 0.5, CONCAT('after backup ', seq) FROM seq_1_to_200;"
        " UPDATE customers SET balance = balance + 7 WHERE id % 3 = 0;"
        " DELETE FROM orders WHERE id % 10 = 0; FLUSH BINARY LOGS;"
        " BEGIN; INSERT INTO customers VALUES (51, 'late', 0);"
        " UPDATE orders SET note = 'moved' WHERE id < 20; COMMIT;"
        " INSERT INTO orders (customer, amount, note) VALUES (51, 99.99, 'last before');")
    # the moment to recover to
    expected = sql(f"CHECKSUM TABLE {TABLES} EXTENDED")
    counts = sql("SELECT (SELECT COUNT(*) FROM shop.orders), (SELECT COUNT(*) FROM shop.customers)")
    before = sql("SELECT @@gtid_binlog_pos")
    # the mistake, then writes the restore must leave out
    sql("DELETE FROM shop.orders")
    delete_gtid = sql("SELECT @@gtid_binlog_pos")
    sql("INSERT INTO shop.customers VALUES (52, 'after the delete', 1)")
    assert gtid_seq(delete_gtid) == gtid_seq(before) + 1
    live = sql(f"CHECKSUM TABLE {TABLES} EXTENDED")

    status = archive_caught_up()
    assert status["continuous"] and status["lag_bytes"] == 0, status
    assert status["file_count"] >= 2 and status["last"]["gtid"] == sql("SELECT @@gtid_binlog_pos")

    rc, out, err = run(lab, RESTORE, {
        "mysql_binlog_archive_root": ARCHIVE_ROOT,
        "mysql_binlog_archive_full_backups": {SOURCE: [{"kind": "lvm", "path": DEST, "label": "mysql"}]},
        "mysql_binlog_archive_pitr_source": SOURCE,
        "mysql_binlog_archive_pitr_target_gtid": delete_gtid,
        "mysql_binlog_archive_pitr_scratch_dir": SCRATCH,
    }, callback="json")
    assert rc == 0, (out + err)[-4000:]
    report = json.JSONDecoder().raw_decode(out[out.index("{"):])[0]
    tasks = {t["task"]["name"]: t["hosts"].get("lvmlab") for t in report["plays"][0]["tasks"]}
    result = tasks["Restore the newest full backup before the target and replay the archive up to it"]
    # from the LVM backup's own coordinates, exactly the transactions between it and the DELETE
    assert result["backup"]["kind"] == "lvm" and result["backup"]["name"] == lab["backup"], result["backup"]
    assert (result["backup"]["binlog_file"], result["backup"]["binlog_position"]) == (
        coordinates["binlog_file"], int(coordinates["binlog_position"]))
    assert result["stops_before"]["gtid"] == delete_gtid
    assert result["transactions_applied"] == result["transactions"] == (
        gtid_seq(before) - gtid_seq(coordinates["gtid"])), result
    assert len({r["from_file"] for r in result["ranges"]} | {r["to_file"] for r in result["ranges"]}) == 2

    # the proof: the scratch server holds the tables exactly as they were just before the DELETE
    client = f"mariadb --defaults-file={result['scratch']['defaults_file']} -N -e"
    assert ssh(f"{client} {json.dumps(f'CHECKSUM TABLE {TABLES} EXTENDED')}") == expected
    assert ssh(f"{client} 'SELECT (SELECT COUNT(*) FROM shop.orders), (SELECT COUNT(*) FROM shop.customers)'"
               ) == counts
    assert int(counts.split()[0]) > 300 and counts.split()[1] == "51"  # more than the backup held
    # the live server: the same process, its data as the DELETE and the write after it left it
    assert ssh(f"systemctl show -p MainPID --value {UNIT}") == lab["pid"]
    assert sql(f"CHECKSUM TABLE {TABLES} EXTENDED") == live != expected
    assert sql("SELECT COUNT(*) FROM shop.orders") == "0"

    # the scratch instance removed (the restore leaves it running for a look)
    pid = result["scratch"]["pid"]
    ssh(f"kill {pid}; for i in $(seq 120); do kill -0 {pid} 2>/dev/null || break; sleep 0.25; done;"
        f" ! kill -0 {pid} 2>/dev/null && rm -rf {SCRATCH}")
    assert ssh(f"test -e {SCRATCH} && echo left || echo gone") == "gone"
