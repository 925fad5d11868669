"""Benchmark of the LVM snapshot backup on real LVM (the lab VM, scripts/lab/lvm-vm.sh).

For each MariaDB data size (default 200 MB and 1024 MB, --sizes to change) it runs
playbooks/lvm_snapshot_backup.yml with the application stopped around the snapshot and reads from
the backup's metadata.json: lock-held time, snapshot creation time, application downtime, copy time.
Baseline, measured in the same VM: the procedure eXo started from (stop the application and the
database, copy the data directory, start them), whose downtime grows with the data.
Prints the ratios large/small (target for lock and downtime: <= 1.2) and snapshot/baseline.
Usage: python bench/bench_lvm.py [--sizes 200,1024]
Runs one VM (-smp 2 -m 2048, TCG); refuses when the lab VM is already in use.
"""

import argparse
import json
import os
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VM = os.path.join(TOP, "scripts", "lab", "lvm-vm.sh")
SETUP = os.path.join(TOP, "molecule", "lvm", "files", "lab-setup.sh")
PLAYBOOK = os.path.join(TOP, "playbooks", "lvm_snapshot_backup.yml")


def ssh(command, timeout=3600):
    out = subprocess.run(["bash", VM, "ssh", command], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{command!r} failed in the VM: {out.stdout}{out.stderr}")
    return out.stdout.strip()


def grow_to(mb):
    """Grow app.blobs (1 KiB rows, outside the binlog) to about mb MiB of rows."""
    ssh(
        "rows=$(mariadb -N -e 'SELECT COUNT(*) FROM app.blobs'); "
        f"while [ $((rows)) -lt {mb * 1024} ]; do "
        'mariadb -e "SET sql_log_bin=0; INSERT INTO app.blobs (data) '
        'SELECT RANDOM_BYTES(1024) FROM app.blobs '
        f'LIMIT $(({mb * 1024} - rows))"; '
        "rows=$(mariadb -N -e 'SELECT COUNT(*) FROM app.blobs'); done"
    )
    return int(ssh("du -sm /srv/mysql/data | cut -f1"))


def snapshot_backup(inventory, settings):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    run = subprocess.run(
        ["ansible-playbook", "-i", inventory, PLAYBOOK, "-e", f"@{settings}"],
        cwd=TOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    wall = time.monotonic() - t0
    if run.returncode != 0:
        raise RuntimeError(f"backup failed:\n{run.stdout[-4000:]}{run.stderr[-2000:]}")
    latest = ssh("ls /srv/backup/lvm | grep -E '^[0-9]{8}T' | sort | tail -n1")
    meta = json.loads(ssh(f"cat /srv/backup/lvm/{latest}/metadata.json"))
    ssh(f"rm -rf /srv/backup/lvm/{latest}")  # room for the next size
    return {
        "lock": float(meta["lock_seconds"]),
        "snapshot": float(meta["snapshot_seconds"]),
        "downtime": float(meta["app_downtime_seconds"]),
        "copy": float(meta["copy_seconds"]),
        "wall": wall,
    }


def cold_baseline():
    """eXo's starting point: stop application and database, copy the datadir, start both again."""
    out = ssh(
        "t0=$(date +%s.%N); systemctl stop lab-app lab-writer mariadb; "
        "rsync -a /srv/mysql/data/ /srv/backup/cold/; systemctl start mariadb lab-app lab-writer; "
        't1=$(date +%s.%N); rm -rf /srv/backup/cold; echo "$t0 $t1"'
    )
    t0, t1 = (float(x) for x in out.split())
    return t1 - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1024", help="MariaDB data sizes in MiB, comma separated")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    mysql_lv = max(700, int(sizes[-1] * 1.5) + 300)
    if subprocess.run(["bash", VM, "status"], capture_output=True).returncode == 0:
        sys.exit("the LVM lab VM is already running (molecule lvm or a test): stop it first")
    env = dict(os.environ, LVM_VM_DISK_SIZE=f"{max(6, mysql_lv // 1024 + 4)}G")
    inventory = (
        subprocess.run(["bash", VM, "start"], env=env, check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    settings = os.path.join(os.path.dirname(inventory), "bench-settings.json")
    with open(settings, "w") as f:
        json.dump(
            {
                "lvm_snapshot_backup_volumes": [
                    {"vg": "vgdata", "lv": "mysql", "size": "20%", "label": "mysql"},
                    {"vg": "vgdata", "lv": "app", "label": "app"},
                ],
                "lvm_snapshot_backup_app_services": ["lab-app"],
                "lvm_snapshot_backup_keep": 1,
                "lvm_snapshot_backup_dest": "/srv/backup/lvm",
            },
            f,
        )
    results = {}
    try:
        with open(SETUP) as f:
            subprocess.run(
                ["bash", VM, "ssh", f"bash -s {mysql_lv}M 20"],
                stdin=f,
                check=True,
                capture_output=True,
                timeout=3600,
            )
        for size in sizes:
            actual = grow_to(size)
            print(f"-- {size} MiB requested, datadir {actual} MiB", flush=True)
            res = snapshot_backup(inventory, settings)
            res["baseline_downtime"] = cold_baseline()
            res["datadir_mib"] = actual
            results[size] = res
            print(
                f"   lock held {res['lock']:.2f}s  snapshot creation {res['snapshot']:.2f}s  application "
                f"downtime {res['downtime']:.1f}s  copy {res['copy']:.1f}s  (playbook {res['wall']:.0f}s)  "
                f"| baseline cold-copy downtime {res['baseline_downtime']:.1f}s",
                flush=True,
            )
    finally:
        subprocess.run(["bash", VM, "stop"], capture_output=True)
    small, large = results[sizes[0]], results[sizes[-1]]
    print(f"\nratio large/small ({sizes[-1]}/{sizes[0]} MiB), target <= 1.2 for lock and downtime:")
    for key in ("lock", "snapshot", "downtime", "copy", "baseline_downtime"):
        ratio = large[key] / small[key] if small[key] else float("nan")
        print(f"  {key:18s} {small[key]:8.2f}s -> {large[key]:8.2f}s   ratio {ratio:.2f}")
    for size in sizes:
        r = results[size]
        print(
            f"  {size} MiB: snapshot-backup downtime / cold-copy downtime = "
            f"{r['downtime']:.1f}/{r['baseline_downtime']:.1f} = {r['downtime'] / r['baseline_downtime']:.2f}"
        )


if __name__ == "__main__":
    main()
