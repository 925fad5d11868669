"""Database dump backups ("btw-backup db"): dump, compare by content, store with rdiff-backup.

Types:

* ``pg_dump``: ``pg_dump --format=custom`` of one database (``<name>.dump``).  A custom-format
  archive embeds its creation time, so two dumps of the same data differ in bytes; they are
  compared through their content: ``pg_restore -f -`` renders the SQL text and the hash skips the
  lines that vary between runs (``\\restrict``/``\\unrestrict`` keys, "Dumped from/by",
  "Started/Completed on").
* ``pg_globals``: ``pg_dumpall --globals-only`` (roles, tablespaces) as SQL (``<name>.sql``).
* ``mysqldump``: ``mysqldump --single-transaction --skip-dump-date`` of one MySQL/MariaDB
  database (``<name>.sql``).  Where the server writes a binary log, the dump also records the binlog
  file, position and GTID of its snapshot (``--master-data=2 --gtid`` on MariaDB, read from the
  consistent snapshot without a lock; ``--source-data=2`` / ``--master-data=2`` on MySQL, which
  takes FLUSH TABLES WITH READ LOCK for a moment and needs RELOAD and REPLICATION CLIENT).

Each stored dump has ``<name>.meta.json`` (0600) beside it in the chain: its figures (tables,
bytes) and binlog coordinates (or why there are none).  The coordinates of every stored session also
go to ``.btw-coordinates.json`` in the set's destination, which mysql_full_backups reads so the binlog
archive keeps what a retained dump needs.  The shrink guard (btw_retention.shrink_guard) judges the
figures against the last good dump before it is stored: a suspect dump goes into a chain of its own,
so the good chain's newest state stays the good dump.

The dump is written into a hidden 0700 staging directory beside the chains, compared with the
dump held by the current rdiff-backup chain, and stored with rdiff-backup only when its content
changed; otherwise a note goes to ``log.txt``.  Passwords travel in the environment (PGPASSWORD)
or a 0600 option file (MySQL) inside the staging directory, removed in ``finally``.  The MySQL
clients get it as ``--defaults-file`` (first argument): the only option file they read, so a
~/.my.cnf or /etc/mysql/my.cnf on the backup host never changes the server, user or password.

``db_restore`` loads a stored dump into a database, guarded (an existing non-empty target needs
force), in one transaction where the server can, and checked against the objects the dump creates:
see the "Restore" section below.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time

from ansible.module_utils.btw_fs import (
    DEFAULT_MAX_INCREMENTAL_COUNT,
    DEFAULT_MAX_INCREMENTAL_SPAN,
    BtwError,
    Runner,
    append_log,
    apply_owner,
    chain_at,
    chain_state,
    ensure_dir,
    list_chains,
    parse_at,
    parse_owner,
    rdiff_sessions,
    remove_partials,
    resolve_destination,
    session_size,
    store_in_chain,
    validate_policy,
    write_atomic,
)
from ansible.module_utils.btw_retention import list_backups, shrink_guard, with_status
from ansible.module_utils.mysql_dialect import MARIADB, Dialect, DialectError, parse_client_version
from ansible.module_utils.mysql_seed import HeaderScanner
from ansible.module_utils.retention_policy import SUSPECT

TYPES = ("pg_dump", "pg_globals", "mysqldump")
EXTENSIONS = {"pg_dump": ".dump", "pg_globals": ".sql", "mysqldump": ".sql"}
STAGING_PREFIX = ".staging-"
_VOLATILE = re.compile(
    rb"^(\\(un)?restrict \S+|-- (Dumped from|Dumped by|Started on|Completed on|Dump completed on)\b"
    # the binlog coordinates a mysqldump records change with every write to any database
    rb"|(-- )?CHANGE (MASTER|REPLICATION SOURCE) TO (MASTER|SOURCE)_LOG_FILE|-- SET GLOBAL gtid_slave_pos"
    rb"|SET @@GLOBAL\.GTID_PURGED)"
)
META_SUFFIX = ".meta.json"
COORDINATES_FILE = ".btw-coordinates.json"
_PRIVILEGE_DENIED = re.compile(r"Access denied; you need \(at least one of\) the (.+?) privilege", re.I)


class BtwDbError(BtwError):
    """An operator-facing error of a database backup."""


def pg_bin(pg_bin_dir, tool):
    if pg_bin_dir:
        path = os.path.join(pg_bin_dir, tool)
        if not os.access(path, os.X_OK):
            raise BtwDbError(f"{tool} not found in pg_bin_dir {pg_bin_dir}")
        return path
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise BtwDbError(f"{tool} not found: install the PostgreSQL client or set pg_bin_dir")
    return candidates[-1]


def pg_args(connection):
    argv = []
    if connection.get("host"):
        argv += ["--host", str(connection["host"])]
    if connection.get("port"):
        argv += ["--port", str(connection["port"])]
    if connection.get("user"):
        argv += ["--username", str(connection["user"])]
    return argv + ["--no-password"]


def pg_env(connection):
    env = {}
    if connection.get("password"):
        env["PGPASSWORD"] = str(connection["password"])
    if connection.get("passfile"):
        _check_secret_file(connection["passfile"])
        env["PGPASSFILE"] = connection["passfile"]
    return env


def _check_secret_file(path):
    try:
        mode = os.stat(path).st_mode & 0o077
    except OSError as exc:
        raise BtwDbError(f"credentials file {path}: {exc.strerror}") from exc
    if mode:
        raise BtwDbError(f"credentials file {path} must not be readable by group or others (chmod 0600)")


def mysql_defaults_file(staging, connection):
    """A 0600 [client] file for mysqldump/mysql, passed first as '--defaults-file' (exclusive)."""
    if connection.get("defaults_file"):
        _check_secret_file(connection["defaults_file"])
        return connection["defaults_file"]
    lines = ["[client]"]
    for key, opt in (
        ("host", "host"),
        ("port", "port"),
        ("user", "user"),
        ("password", "password"),
        ("socket", "socket"),
    ):
        value = connection.get(key)
        if value not in (None, ""):
            text = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{opt}="{text}"')
    path = os.path.join(staging, "client.cnf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def coordinate_options(version_output):
    """The mysqldump options that record the snapshot's binlog coordinates, for the dump client
    whose --version printed version_output: MariaDB --master-data=2 --gtid (read from the consistent
    snapshot, no lock), MySQL --source-data=2 from 8.0.26, else --master-data=2 (MySQL takes FLUSH
    TABLES WITH READ LOCK for a moment with --single-transaction)."""
    try:
        flavor, version = parse_client_version(version_output)
    except DialectError as exc:
        raise BtwDbError(f"cannot tell the mysqldump client's version: {exc}") from None
    dialect = Dialect(flavor, version)
    options = [dialect.dump_coordinates_option(2)]
    if flavor == MARIADB:
        options.append("--gtid")
    return options


def privilege_message(stderr):
    """A clear message when mysqldump could not read the coordinates for lack of a privilege, else None."""
    m = _PRIVILEGE_DENIED.search(stderr or "")
    if not m:
        return None
    return (
        f"the dump user lacks a privilege to record the binlog coordinates ({m.group(1)}); "
        "grant it RELOAD and REPLICATION CLIENT on MySQL, BINLOG MONITOR on MariaDB 10.5+ "
        "(e.g. GRANT RELOAD, REPLICATION CLIENT ON *.* TO 'backup'@'host'), "
        "or set record_coordinates: false for this set (its dumps then keep no binlogs in the archive)"
    )


def mysql_binlog_enabled(runner, defaults_file):
    """Whether the server writes a binary log (@@log_bin); a failed connection is reported here."""
    rc, out, err = runner.run(
        [
            shutil.which("mysql") or "mysql",
            f"--defaults-file={defaults_file}",
            "--batch",
            "--skip-column-names",
            "--execute",
            "SELECT @@GLOBAL.log_bin",
        ]
    )
    if rc != 0:
        raise BtwDbError(f"connecting to the MySQL/MariaDB server failed (rc={rc}): {_client_error(err)}")
    return out.strip() in ("1", "ON")


def dump_coordinates(path):
    """{binlog_file, binlog_position, gtid} a mysqldump recorded, None when it recorded none."""
    scanner = HeaderScanner()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            scanner.feed(chunk)
    scanner.finish()
    if not scanner.found:
        return None
    return {
        "binlog_file": scanner.binlog_file,
        "binlog_position": scanner.binlog_position,
        "gtid": scanner.gtid or None,
    }


def read_coordinate_ledger(dest):
    """The recorded coordinates of a set's stored dumps (oldest first), [] when none or unreadable."""
    try:
        with open(os.path.join(dest, COORDINATES_FILE), encoding="utf-8") as f:
            entries = json.load(f).get("dumps", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("binlog_file")]


def _record_coordinates(dest, entry):
    entries = read_coordinate_ledger(dest)
    present = {name for name, _path in list_chains(dest)}
    entries = [e for e in entries if e.get("chain") in present] + [entry]
    write_atomic(os.path.join(dest, COORDINATES_FILE), json.dumps({"dumps": entries}, indent=1).encode())


def dump_command(backup_type, database, connection, out_path, staging, pg_bin_dir=None, extra_options=()):
    """(argv, env) for the dump; the dump goes to out_path."""
    if backup_type == "pg_dump":
        return (
            [
                pg_bin(pg_bin_dir, "pg_dump"),
                *pg_args(connection),
                "--format=custom",
                "--file",
                out_path,
                "--dbname",
                database,
            ],
            pg_env(connection),
        )
    if backup_type == "pg_globals":
        return (
            [pg_bin(pg_bin_dir, "pg_dumpall"), *pg_args(connection), "--globals-only", "--file", out_path],
            pg_env(connection),
        )
    defaults = mysql_defaults_file(staging, connection)
    return (
        [
            shutil.which("mysqldump") or "mysqldump",
            f"--defaults-file={defaults}",
            "--single-transaction",
            "--skip-dump-date",
            "--routines",
            "--events",
            "--triggers",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            *extra_options,
            f"--result-file={out_path}",
            "--",
            database,
        ],
        {},
    )


def content_hash(runner, backup_type, path, pg_bin_dir=None):
    """sha256 of the dump's content without the lines that change from run to run."""
    return dump_content(runner, backup_type, path, pg_bin_dir)[0]


_TABLE_LINE = {
    "pg_dump": re.compile(rb"^CREATE (UNLOGGED )?TABLE "),
    "mysqldump": re.compile(rb"^CREATE TABLE `"),
    "pg_globals": re.compile(rb"^CREATE ROLE "),
}


def dump_content(runner, backup_type, path, pg_bin_dir=None):
    """(content sha256, tables created) of a dump, in one pass: the hash leaves out the lines that
    change from run to run; for pg_globals the count is of the roles."""
    digest = hashlib.sha256()
    if backup_type == "pg_dump":
        lines = runner.stream([pg_bin(pg_bin_dir, "pg_restore"), "--file", "-", path])
    else:
        lines = _read_lines(path)
    creates = _TABLE_LINE[backup_type]
    count = 0
    for line in lines:
        if not _VOLATILE.match(line):
            digest.update(line)
            if creates.match(line):
                count += 1
    return digest.hexdigest(), count


def dump_figures(backup_type, objects, size):
    """The shrink guard's figures of a dump: tables (roles for pg_globals) and bytes."""
    return {("roles" if backup_type == "pg_globals" else "tables"): objects, "bytes": size}


def _read_lines(path):
    with open(path, "rb") as f:
        yield from f


def _validate(name, backup_type, database):
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise BtwDbError(f"backup set name {name!r}: use letters, digits, '.', '_' and '-'")
    if backup_type not in TYPES:
        raise BtwDbError(f"unknown backup type {backup_type!r} for a database backup: use one of {TYPES}")
    if backup_type == "pg_globals" and database:
        raise BtwDbError("pg_globals dumps the cluster's globals: do not give a database")
    if backup_type != "pg_globals" and not database:
        raise BtwDbError(f"{backup_type} needs a database name")


def db_backup(
    name,
    backup_type,
    root,
    destination,
    database=None,
    connection=None,
    pg_bin_dir=None,
    max_incremental_count=DEFAULT_MAX_INCREMENTAL_COUNT,
    max_incremental_span=DEFAULT_MAX_INCREMENTAL_SPAN,
    owner=None,
    check_mode=False,
    runner=None,
    now=None,
    record_coordinates=True,
    shrink_threshold=0.4,
    accept_shrink=False,
):
    """Dump a database; store it with rdiff-backup if its content changed.  Returns a result dict.

    The result's "verdict" is the shrink guard's (btw_retention.shrink_guard): a suspect dump is
    stored in a new chain of its own and recorded suspect; the caller fails the run with its message.
    """
    started = time.time()
    runner = runner or Runner()
    connection = dict(connection or {})
    _validate(name, backup_type, database)
    max_count, max_span = validate_policy(max_incremental_count, max_incremental_span)
    owner_ids = parse_owner(owner)
    dest = resolve_destination(root, destination)
    filename = name + EXTENSIONS[backup_type]

    if check_mode:  # nothing is written beside the backups in check mode
        staging = tempfile.mkdtemp(prefix="btw-check-")
    else:
        ensure_dir(dest)
        remove_partials(dest)
        for stale in glob.glob(os.path.join(dest, STAGING_PREFIX + "*")):
            shutil.rmtree(stale, ignore_errors=True)
        staging = os.path.join(dest, f"{STAGING_PREFIX}{os.getpid()}")
        os.mkdir(staging, 0o700)
    result = {"name": name, "type": backup_type, "database": database, "destination": dest}
    try:
        dump_dir = os.path.join(staging, "dump")
        os.mkdir(dump_dir, 0o700)
        dump_path = os.path.join(dump_dir, filename)
        extra, coordinates_note = [], None
        if backup_type == "mysqldump":
            # one option file (written once, in staging) for the check and the dump
            connection = dict(connection, defaults_file=mysql_defaults_file(staging, connection))
            if not record_coordinates:
                coordinates_note = "not recorded (record_coordinates is false)"
            elif not mysql_binlog_enabled(runner, connection["defaults_file"]):
                coordinates_note = "none: the server has no binary log (log_bin is OFF)"
            else:
                _rc, version, _err = runner.run([shutil.which("mysqldump") or "mysqldump", "--version"])
                extra = coordinate_options(version)
        argv, env = dump_command(backup_type, database, connection, dump_path, staging, pg_bin_dir, extra)
        rc, _out, err = runner.run(argv, env=env)
        if rc != 0:
            what = f"database {database}" if database else "the cluster globals"
            detail = (privilege_message(err) if extra else None) or err.strip()[-800:]
            raise BtwDbError(f"{os.path.basename(argv[0])} of {what} failed (rc={rc}): {detail}")
        os.chmod(dump_path, 0o600)
        dump_size = os.path.getsize(dump_path)
        new_hash, objects = dump_content(runner, backup_type, dump_path, pg_bin_dir)
        figures = dump_figures(backup_type, objects, dump_size)
        coordinates = dump_coordinates(dump_path) if extra else None
        if extra and coordinates is None:
            raise BtwDbError(
                f"{os.path.basename(argv[0])} of database {database} recorded no binlog coordinates"
            )
        chains = list_chains(dest)
        previous = os.path.join(chains[-1][1], filename) if chains else None
        old_hash = None
        if previous and os.path.isfile(previous):
            old_hash = content_hash(runner, backup_type, previous, pg_bin_dir)
        result.update(dump_size_bytes=dump_size, content_sha256=new_hash, figures=figures)
        if backup_type == "mysqldump":
            result.update(coordinates=coordinates, coordinates_note=coordinates_note)
        # judged before anything is stored (check mode: nothing recorded), recorded after
        verdict = shrink_guard(dest, None, figures, False, shrink_threshold, accept_shrink, check_mode=True)
        if old_hash == new_hash:
            result.update(
                changed=False,
                stored=False,
                reason="dump content unchanged since the last backup",
                location=previous,
                size_bytes=0,
            )
            if not check_mode:
                what = f"database {database}" if database else "globals"
                log = append_log(
                    dest,
                    f"{name}: {what} unchanged since the last backup "
                    f"({os.path.basename(chains[-1][1])}); nothing stored",
                )
                apply_owner([log], owner_ids)
        elif check_mode:
            result.update(
                changed=True, stored=False, reason="dump content changed", location=dest, size_bytes=0
            )
        else:
            meta = {"version": 1, "type": backup_type, "database": database, "figures": figures}
            if backup_type == "mysqldump":
                meta.update(coordinates=coordinates, coordinates_note=coordinates_note)
            meta_path = os.path.join(dump_dir, name + META_SUFFIX)
            write_atomic(meta_path, json.dumps(meta, indent=1).encode())
            suspect = verdict["status"] == "suspect"
            repo, chain_reason, is_new = store_in_chain(
                runner,
                dump_dir,
                dest,
                max_count,
                max_span,
                now=now,
                touch=[dump_path, meta_path],
                force_full="the dump is suspect (shrink guard): kept apart from the good chain"
                if suspect
                else None,
            )
            apply_owner([dest], owner_ids)
            apply_owner([repo], owner_ids, recursive=True)
            state = chain_state(repo)
            if coordinates:
                _record_coordinates(
                    dest,
                    dict(
                        coordinates,
                        chain=state["chain"],
                        session=int(state["last_session"]),
                        dump=filename,
                        database=database,
                    ),
                )
            result.update(
                changed=True,
                stored=True,
                full=is_new,
                chain_reason=chain_reason,
                reason="no previous dump" if old_hash is None else "dump content changed",
                location=repo,
                size_bytes=session_size(repo, is_new),
                chain=state,
            )
        result["verdict"] = shrink_guard(
            dest, result["location"], figures, result["stored"], shrink_threshold, accept_shrink,
            check_mode=check_mode, now=now,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result["duration_seconds"] = round(time.time() - started, 3)
    return result


# ---------------------------------------------------------------------------------------------
# Restore: guard the target database, load in one transaction where the server can, then check
# the restored objects against the dump's own list of them.
#
# Files: the restore works in a private 0700 temporary directory (the dump fetched from the chain,
# the MySQL option file the module writes) that is removed in ``finally``.  A ``credentials_file``
# given by the operator is only ever read, never created, moved or removed.

# relkind -> kind, and the kinds a dump's CREATE statements name; pg_class and the dump agree on these.
_PG_RELKINDS = {
    "r": "table",
    "p": "table",
    "v": "view",
    "m": "materialized view",
    "S": "sequence",
    "f": "foreign table",
}
_PG_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_PG_CREATE = re.compile(
    r"^CREATE (?:UNLOGGED )?(TABLE|VIEW|MATERIALIZED VIEW|SEQUENCE|FOREIGN TABLE) "
    rf"({_PG_IDENT})\.({_PG_IDENT})[\s(;]"
)
_PG_IDENTITY_SEQUENCE = re.compile(rf"\bSEQUENCE NAME ({_PG_IDENT})\.({_PG_IDENT})\b")
_PG_CREATE_ROLE = re.compile(rf"^CREATE ROLE ({_PG_IDENT});")
_MY_IDENT = r"`((?:[^`]|``)+)`"
_MY_CREATE = (
    (re.compile(rf"^CREATE TABLE {_MY_IDENT}"), "table"),
    (re.compile(rf"^CREATE SEQUENCE {_MY_IDENT}"), "sequence"),
    (re.compile(rf"^/\*!50001 VIEW {_MY_IDENT} AS"), "view"),  # the final view, not its stand-in
)
_MY_TABLE_TYPES = {"BASE TABLE": "table", "VIEW": "view", "SEQUENCE": "sequence", "SYSTEM VERSIONED": "table"}
_TOLERATED_GLOBALS_ERROR = re.compile(r'ERROR:\s+(role|tablespace) "[^"]*" already exists')
_PG_RELKIND_LIST = "('r', 'p', 'v', 'm', 'S', 'f')"
_RELATION_KINDS = ("table", "view", "sequence", "materialized", "foreign")  # first word of a kind
_SHOW = 10  # objects named in a message
DUMP_CHECK = "tables, views and sequences the dump creates, looked up in the restored database"


def _pg_unquote(ident):
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _sql_literal(name):
    """A quoted SQL string of a database name, which db_restore has checked (no quote, no backslash)."""
    return "'" + str(name).replace("'", "''") + "'"


def _lines(text):
    """Lines of a text, or of an iterable of str/bytes lines (a file, a pg_restore stream)."""
    if isinstance(text, str):
        return text.splitlines()
    return (line.decode("utf-8", "replace") if isinstance(line, bytes) else line for line in text)


def pg_dump_objects(sql_lines):
    """{'table public.items', 'view public.v', ...} created by a pg_dump rendered as SQL."""
    found = set()
    for line in _lines(sql_lines):
        m = _PG_CREATE.match(line)
        if m:
            found.add(f"{m.group(1).lower()} {_pg_unquote(m.group(2))}.{_pg_unquote(m.group(3))}")
        for m in _PG_IDENTITY_SEQUENCE.finditer(line):
            found.add(f"sequence {_pg_unquote(m.group(1))}.{_pg_unquote(m.group(2))}")
    return found


def pg_globals_roles(sql_lines):
    """The roles a pg_dumpall --globals-only script creates."""
    return {_pg_unquote(m.group(1)) for m in map(_PG_CREATE_ROLE.match, _lines(sql_lines)) if m}


def mysql_dump_objects(sql_lines):
    """{'table t', 'view v', 'sequence s'} created by a mysqldump of one database."""
    found = set()
    for line in _lines(sql_lines):
        for pattern, kind in _MY_CREATE:
            m = pattern.match(line)
            if m:
                found.add(f"{kind} {m.group(1).replace('``', '`')}")
    return found


def restore_plan(target_database, exists, objects, create_database, force):
    """What a restore into target_database does, or a BtwDbError saying why it must not start.

    ``objects`` are what the target holds now (tables, views, sequences, routines, events, ...).
    Returns {'create': bool, 'replace': bool, 'action': text}.
    """
    if create_database and exists:
        raise BtwDbError(
            f"target database {target_database} already exists and create_database is set: restore into "
            f"a new name, or leave create_database unset to load into {target_database}"
            + (" (it is not empty: that also needs force)" if objects and not force else "")
        )
    if not create_database and not exists:
        raise BtwDbError(
            f"target database {target_database} does not exist: set create_database to create it "
            "for the restore"
        )
    if objects and not force:
        shown = ", ".join(sorted(objects)[:_SHOW]) + (", ..." if len(objects) > _SHOW else "")
        raise BtwDbError(
            f"target database {target_database} is not empty ({len(objects)} object(s): {shown}): loading "
            "the dump would replace its tables of the same name; restore into a new database "
            "(create_database) or set force to overwrite them. Nothing was changed"
        )
    if create_database:
        return {"create": True, "replace": False, "action": f"create {target_database} and load the dump"}
    if objects:
        return {
            "create": False,
            "replace": True,
            "action": f"load the dump into {target_database}, replacing the objects it holds of the same "
            f"name ({len(objects)} object(s) there now; force)",
        }
    return {
        "create": False,
        "replace": False,
        "action": f"load the dump into the empty database {target_database}",
    }


def mysql_objects(rows):
    """Objects of a database from (TABLE_TYPE/ROUTINE_TYPE/'EVENT', name) rows ('SCHEMA' rows skipped)."""
    return {f"{_MY_TABLE_TYPES.get(kind, kind.lower())} {name}" for kind, name in rows if kind != "SCHEMA"}


def pg_objects(rows):
    """Objects of a database from (relkind/'function'/'schema', schema, name) rows."""
    found = set()
    for kind, schema, name in rows:
        if kind == "schema":
            found.add(f"schema {schema}")
        else:
            found.add(f"{_PG_RELKINDS.get(kind, kind)} {schema}.{name}")
    return found


def relations(objects):
    """The tables, views and sequences among objects: what a dump's CREATE statements are checked against."""
    return {o for o in objects if o.split(" ", 1)[0] in _RELATION_KINDS}


def compare_objects(expected, found, what=DUMP_CHECK):
    """The check of a restored database against the dump's list of objects."""
    missing = sorted(set(expected) - set(found))
    return {
        "checked": what,
        "expected": len(expected),
        "found": len(set(expected) & set(found)),
        "missing": missing,
        "other": sorted(set(found) - set(expected)),
        "ok": not missing,
    }


def globals_load_errors(stderr):
    """(tolerated, fatal) psql error lines of a globals load: a role or tablespace that already exists
    is expected (the connecting superuser always does; the ALTER ROLE after it still applies)."""
    tolerated, fatal = [], []
    for line in stderr.splitlines():
        if "ERROR:" in line:
            (tolerated if _TOLERATED_GLOBALS_ERROR.search(line) else fatal).append(line.strip())
    return tolerated, fatal


def restore_command(
    backup_type, dump_path, target_database, connection, option_file, pg_bin_dir=None, replace=False
):
    """(argv, env, stdin_path) that loads a dump into target_database (globals: into the cluster).

    pg_restore runs in one transaction: a failure anywhere leaves the target as it was.  With
    ``replace`` (force onto a non-empty database) it drops the dump's objects first (--clean
    --if-exists), as mysqldump's DROP TABLE IF EXISTS does.  ``option_file`` is the MySQL option file.
    """
    if backup_type == "pg_dump":
        return (
            [
                pg_bin(pg_bin_dir, "pg_restore"),
                *pg_args(connection),
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                *(["--clean", "--if-exists"] if replace else []),
                "--dbname",
                target_database,
                dump_path,
            ],
            pg_env(connection),
            None,
        )
    if backup_type == "pg_globals":
        # Not one transaction: CREATE TABLESPACE cannot run inside one, and the script's CREATE ROLE of
        # the connecting superuser always fails. Errors are read from stderr (globals_load_errors).
        return (
            [
                pg_bin(pg_bin_dir, "psql"),
                *pg_args(connection),
                "--no-psqlrc",
                "--set",
                "ON_ERROR_STOP=0",
                "--dbname",
                target_database or "postgres",
                "--file",
                dump_path,
            ],
            pg_env(connection),
            None,
        )
    return ([*_mysql_argv(option_file), "--batch", "--", target_database], {}, dump_path)


def _client_error(stderr):
    """The error lines of a client's stderr (mysql also echoes the failed statement), else its tail."""
    errors = [line.strip() for line in stderr.splitlines() if "ERROR" in line]
    return "; ".join(errors)[-800:] if errors else stderr.strip()[-800:]


def _mysql_argv(option_file):
    return [shutil.which("mysql") or "mysql", f"--defaults-file={option_file}"]


def _unescape_batch(field):
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "0": "\0"}.get(m.group(1), m.group(1)), field)


class _MysqlTarget:
    """The MySQL/MariaDB server a dump is restored into, through the mysql client."""

    def __init__(self, runner, connection, staging):
        self.runner = runner
        self.option_file = mysql_defaults_file(staging, connection)  # written once, in staging

    def query(self, sql):
        rc, out, err = self.runner.run(
            [*_mysql_argv(self.option_file), "--batch", "--skip-column-names", "--execute", sql]
        )
        if rc != 0:
            raise BtwDbError(f"mysql query failed (rc={rc}): {_client_error(err)}")
        return [[_unescape_batch(f) for f in line.split("\t")] for line in out.splitlines()]

    def state(self, database):
        """(exists, objects): one query for the schema and everything in it."""
        name = _sql_literal(database)
        rows = self.query(
            f"SELECT 'SCHEMA', SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {name} "
            "UNION ALL SELECT TABLE_TYPE, TABLE_NAME FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {name} "
            "UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
            f"WHERE ROUTINE_SCHEMA = {name} "
            f"UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {name}"
        )
        return any(kind == "SCHEMA" for kind, _name in rows), mysql_objects(rows)

    def objects(self, database):
        return self.state(database)[1]

    def create(self, database):
        try:
            self.query(f"CREATE DATABASE `{database}`")
        except BtwDbError as exc:
            raise BtwDbError(f"creating database {database} failed: {exc}") from None

    def drop(self, database):
        self.query(f"DROP DATABASE IF EXISTS `{database}`")

    def dump_objects(self, dump_path):
        return mysql_dump_objects(_read_lines(dump_path))


class _PgTarget:
    """The PostgreSQL server a dump is restored into, through psql and pg_restore."""

    def __init__(self, runner, connection, pg_bin_dir):
        self.runner = runner
        self.connection = connection
        self.pg_bin_dir = pg_bin_dir
        self.env = pg_env(connection)

    def query(self, sql, database="postgres"):
        argv = [
            pg_bin(self.pg_bin_dir, "psql"),
            *pg_args(self.connection),
            "--no-psqlrc",
            "--quiet",
            "--no-align",
            "--tuples-only",
            "--field-separator=\t",
            "--set",
            "ON_ERROR_STOP=1",
            "--dbname",
            database,
            "--command",
            sql,
        ]
        rc, out, err = self.runner.run(argv, env=self.env)
        if rc != 0:
            raise BtwDbError(f"psql query on {database} failed (rc={rc}): {err.strip()[-400:]}")
        return [line.split("\t") for line in out.splitlines()]

    def state(self, database):
        """(exists, objects); objects are read from the database itself, so only when it exists."""
        exists = bool(self.query(f"SELECT 1 FROM pg_database WHERE datname = {_sql_literal(database)}"))
        return exists, self.objects(database) if exists else set()

    def objects(self, database):
        user = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
        rows = self.query(
            "SELECT c.relkind::text, n.nspname, c.relname FROM pg_class c "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN {_PG_RELKIND_LIST} AND {user} "
            "UNION ALL SELECT 'function', n.nspname, p.proname FROM pg_proc p "
            f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user} "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') "
            "UNION ALL SELECT 'schema', n.nspname, '' FROM pg_namespace n "
            f"WHERE {user} AND n.nspname <> 'public'",
            database,
        )
        return pg_objects(rows)

    def roles(self):
        return {row[0] for row in self.query("SELECT rolname FROM pg_roles")}

    def create(self, database):
        rc, _out, err = self.runner.run(
            [pg_bin(self.pg_bin_dir, "createdb"), *pg_args(self.connection), "--", database], env=self.env
        )
        if rc != 0:
            raise BtwDbError(f"createdb {database} failed: {err.strip()[-400:]}")

    def drop(self, database):
        rc, _out, err = self.runner.run(
            [pg_bin(self.pg_bin_dir, "dropdb"), *pg_args(self.connection), "--if-exists", "--", database],
            env=self.env,
        )
        if rc != 0:
            raise BtwDbError(f"dropdb {database} failed: {err.strip()[-400:]}")

    def dump_objects(self, dump_path):
        lines = self.runner.stream(
            [pg_bin(self.pg_bin_dir, "pg_restore"), "--schema-only", "--file", "-", dump_path]
        )
        return pg_dump_objects(lines)


def mysql_drop_statements(database, objects):
    """SQL that drops the given objects of a database (what a failed load put into an empty one)."""
    kinds = {"view": "VIEW", "table": "TABLE", "sequence": "SEQUENCE", "procedure": "PROCEDURE"}
    kinds.update(function="FUNCTION", event="EVENT")
    db = "`" + database.replace("`", "``") + "`"
    statements = ["SET FOREIGN_KEY_CHECKS = 0"]
    for obj in sorted(objects, key=lambda o: (o.split(" ", 1)[0] != "view", o)):  # views first
        kind, name = obj.split(" ", 1)
        if kind in kinds:
            statements.append(f"DROP {kinds[kind]} IF EXISTS {db}.`{name.replace('`', '``')}`")
    return "; ".join(statements)


def _undo_created(target, database, created, message):
    """After a failed load: drop the database this restore created, and say so in the error."""
    if not created:
        return message
    try:
        target.drop(database)
    except BtwDbError as exc:
        return f"{message}; dropping {database}, which this restore created, failed too: {exc}"
    return f"{message}; {database}, created for this restore, was dropped again"


def _mysql_failed_state(target, database, expected, was_empty):
    """After a failed mysql load (MySQL/MariaDB cannot roll back DDL): a target that was empty
    before is emptied again; otherwise say how much of the dump is in it."""
    try:
        if was_empty:
            target.query(mysql_drop_statements(database, target.objects(database)))
            left = target.objects(database)
            if not left:
                return f"what the load had created in {database} was dropped again: it is empty, as it was"
        present = relations(target.objects(database))
    except BtwDbError as exc:
        return f"{database} may be PARTIALLY restored; its state could not be read ({exc})"
    missing = sorted(set(expected) - present)
    shown = ", ".join(missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
    return (
        f"{database} is PARTIALLY restored and must not be used as a complete copy: "
        f"{len(set(expected) & present)} of the dump's {len(expected)} tables/views/sequences are there"
        + (
            f" (missing: {shown})"
            if missing
            else " (the load stopped after creating them: their data may be incomplete)"
        )
    )


def _latest_good(dest, repo, session):
    """The latest dump is the newest of a chain the shrink guard did not find suspect (a suspect dump
    has a chain of its own): (chain, session, suspect chains passed over). When every chain is
    suspect, the newest one stays."""
    statuses = {b["name"]: b["status"] for b in with_status(dest, list_backups(dest))}
    skipped = []
    for name, path in reversed(list_chains(dest)):
        sessions = rdiff_sessions(path)
        if statuses.get(name) == SUSPECT:
            skipped.append(name)
        elif sessions:
            return path, sessions[-1], skipped
    return repo, session, []


def db_restore(
    name,
    backup_type,
    root,
    destination,
    target_database=None,
    at=None,
    connection=None,
    pg_bin_dir=None,
    create_database=False,
    check_mode=False,
    runner=None,
    force=False,
):
    """Load the dump stored at time `at` (default: the latest, passing over suspect dumps) into
    target_database.

    Refused before anything changes (check mode too) when the target is missing without
    create_database, exists with it, or holds objects without force.  PostgreSQL loads in one
    transaction; a failed MySQL load is reported with the state it left, and a database created for
    the restore is dropped again.  Afterwards the objects the dump creates are looked up in the target.
    """
    started = time.time()
    runner = runner or Runner()
    connection = dict(connection or {})
    _validate(name, backup_type, "-" if backup_type != "pg_globals" else None)
    if backup_type != "pg_globals" and not re.fullmatch(
        r"[A-Za-z0-9_][A-Za-z0-9_$-]*", target_database or ""
    ):
        raise BtwDbError(f"target database {target_database!r}: give a plain name (letters, digits, _ $ -)")
    dest = resolve_destination(root, destination)
    at_epoch = parse_at(at)
    repo, session = chain_at(dest, at_epoch)
    skipped = []
    if at in (None, "", "now"):
        repo, session, skipped = _latest_good(dest, repo, session)
    filename = name + EXTENSIONS[backup_type]
    result = {
        "name": name,
        "type": backup_type,
        "chain": repo,
        "session": session,
        "target_database": target_database,
        "changed": False,
        "skipped_suspect": skipped,
    }
    staging = tempfile.mkdtemp(prefix="btw-restore-")  # 0700, private to this run
    try:
        if backup_type == "mysqldump":
            target = _MysqlTarget(runner, connection, staging)
        else:
            target = _PgTarget(runner, connection, pg_bin_dir)
        if backup_type == "pg_globals":
            plan = {
                "create": False,
                "replace": False,
                "action": "load the roles and tablespaces into the cluster",
            }
        else:
            exists, objects = target.state(target_database)
            result["target_before"] = {"exists": exists, "objects": len(objects)}
            plan = restore_plan(target_database, exists, objects, create_database, force)
        result.update(action=plan["action"], created=False, replaced=plan["replace"], changed=True)
        if check_mode:
            return result

        dump_path = os.path.join(staging, filename)
        rc, _out, err = runner.run(
            ["rdiff-backup", "restore", "--at", str(int(session)), os.path.join(repo, filename), dump_path]
        )
        if rc != 0:
            raise BtwDbError(f"rdiff-backup restore of {filename} failed (rc={rc}): {err.strip()[-800:]}")
        if backup_type == "pg_globals":
            result.update(_load_globals(runner, target, dump_path, target_database, connection, pg_bin_dir))
            return result

        expected = target.dump_objects(dump_path)
        if plan["create"]:
            target.create(target_database)
            result["created"] = True
        argv, env, stdin_path = restore_command(
            backup_type,
            dump_path,
            target_database,
            connection,
            getattr(target, "option_file", None),
            pg_bin_dir,
            replace=plan["replace"],
        )
        rc, _out, err = runner.run(argv, env=env, stdin_path=stdin_path)
        if rc != 0:
            message = f"loading the dump into {target_database} failed (rc={rc}): {_client_error(err)}"
            if backup_type == "pg_dump":
                message += "; the load ran in one transaction and was rolled back"
            elif not result["created"]:
                was_empty = not result["target_before"]["objects"]
                message += "; " + _mysql_failed_state(target, target_database, expected, was_empty)
            raise BtwDbError(_undo_created(target, target_database, result["created"], message))
        check = compare_objects(expected, relations(target.objects(target_database)))
        result["verified"] = check
        if not check["ok"]:
            shown = ", ".join(check["missing"][:_SHOW])
            message = (
                f"restore check failed: {len(check['missing'])} of the {check['expected']} tables, views and "
                f"sequences the dump creates are not in {target_database} after the load ({shown})"
            )
            if not result["created"]:
                message += f"; {target_database} is not a complete copy of the backup"
            raise BtwDbError(_undo_created(target, target_database, result["created"], message))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        result["duration_seconds"] = round(time.time() - started, 3)
    return result


def _load_globals(runner, target, dump_path, target_database, connection, pg_bin_dir):
    """psql the globals script; fail on any error but an existing role/tablespace; check the roles."""
    argv, env, _stdin = restore_command(
        "pg_globals", dump_path, target_database, connection, None, pg_bin_dir
    )
    rc, _out, err = runner.run(argv, env=env)
    tolerated, fatal = globals_load_errors(err)
    if rc != 0 or fatal:
        raise BtwDbError(
            f"loading the globals failed (rc={rc}): {'; '.join(fatal)[-800:] or err.strip()[-800:]}; "
            "the statements before the error were applied (a globals script cannot run in one transaction)"
        )
    check = compare_objects(
        {f"role {r}" for r in pg_globals_roles(_read_lines(dump_path))},
        {f"role {r}" for r in target.roles()},
        "roles created by the dump",
    )
    if not check["ok"]:
        raise BtwDbError(
            f"restore check failed: roles of the dump missing after the load: {', '.join(check['missing'])}"
        )
    check["other"] = []  # every other role of the cluster is not news
    return {"verified": check, "notes": tolerated}


SCRATCH_PREFIX = "restore_drill_"


def drop_scratch_database(backup_type, database, connection=None, pg_bin_dir=None, check_mode=False,
                          runner=None):
    """Drop a scratch database a restore drill loaded (its name starts with SCRATCH_PREFIX, so a live
    database is never dropped here). Returns {"changed", "existed", "database"}."""
    if backup_type not in ("pg_dump", "mysqldump"):
        raise BtwDbError(f"a scratch database is a pg_dump or mysqldump restore, not {backup_type!r}")
    if not re.fullmatch(re.escape(SCRATCH_PREFIX) + r"[A-Za-z0-9_$-]+", database or ""):
        raise BtwDbError(f"{database!r} is not a scratch database name (it must start with {SCRATCH_PREFIX})")
    runner = runner or Runner()
    staging = tempfile.mkdtemp(prefix="btw-scratch-")  # the MySQL option file, 0700, removed below
    try:
        if backup_type == "mysqldump":
            target = _MysqlTarget(runner, dict(connection or {}), staging)
        else:
            target = _PgTarget(runner, dict(connection or {}), pg_bin_dir)
        existed, _objects = target.state(database)
        if existed and not check_mode:
            target.drop(database)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"changed": existed, "existed": existed, "database": database}
