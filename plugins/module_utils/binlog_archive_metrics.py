"""Prometheus textfile metrics of a binlog archive: one file per source,
``mysql_binlog_archive_<source>.prom`` in node_exporter's textfile collector directory, written
through the project's one exposition writer (backup_metrics)."""

import os

from ansible.module_utils.backup_metrics import render_family, render_text, write_textfile
from ansible.module_utils.binlog_archive import SOURCE_NAME_RE, ArchiveError

PREFIX = "mysql_binlog_archive"

FAMILIES = (
    (
        "lag_bytes",
        "Bytes the source has written that the archive has not (NaN: source unreachable).",
        lambda f: f["lag_bytes"],
    ),
    (
        "lag_seconds",
        "0 when caught up, else seconds since the newest archived transaction.",
        lambda f: f["lag_seconds"],
    ),
    (
        "gaps",
        "Breaks in the archive's continuity from the oldest retained full backup.",
        lambda f: len(f["gaps"]),
    ),
    ("files", "Binlog files in the archive.", lambda f: f["file_count"]),
    ("size_bytes", "Bytes in the archive.", lambda f: f["size_bytes"]),
    (
        "last_transaction_timestamp_seconds",
        "Time of the newest archived transaction.",
        lambda f: (f["last"] or {}).get("timestamp"),
    ),
    ("source_up", "1 when the source answered SHOW BINARY LOGS.", lambda f: f["source_error"] is None),
    (
        "healthy",
        "1 when continuous, the source answered and the lag is within its limit.",
        lambda f: f.get("healthy"),
    ),
)


def render(source, facts):
    labels = {"source": source}
    return render_text(
        [render_family(f"{PREFIX}_{name}", text, [(labels, value(facts))]) for name, text, value in FAMILIES]
    )


def write(collector_dir, source, facts, check_mode=False):
    """Write the source's metrics file; returns its path."""
    if not SOURCE_NAME_RE.match(source or ""):
        raise ArchiveError(f"source name {source!r}: use letters, digits, '.', '_' and '-'")
    path = os.path.join(collector_dir, f"{PREFIX}_{source}.prom")
    if not check_mode:
        write_textfile(path, render(source, facts))
    return path
