"""Real servers for the btw tests: a PostgreSQL 15 cluster and moto's S3 server, on loopback.

Both live in temporary directories and are stopped by their fixtures (also on failure).
PostgreSQL refuses to run as root, so the cluster runs as the ``postgres`` system user in a
directory it owns (outside pytest's 0700 tmp tree).
"""

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from . import canary
from .ports import free_port

PG_BIN = "/usr/lib/postgresql/15/bin"
PG_PASSWORD = canary.POSTGRES


class Postgres:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="btw-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.port = free_port()
        self.started = False

    def _as_postgres(self, argv, **kw):
        return subprocess.run(
            ["runuser", "-u", "postgres", "--"] + argv, check=True, capture_output=True, text=True, **kw
        )

    def start(self):
        shutil.chown(self.base, "postgres", "postgres")
        pwfile = os.path.join(self.base, "pw")
        with open(pwfile, "w") as f:
            f.write(PG_PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        self._as_postgres(
            [
                f"{PG_BIN}/initdb",
                "-D",
                self.datadir,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        os.unlink(pwfile)
        self._as_postgres(
            [
                f"{PG_BIN}/pg_ctl",
                "-D",
                self.datadir,
                "-w",
                "-t",
                "60",
                "-l",
                os.path.join(self.base, "log"),
                "-o",
                f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base}"
                " -c fsync=off -c shared_buffers=16MB",
                "start",
            ]
        )
        self.started = True
        return self

    def stop(self):
        if self.started:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    f"{PG_BIN}/pg_ctl",
                    "-D",
                    self.datadir,
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                check=False,
                capture_output=True,
            )
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, sql, db="postgres"):
        out = subprocess.run(
            [
                f"{PG_BIN}/psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, PGPASSWORD=PG_PASSWORD),
        )
        return out.stdout

    @property
    def conn(self):
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "password": PG_PASSWORD}


class MotoS3:
    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self):
        exe = shutil.which("moto_server") or os.path.join(os.path.dirname(os.sys.executable), "moto_server")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)  # noqa: S310
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto_server exited") from None
                time.sleep(0.1)
        raise RuntimeError("moto_server not ready in 30s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, access_key="testing", secret_key=canary.S3_SECRET_KEY):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )


@pytest.fixture
def postgres():
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_s3():
    server = MotoS3()
    try:
        server.start()
        yield server
    finally:
        server.stop()
