"""Point-in-time recovery of one database from a btw mysqldump set (the base of mysql_pitr's plan
when the newest full backup before the target is a btw dump).

A btw mysqldump set stores ``mysqldump --single-transaction -- <database>``: one database, plain
SQL (``<name>.sql``, no CREATE DATABASE / USE in it), kept by rdiff-backup, with the snapshot's
binlog coordinates recorded beside it (btw_db). A restore from it loads that dump into the
database it came from, in a scratch instance (btw_db.db_restore: the same load and object check as
btw_restore), then replays the archive with ``mariadb-binlog --database=<database>``.

What ``--database`` does (MariaDB's mariadb-binlog, checked on 10.11 by the tests):
  row events      written when their table (the table map's database) is in the database; the
                  statement that ran them, its default database, does not matter
  statements      (DDL, and DML under binlog_format STATEMENT/MIXED) written when the default
                  database (USE) of the session was the database; CREATE/ALTER/DROP DATABASE count
                  as run in the database they name
Two things it gets wrong, which ``filter_problems`` finds in the plan, before anything changes:
  - a statement that changes the database while another (or no) default database was selected,
    e.g. ``DROP TABLE shop.orders`` without ``USE shop``: left out of the replay;
  - one statement whose rows change tables of the database and of another database (a
    multi-table UPDATE/DELETE, a trigger writing across databases): mariadb-binlog cannot split
    its row events (a multi-table UPDATE came out as invalid SQL).
Statements run in the database that name another database (``USE shop; INSERT INTO crm.t ...``
in statement format) are written and fail in the scratch instance, which holds no other database:
the restore stops with the server's error and the scratch instance is removed.
"""

import os
import re

from ansible.module_utils.binlog_archive import (
    GTID_EVENTS,
    QUERY_EVENT,
    TABLE_MAP_EVENT,
    ArchiveError,
    read_file,
)
from ansible.module_utils.btw_db import BtwDbError, db_restore

DATABASE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_$-]*$")
# session statements that change no table: never a problem wherever they ran
_NO_TABLE = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|XA)\b", re.IGNORECASE)
_SHOW = 5  # problems named in a message


class PitrBtwError(ArchiveError):
    """A restore from a btw dump is refused (nothing changed) or failed."""


def check_database_name(name):
    if not DATABASE_RE.match(str(name or "")):
        raise PitrBtwError(f"database {name!r}: give a plain database name (letters, digits, _ $ -)")
    return str(name)


def choose_backups(listed, database=None, without_coordinates=()):
    """The backups a restore may start from, and the database the replay is filtered to (None: all).

    listed: every full backup of the catalog (mysql_full_backups.list_backups); without_coordinates:
    the btw sets whose dumps record no coordinates (mysql_full_backups.btw_dumps_without_coordinates).

    - database named: every LVM backup and full dump (they hold all databases) and the btw dumps of
      that database; refused when no btw dump with coordinates holds it.
    - no database: the LVM backups and full dumps; only when the catalog lists btw dumps alone, and
      all of one database, those (a btw base restores that one database only).
    """
    full = [b for b in listed if b["kind"] != "btw"]
    btw = [b for b in listed if b["kind"] == "btw" and b.get("restorable")]
    held = sorted({b["database"] for b in btw})
    if database:
        database = check_database_name(database)
        mine = [b for b in btw if b["database"] == database]
        if not mine:
            bare = [w for w in without_coordinates if w.get("database") == database]
            if bare:
                raise PitrBtwError(
                    f"database {database}: the btw dumps of it ({bare[0]['path']}) record no binlog "
                    f"coordinates ({bare[0]['note']}): a point-in-time restore cannot start from them. "
                    "Nothing was changed"
                )
            raise PitrBtwError(
                f"database {database}: no btw mysqldump set listed holds a dump of it with binlog coordinates"
                + (f" (the btw dumps listed hold: {', '.join(held)})" if held else " (no btw dump listed)")
                + "; leave database unset to restore every database from an LVM backup or a full dump. "
                "Nothing was changed"
            )
        return [b for b in listed if b["kind"] != "btw" or b in mine], database
    if full or not btw:
        return full, None
    if len(held) > 1:
        raise PitrBtwError(
            f"the full backups listed are btw mysqldump sets of several databases ({', '.join(held)}), each "
            "holding one: name the database to restore (database / mysql_binlog_archive_pitr_database)"
        )
    return btw, held[0]


def _names_database(statement, database):
    """Whether a statement names an object of the database (`db`.x, db.x, `db`.`x`)."""
    db = re.escape(database)
    return bool(re.search(rf"(?<![\w$`.])(`{db}`|{db})\s*\.", statement))


def filter_problems(index, applied, database):
    """What ``mariadb-binlog --database=<database>`` would replay wrongly among the applied
    transactions (indexes into index.trx): [text], empty when the filter is exact for them."""
    if not applied:
        return []
    wanted = {(index.trx[i]["file"], index.trx[i]["start"]): i for i in applied}
    used = {index.trx[i]["file"] for i in applied}
    files = [name for name, _size in index.files if name in used]
    problems = []
    for name in files:
        current, group, last_type = None, set(), None
        for event in read_file(os.path.join(index.directory, name))["events"]:
            if event["type"] in GTID_EVENTS:
                current = wanted.get((event["file"], event["start"]))
                group, last_type = set(), event["type"]
                continue
            if current is None:
                continue
            trx = index.trx[current]
            what = f"GTID {trx['gtid']} at {trx['file']}:{trx['start']}"
            if event["type"] == TABLE_MAP_EVENT and event.get("table"):
                if last_type != TABLE_MAP_EVENT:
                    group = set()  # the table maps of one statement come together, before its rows
                group.add(event["table"].split(".", 1)[0])
                if database in group and len(group) > 1:
                    problems.append(
                        f"{what}: one statement changed tables of {database} and of "
                        f"{', '.join(sorted(group - {database}))} (a multi-table UPDATE/DELETE or a "
                        "trigger): its row events cannot be split by database"
                    )
                    current = None
            elif event["type"] == QUERY_EVENT:
                text = event.get("query") or ""
                if (
                    event.get("db") != database
                    and not _NO_TABLE.match(text)
                    and _names_database(text, database)
                ):
                    problems.append(
                        f"{what}: a statement on {database} run with "
                        + (f"default database {event['db']}" if event.get("db") else "no default database")
                        + f" would be left out ({text.strip()[:120]!r})"
                    )
                    current = None
            last_type = event["type"]
    return problems


def refuse_filter_problems(problems, database, backup_name):
    if problems:
        raise PitrBtwError(
            f"the replay from btw dump {backup_name} is filtered to database {database} "
            f"(mariadb-binlog --database), which would replay these transactions wrongly: "
            + "; ".join(problems[:_SHOW])
            + (f"; and {len(problems) - _SHOW} more" if len(problems) > _SHOW else "")
            + ". Restore to a target before the first of them, or from an LVM backup or a full dump. "
            "Nothing was changed"
        )


def load_dump(backup, socket, runner=None):
    """Load the btw dump into its database on the (scratch) server listening on socket, as
    btw_restore loads it (rdiff-backup restore at the dump's session, CREATE DATABASE, mysql, the
    dump's tables checked). Returns btw_db.db_restore's result."""
    root, destination = os.path.split(os.path.normpath(backup["destination"]))
    try:
        result = db_restore(
            backup["dump"][: -len(".sql")],
            "mysqldump",
            root or "/",
            destination,
            target_database=backup["database"],
            at=str(int(backup["session"])),
            connection=dict(socket=socket, user="root"),
            create_database=True,
            runner=runner,
        )
    except BtwDbError as exc:
        raise PitrBtwError(
            f"loading btw dump {backup['name']} into the scratch instance failed: {exc}"
        ) from exc
    if (os.path.basename(result["chain"]), int(result["session"])) != (
        os.path.basename(backup["path"]),
        int(backup["session"]),
    ):
        raise PitrBtwError(
            f"btw dump {backup['name']}: the restore loaded {result['chain']} at {int(result['session'])} "
            "instead (the set changed during the restore?)"
        )
    return result
