"""Real MariaDB servers for the tests: one temporary datadir each, loopback only.

Nothing outside the given base directory is touched. Root connects over the socket without a
password (unix_socket auth) and over TCP with ROOT_PASSWORD, which the fixture sets.
"""
import atexit
import fcntl
import os
import shutil
import subprocess
import tempfile
import time

import pymysql

from . import canary
from .failures import record_failure
from .ports import free_port

ROOT_PASSWORD = canary.MARIADB_ROOT


def _binary(*names):
    for name in names:
        path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
        if path:
            return path
    raise RuntimeError(f"none of {names} found: run scripts/setup.sh")


_TEMPLATE = {}


def _bootstrapped_template():
    """The datadir mariadb-install-db writes, made once per process (removed at exit)."""
    if "datadir" not in _TEMPLATE:
        base = tempfile.mkdtemp(prefix="bt-mariadb-template-")
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        datadir = os.path.join(base, "data")
        # One bootstrap at a time on the machine (the xdist workers start theirs together), and a
        # second attempt in a fresh directory: mariadb-install-db failed once at a worker's start in
        # a full run (exit 1, output not kept), never since. A second failure shows its output.
        with open(os.path.join(tempfile.gettempdir(), "bt-mariadb-install.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for attempt in (1, 2):
                shutil.rmtree(datadir, ignore_errors=True)
                os.makedirs(datadir)
                done = subprocess.run(
                    [_binary("mariadb-install-db", "mysql_install_db"), "--no-defaults", "--user=root",
                     f"--datadir={datadir}", "--auth-root-authentication-method=socket",
                     "--skip-test-db"],
                    capture_output=True, text=True,
                )
                if done.returncode == 0:
                    break
                if attempt == 2:
                    raise RuntimeError(f"mariadb-install-db failed twice (exit {done.returncode}):\n"
                                       f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        _TEMPLATE["datadir"] = datadir
    return _TEMPLATE["datadir"]


class MariaDB:
    def __init__(self, base, server_id, extra_args=()):
        self.base = str(base)
        self.server_id = server_id
        self.datadir = os.path.join(self.base, "data")
        self.socket = os.path.join(self.base, "mysqld.sock")
        self.pidfile = os.path.join(self.base, "mysqld.pid")
        self.errlog = os.path.join(self.base, "error.log")
        self.tmpdir = os.path.join(self.base, "tmp")
        self.log_start = 0
        self.port = None
        self.extra_args = list(extra_args)
        self.proc = None

    # -- lifecycle ---------------------------------------------------------------------------
    def install(self):
        """A fresh datadir: a copy of one bootstrapped for the whole test process (mariadb-install-db
        costs seconds, and the suite starts servers by the dozen; a copy is what it would write)."""
        shutil.copytree(_bootstrapped_template(), self.datadir, dirs_exist_ok=True)

    def start(self, extra_args=None, wait=30):
        if not os.path.isdir(os.path.join(self.datadir, "mysql")):
            self.install()
        if self.port is None:
            self.port = free_port()
        args = [
            _binary("mariadbd", "mysqld"), "--no-defaults", "--user=root",
            f"--datadir={self.datadir}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.socket}", f"--pid-file={self.pidfile}", f"--log-error={self.errlog}",
            f"--server-id={self.server_id}", f"--log-bin={os.path.join(self.base, 'binlog', 'mysql-bin')}",
            "--binlog-format=ROW", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--skip-name-resolve", "--max-connections=200",
            # its own directory for internal temporary tables (Aria files), not the shared /tmp
            f"--tmpdir={self.tmpdir}",
        ] + self.extra_args + list(extra_args or [])
        os.makedirs(os.path.join(self.base, "binlog"), exist_ok=True)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.log_start = os.path.getsize(self.errlog) if os.path.exists(self.errlog) else 0
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + wait
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.tail_log()}")
            try:
                conn = pymysql.connect(unix_socket=self.socket, user="root")
                conn.close()
                break
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"mariadbd not ready in {wait}s: {self.tail_log()}")
        self.sql(f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}'")
        self.sql("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        return self

    def crash_report(self):
        """The error log's lines on a crash of the server ("got signal" and the query), or ''."""
        lines = self.tail_log(400).splitlines()
        for i, line in enumerate(lines):
            if "got signal" in line:
                query = [x for x in lines[i:] if x.startswith("Query")]
                return " ".join([line.strip()] + query[:1])
        return ""

    def shutdown_report(self):
        """The error log's shutdown lines since the last start that the test did not cause: a shutdown
        by a signal ("initiated by: unknown") before stop() sent one. A lab server shut down that way
        while its test ran was signalled by another process of the run (seen in CI: a source server
        during the seed's dump); the line says when, for the post-mortem."""
        try:
            with open(self.errlog, errors="replace") as f:
                f.seek(self.log_start)
                lines = f.read().splitlines()
        except OSError:
            return ""
        return " ".join(line.strip() for line in lines if "(initiated by: unknown): Normal shutdown" in line)

    def stop(self):
        if self.proc:
            # a crash (not a test's own kill -9), or a shutdown by a signal the test did not send:
            # named at the end of make test, beside the test
            crash = self.crash_report() if self.proc.poll() is not None else ""
            if crash:
                record_failure(f"mariadbd in {self.base} crashed (exit {self.proc.returncode}): {crash}")
            foreign = self.shutdown_report()
            if foreign:
                record_failure(f"mariadbd in {self.base} (pid {self.proc.pid}) was shut down by a signal its "
                               f"test did not send: {foreign}")
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, extra_args=None):
        self.stop()
        return self.start(extra_args)

    def tail_log(self, n=20):
        try:
            with open(self.errlog) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no error log)"

    # -- access ------------------------------------------------------------------------------
    def connect(self, **kw):
        kw.setdefault("unix_socket", self.socket)
        kw.setdefault("user", "root")
        kw.setdefault("autocommit", True)
        return pymysql.connect(**kw)

    def sql(self, statement, args=None, db=None):
        conn = self.connect(database=db)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                return cur.fetchall()
        finally:
            conn.close()

    def sessions(self):
        """The server's other sessions: the product's own reader, mysql_connection.processlist
        (SHOW FULL PROCESSLIST, dicts keyed ID, USER, HOST, DB, COMMAND, TIME, STATE, INFO)."""
        from ansible.module_utils.mysql_connection import processlist

        conn = self.connect()
        try:
            return processlist(conn)
        finally:
            conn.close()

    @property
    def tcp(self):
        """Connection parameters over TCP, as a remote host would use them."""
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "password": ROOT_PASSWORD}
