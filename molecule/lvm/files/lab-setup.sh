#!/bin/bash
# Lab layout in the LVM test VM (run once by molecule prepare and by bench/bench_lvm.py):
#   /dev/vdb -> VG vgdata
#     mysql: classic LV, ext4, mounted on /srv/mysql: MariaDB datadir /srv/mysql/data + binlogs
#     pool/app: thin LV, XFS, mounted on /srv/app: the application's files
#   lab-app.service (the "application": serves /srv/app), lab-writer.service (inserts a row every
#   WRITER_INTERVAL seconds into app.events and logs each committed id to /var/log/lab-writer.log)
# Usage: lab-setup.sh [MYSQL_LV_SIZE (700M)] [SEED_MB (20)] [APP_LV_SIZE (320M)] [WRITER_INTERVAL (0.05)]
#                     [REDO_LOG_SIZE (64M)]
# (Under TCG a writer every 50 ms costs the host a fifth of a core; the tests use 0.25 s. The tests
# also use an 8M InnoDB redo log: every backup copies and checksums it, and under TCG each MiB copied
# costs time; the benchmark keeps the server's usual 64M.)
set -euo pipefail
MYSQL_LV_SIZE=${1:-700M}
SEED_MB=${2:-20}
APP_LV_SIZE=${3:-320M}
WRITER_INTERVAL=${4:-0.05}
REDO_LOG_SIZE=${5:-64M}
if vgs vgdata >/dev/null 2>&1; then echo "lab already set up"; exit 0; fi

pvcreate -q /dev/vdb
vgcreate -q vgdata /dev/vdb
lvcreate -q -y -L "$MYSQL_LV_SIZE" -n mysql vgdata
mkfs.ext4 -q /dev/vgdata/mysql
lvcreate -q -y -L "$APP_LV_SIZE" -T vgdata/pool
lvcreate -q -y -V "$APP_LV_SIZE" -T vgdata/pool -n app
mkfs.xfs -q /dev/vgdata/app
mkdir -p /srv/mysql /srv/app /srv/backup/lvm
echo '/dev/vgdata/mysql /srv/mysql ext4 defaults 0 2' >> /etc/fstab
echo '/dev/vgdata/app /srv/app xfs defaults 0 2' >> /etc/fstab
mount /srv/mysql
mount /srv/app

systemctl stop mariadb
mkdir -p /srv/mysql/data
rsync -a /var/lib/mysql/ /srv/mysql/data/
chown -R mysql:mysql /srv/mysql/data
cat > /etc/mysql/mariadb.conf.d/60-lab.cnf <<CNF
[mariadbd]
datadir = /srv/mysql/data
log_bin = /srv/mysql/data/mysql-bin
server_id = 1
binlog_format = ROW
innodb_buffer_pool_size = 128M
innodb_log_file_size = $REDO_LOG_SIZE
CNF
systemctl start mariadb

mariadb <<SQL
CREATE DATABASE app;
USE app;
CREATE TABLE app.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;
CREATE TABLE app.blobs (id BIGINT AUTO_INCREMENT PRIMARY KEY, data VARBINARY(4000) NOT NULL) ENGINE=InnoDB;
CREATE TABLE app.settings (k VARCHAR(32) PRIMARY KEY, v VARCHAR(64)) ENGINE=Aria;
INSERT INTO app.settings VALUES ('site', 'lab'), ('version', '1');
INSERT INTO app.blobs (data) SELECT RANDOM_BYTES(1024) FROM seq_1_to_256;
SQL
# double app.blobs (1 KiB rows) until it holds SEED_MB of data
rows=256
while [ $((rows * 1024)) -lt $((SEED_MB * 1024 * 1024)) ]; do
  # seed data stays out of the binlog (it would double the space used)
  mariadb -e "SET sql_log_bin = 0; INSERT INTO app.blobs (data) SELECT RANDOM_BYTES(1024) FROM app.blobs
    LIMIT $((SEED_MB * 1024 - rows))"
  rows=$(mariadb -N -e "SELECT COUNT(*) FROM app.blobs")
done

# application files
for i in $(seq 1 50); do head -c 20000 /dev/urandom > "/srv/app/attachment-$i.bin"; done
echo "lab application" > /srv/app/index.html

cat > /usr/local/bin/lab-writer <<'PY'
#!/usr/bin/python3
"""Keeps inserting into app.events; logs every committed id (after COMMIT returned)."""
import sys
import time
import pymysql
interval = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
log = open("/var/log/lab-writer.log", "a", buffering=1)
conn = None
while True:
    try:
        if conn is None:
            conn = pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO app.events (payload) VALUES (%s)", (f"w{time.time():.3f}",))
            log.write(f"{cur.lastrowid} {time.time():.6f}\n")
    except pymysql.err.MySQLError:
        conn = None
        time.sleep(1)
    time.sleep(interval)
PY
chmod 755 /usr/local/bin/lab-writer
cat > /etc/systemd/system/lab-writer.service <<UNIT
[Unit]
Description=Lab writer (inserts into app.events)
After=mariadb.service
[Service]
ExecStart=/usr/local/bin/lab-writer $WRITER_INTERVAL
Restart=always
UNIT
cat > /etc/systemd/system/lab-app.service <<UNIT
[Unit]
Description=Lab application (serves /srv/app)
After=mariadb.service
[Service]
ExecStart=/usr/bin/python3 -m http.server --directory /srv/app 8080
UNIT
systemctl daemon-reload
systemctl start lab-app lab-writer
echo "lab ready: $(mariadb -N -e 'SELECT ROUND(SUM(data_length+index_length)/1048576) FROM information_schema.tables WHERE table_schema="app"') MiB in app"
