"""Prometheus textfile metrics of the replication TLS certificates: one file per writer,
``mysql_replication_tls_<name>.prom`` in node_exporter's textfile collector directory (``source``:
the files the source role put in place; ``replica``: the backup server's copies and the source's
server certificate as the health check sees it), written through the project's one exposition
writer (backup_metrics).

Two gauges per certificate, labelled ``host``, ``role`` (ca, server, client) and ``path``:
``certificate_expiry_seconds`` (seconds from the write to notAfter, negative once expired) and
``certificate_not_after_timestamp_seconds`` (notAfter itself: ``... - time()`` stays right between
two runs, so alert on that)."""

import datetime
import os
import re

from ansible.module_utils.backup_metrics import render_family, render_text, write_textfile
from ansible.module_utils.mysql_tls import TLSError, certificate_info, parse_openssl_date

PREFIX = "mysql_replication_tls"
ROLES = ("ca", "server", "client")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")

FAMILIES = (
    (
        "certificate_expiry_seconds",
        "Seconds from the metrics write to the certificate's notAfter (negative: expired).",
        lambda cert, now: (cert["not_after"] - now).total_seconds(),
    ),
    (
        "certificate_not_after_timestamp_seconds",
        "Unix time of the certificate's notAfter; alert on this minus time().",
        lambda cert, now: cert["not_after"].timestamp(),
    ),
)


def to_datetime(value):
    """A notAfter as given: aware datetime, ISO 8601 (expiry_report's ...Z) or openssl's text."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value or "").strip()
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return parse_openssl_date(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def collect(certificates, host):
    """[{role, path, not_after?, host?}] -> [{host, role, path, not_after (datetime)}].

    An entry without not_after is read from its file (openssl); ``host`` defaults to the writer's."""
    found = []
    for entry in certificates or []:
        role = str(entry.get("role") or "")
        if role not in ROLES:
            raise TLSError(f"certificate role {role!r}: use one of {', '.join(ROLES)}")
        path = str(entry.get("path") or "")
        if entry.get("not_after"):
            not_after = to_datetime(entry["not_after"])
        elif path:
            not_after = certificate_info(path)["not_after"]
        else:
            raise TLSError(f"the {role} certificate needs a path or a not_after")
        found.append(dict(host=str(entry.get("host") or host), role=role, path=path, not_after=not_after))
    return found


def render(certificates, now=None):
    """Exposition text of collect()'s entries, series sorted for stable output."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ordered = sorted(certificates, key=lambda c: (c["host"], ROLES.index(c["role"]), c["path"]))
    return render_text(
        [
            render_family(
                f"{PREFIX}_{name}",
                text,
                [((("host", c["host"]), ("role", c["role"]), ("path", c["path"])), value(c, now))
                 for c in ordered],
            )
            for name, text, value in FAMILIES
        ]
    )


def metrics_path(collector_dir, name):
    if not NAME_RE.match(name or ""):
        raise TLSError(f"metrics name {name!r}: use letters, digits, '.', '_' and '-'")
    return os.path.join(collector_dir, f"{PREFIX}_{name}.prom")


def write(collector_dir, name, certificates, now=None, check_mode=False):
    """Write the file of collect()'s entries; returns (path, text)."""
    if not os.path.isdir(collector_dir):
        raise TLSError(f"collector directory {collector_dir} does not exist "
                       "(node_exporter --collector.textfile.directory)")
    path = metrics_path(collector_dir, name)
    text = render(certificates, now)
    if not check_mode:
        write_textfile(path, text)
    return path, text


def remove(collector_dir, name, check_mode=False):
    """Remove the file (TLS turned off: no stale series). Returns (path, whether it existed)."""
    path = metrics_path(collector_dir, name)
    existed = os.path.exists(path)
    if existed and not check_mode:
        os.unlink(path)
    return path, existed
