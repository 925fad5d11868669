#!/usr/bin/env python3
"""Stand-in for fcrepo 4's backup/restore REST endpoints (fcrepo is Java and not installable here).

Follows the documented contract (fcrepo 4 "Backup and Restore" page) and nothing more:
- ``POST /rest/fcr:backup``: optional body = a directory on the server to write the backup into
  (fcrepo uses a new temp directory when the body is empty). Answers ``200 OK`` with the backup
  directory's path as the text body.
- ``POST /rest/fcr:restore``: body = the directory of a backup made by fcr:backup. Answers
  ``204 No Content`` on success; an unknown or unusable directory answers ``500`` with a message
  (a failed restore in fcrepo surfaces as a server error).
- Optional HTTP basic authentication (``--user``/``--password-file``): 401 without valid credentials.
The "backup" written is a small marker file plus a copy of the binary store when ``--binaries`` is
given; it stands for ModeShape's backup format, which nothing in this project parses.
Every request is appended to ``--log`` (method, path, status) so tests can assert what was called.

Usage: fcrepo_rest.py --port 8080 [--bind 127.0.0.1] [--workdir DIR] [--binaries DIR] [--log FILE]
"""
import argparse
import base64
import http.server
import json
import os
import shutil
import sys
import tempfile
import time

MARKER = "fcrepo-standin-backup.json"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "fcrepo-standin/4.7"

    def log_message(self, fmt, *args):  # quiet stderr; requests go to --log
        pass

    def _record(self, status):
        if self.server.options.log:
            with open(self.server.options.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"method": self.command, "path": self.path, "status": status}) + "\n")

    def _answer(self, status, body=b"", content_type="text/plain"):
        self._record(status)
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="fcrepo"')
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _authorised(self):
        opts = self.server.options
        if not opts.user:
            return True
        expected = base64.b64encode(f"{opts.user}:{opts.password}".encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace").strip() if length else ""

    def do_GET(self):  # noqa: N802 - http.server naming
        if not self._authorised():
            return self._answer(401)
        if self.path.rstrip("/") == "/rest":
            return self._answer(200, b"fcrepo stand-in root\n")
        return self._answer(404, b"Not Found\n")

    def do_POST(self):  # noqa: N802
        if not self._authorised():
            return self._answer(401)
        body = self._body()
        if self.path == "/rest/fcr:backup":
            return self._backup(body)
        if self.path == "/rest/fcr:restore":
            return self._restore(body)
        return self._answer(404, b"Not Found\n")

    def _backup(self, target):
        opts = self.server.options
        try:
            if target:
                os.makedirs(target, mode=0o700, exist_ok=True)
            else:
                target = tempfile.mkdtemp(prefix="fcrepo-backup-", dir=opts.workdir)
            if opts.binaries and os.path.isdir(opts.binaries):
                shutil.copytree(opts.binaries, os.path.join(target, "binaries"), dirs_exist_ok=True)
            with open(os.path.join(target, MARKER), "w", encoding="utf-8") as handle:
                json.dump({"created": time.time()}, handle)
        except OSError as exc:
            return self._answer(500, f"backup failed: {exc}\n".encode())
        return self._answer(200, target.encode())

    def _restore(self, source):
        if not source or not os.path.isfile(os.path.join(source, MARKER)):
            return self._answer(500, f"restore failed: {source or '(empty body)'} is not a backup\n".encode())
        self.server.restored.append(source)
        return self._answer(204)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--binaries", default=None)
    parser.add_argument("--log", default=None)
    parser.add_argument("--user", default=None)
    parser.add_argument("--password-file", default=None)
    opts = parser.parse_args(argv)
    opts.password = ""
    if opts.password_file:
        with open(opts.password_file, encoding="utf-8") as handle:
            opts.password = handle.read().strip()
    server = http.server.ThreadingHTTPServer((opts.bind, opts.port), Handler)
    server.options = opts
    server.restored = []
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
