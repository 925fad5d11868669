"""The full MySQL/MariaDB backups whose binlog coordinates a point-in-time recovery starts from.

Pure Python. One catalog, read by the binlog archive's retention and gap check (the oldest
retained backup's binlog file must stay archived) and by the point-in-time restore (the newest
backup before the target is restored, then the archive replayed from its coordinates).

Kinds of backup, each described by a dict {kind, path, ...}:
  dump  a mysqldump file (plain or .gz), or a directory of them, whose header records the
        coordinates (--master-data=2 / --source-data=2 with --gtid: the Seafile seed's dump, or
        any dump made that way). Its time is the file's modification time.
  lvm   roles/lvm_snapshot_backup's destination: <path>/<YYYYmmddTHHMMSSZ>/metadata.json with the
        coordinates read under the lock; label (default mysql) and subdir (default '') locate the
        datadir inside the backup (rsync method; tar backups are listed, not restorable here).
  btw   a btw mysqldump set's destination (roles/btw_backup: the directory of its chains): every
        stored dump whose chain and rdiff-backup session still exist, with the coordinates
        btw_db recorded for it (.btw-coordinates.json) and the one database it holds (recorded
        there too; for entries written before that, the chain's <name>.meta.json). Listed for the
        archive's retention and gap check, and a starting point of a point-in-time restore of that
        one database (mysql_pitr_btw: the replay is filtered to it).
"""

import calendar
import glob
import gzip
import json
import os
import time

from ansible.module_utils.binlog_archive import ArchiveError, binlog_index
from ansible.module_utils.btw_db import META_SUFFIX, read_coordinate_ledger
from ansible.module_utils.btw_fs import list_chains, rdiff_sessions
from ansible.module_utils.mysql_seed import HeaderScanner

KINDS = ("dump", "lvm", "btw")
DUMP_SUFFIXES = (".sql", ".sql.gz")
LVM_NAME_FORMAT = "%Y%m%dT%H%M%SZ"


class BackupCatalogError(ArchiveError):
    """A full backup listed by the operator cannot be read."""


def _dump_coordinates(path):
    opener = gzip.open if path.endswith(".gz") else open
    scanner = HeaderScanner()
    with opener(path, "rb") as f:
        while not scanner.done:
            chunk = f.read(65536)
            if not chunk:
                break
            scanner.feed(chunk)
        if scanner.done and not scanner.gtid:
            # MariaDB prints the GTID at the end of the dump: read the tail
            size = os.path.getsize(path)
            if not path.endswith(".gz") and size > 262144:
                f.seek(size - 131072)
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                scanner.feed(chunk)
    scanner.finish()
    return scanner


def _dump_backups(spec):
    path = spec["path"]
    if os.path.isdir(path):
        files = sorted(p for p in glob.glob(os.path.join(path, "*")) if p.endswith(DUMP_SUFFIXES))
    elif os.path.isfile(path):
        files = [path]
    else:
        raise BackupCatalogError(f"full backup {path}: no such file or directory")
    found = []
    for f in files:
        scanner = _dump_coordinates(f)
        if not scanner.found:
            if os.path.isfile(path):
                raise BackupCatalogError(
                    f"dump {f} records no binlog coordinates (make it with --master-data=2 --gtid, "
                    "or --source-data=2 on MySQL 8.0.26+)"
                )
            continue
        found.append(
            dict(
                kind="dump",
                name=os.path.basename(f),
                path=f,
                binlog_file=scanner.binlog_file,
                binlog_position=scanner.binlog_position,
                gtid=scanner.gtid or None,
                time=int(os.path.getmtime(f)),
                restorable=True,
            )
        )
    return found


def _lvm_backups(spec):
    root = spec["path"]
    if not os.path.isdir(root):
        raise BackupCatalogError(f"LVM backup destination {root}: no such directory")
    label = spec.get("label") or "mysql"
    subdir = spec.get("subdir") or ""
    found = []
    for meta_path in sorted(glob.glob(os.path.join(root, "*", "metadata.json"))):
        directory = os.path.dirname(meta_path)
        name = os.path.basename(directory)
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            stamp = calendar.timegm(time.strptime(name, LVM_NAME_FORMAT))
        except (OSError, ValueError) as exc:
            raise BackupCatalogError(
                f"LVM backup {directory}: unreadable metadata.json or name ({exc})"
            ) from exc
        coords = meta.get("coordinates") or {}
        if not coords.get("binlog_file"):
            continue
        datadir = os.path.join(directory, label, subdir) if subdir else os.path.join(directory, label)
        found.append(
            dict(
                kind="lvm",
                name=name,
                path=directory,
                datadir=datadir,
                binlog_file=coords["binlog_file"],
                binlog_position=int(coords.get("binlog_position") or 4),
                gtid=coords.get("gtid") or None,
                time=stamp,
                restorable=os.path.isdir(datadir),
            )
        )
    return found


def _btw_backups(spec):
    dest = spec["path"]
    if not os.path.isdir(dest):
        raise BackupCatalogError(f"btw dump set {dest}: no such directory")
    sessions = {name: set(rdiff_sessions(path)) for name, path in list_chains(dest)}
    found = []
    for entry in read_coordinate_ledger(dest):
        chain, session = entry.get("chain"), entry.get("session")
        if session not in sessions.get(chain, ()):
            continue  # removed by retention, or a session rdiff-backup regressed
        dump = entry.get("dump")
        database = entry.get("database") or _btw_meta(os.path.join(dest, chain), dump).get("database")
        found.append(
            dict(
                kind="btw",
                name=f"{chain}@{time.strftime(LVM_NAME_FORMAT, time.gmtime(session))}",
                path=os.path.join(dest, chain),
                destination=dest,
                dump=dump,
                database=database or None,
                session=session,
                binlog_file=entry["binlog_file"],
                binlog_position=int(entry.get("binlog_position") or 4),
                gtid=entry.get("gtid") or None,
                time=int(session),
                restorable=bool(dump and database),
            )
        )
    return found


def _btw_meta(chain_path, dump):
    """The <name>.meta.json of a chain's newest dump ({} when missing or unreadable)."""
    if not dump or not dump.endswith(".sql"):
        return {}
    try:
        with open(os.path.join(chain_path, dump[: -len(".sql")] + META_SUFFIX), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def btw_dumps_without_coordinates(specs):
    """The btw mysqldump sets among specs whose newest dump records no binlog coordinates:
    [{path, database, note}] (e.g. the server had no binary log): what a restore of that database
    cannot start from, said plainly."""
    found = []
    for spec in specs or []:
        if spec.get("kind") != "btw" or not os.path.isdir(spec.get("path") or ""):
            continue
        for _name, chain in list_chains(spec["path"]):
            for meta_path in sorted(glob.glob(os.path.join(chain, "*" + META_SUFFIX))):
                try:
                    with open(meta_path, encoding="utf-8") as f:
                        meta = json.load(f)
                except (OSError, ValueError):
                    continue
                if isinstance(meta, dict) and meta.get("type") == "mysqldump" and not meta.get("coordinates"):
                    found.append(
                        dict(
                            path=chain,
                            database=meta.get("database"),
                            note=meta.get("coordinates_note") or "no binlog coordinates recorded",
                        )
                    )
    return found


_LISTERS = {"dump": _dump_backups, "lvm": _lvm_backups, "btw": _btw_backups}


def list_backups(specs):
    """Every full backup with coordinates, oldest first (by binlog coordinates, then time)."""
    backups = []
    for spec in specs or []:
        kind = spec.get("kind")
        if kind not in KINDS:
            raise BackupCatalogError(f"full backup kind {kind!r}: use one of {', '.join(KINDS)}")
        if not spec.get("path"):
            raise BackupCatalogError(f"full backup of kind {kind} needs a path")
        backups.extend(_LISTERS[kind](spec))
    for b in backups:
        if binlog_index(b["binlog_file"]) is None:
            raise BackupCatalogError(f"{b['path']}: binlog file {b['binlog_file']!r} is not a binlog name")
    return sorted(backups, key=coordinate_key)


def coordinate_key(backup):
    return (
        binlog_index(backup["binlog_file"])[1],
        int(backup["binlog_position"] or 0),
        backup.get("time") or 0,
    )


def oldest_needed_file(specs):
    """The binlog file the oldest retained full backup starts from (None without backups)."""
    backups = list_backups(specs)
    return backups[0]["binlog_file"] if backups else None
