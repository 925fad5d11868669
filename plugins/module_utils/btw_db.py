"""Database dump backups ("btw-backup db"): dump, compare by content, store with rdiff-backup.

Types:

* ``pg_dump``: ``pg_dump --format=custom`` of one database (``<name>.dump``).  A custom-format
  archive embeds its creation time, so two dumps of the same data differ in bytes; they are
  compared through their content: ``pg_restore -f -`` renders the SQL text and the hash skips the
  lines that vary between runs (``\\restrict``/``\\unrestrict`` keys, "Dumped from/by",
  "Started/Completed on").
* ``pg_globals``: ``pg_dumpall --globals-only`` (roles, tablespaces) as SQL (``<name>.sql``).
* ``mysqldump``: ``mysqldump --single-transaction --skip-dump-date`` of one MySQL/MariaDB
  database (``<name>.sql``).

The dump is written into a hidden 0700 staging directory beside the chains, compared with the
dump held by the current rdiff-backup chain, and stored with rdiff-backup only when its content
changed; otherwise a note goes to ``log.txt``.  Passwords travel in the environment (PGPASSWORD)
or a 0600 option file (MySQL) inside the staging directory, removed in ``finally``.  The MySQL
clients get it as ``--defaults-file`` (first argument): the only option file they read, so a
~/.my.cnf or /etc/mysql/my.cnf on the backup host never changes the server, user or password.
"""

import glob
import hashlib
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
    remove_partials,
    resolve_destination,
    session_size,
    store_in_chain,
    validate_policy,
)

TYPES = ("pg_dump", "pg_globals", "mysqldump")
EXTENSIONS = {"pg_dump": ".dump", "pg_globals": ".sql", "mysqldump": ".sql"}
STAGING_PREFIX = ".staging-"
_VOLATILE = re.compile(
    rb"^(\\(un)?restrict \S+|-- (Dumped from|Dumped by|Started on|Completed on|Dump completed on)\b)"
)


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


def dump_command(backup_type, database, connection, out_path, staging, pg_bin_dir=None):
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
            f"--result-file={out_path}",
            "--",
            database,
        ],
        {},
    )


def content_hash(runner, backup_type, path, pg_bin_dir=None):
    """sha256 of the dump's content without the lines that change from run to run."""
    digest = hashlib.sha256()
    if backup_type == "pg_dump":
        lines = runner.stream([pg_bin(pg_bin_dir, "pg_restore"), "--file", "-", path])
    else:
        lines = _read_lines(path)
    for line in lines:
        if not _VOLATILE.match(line):
            digest.update(line)
    return digest.hexdigest()


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
):
    """Dump a database; store it with rdiff-backup if its content changed.  Returns a result dict."""
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
        argv, env = dump_command(backup_type, database, connection, dump_path, staging, pg_bin_dir)
        rc, _out, err = runner.run(argv, env=env)
        if rc != 0:
            what = f"database {database}" if database else "the cluster globals"
            raise BtwDbError(f"{os.path.basename(argv[0])} of {what} failed (rc={rc}): {err.strip()[-800:]}")
        os.chmod(dump_path, 0o600)
        dump_size = os.path.getsize(dump_path)
        new_hash = content_hash(runner, backup_type, dump_path, pg_bin_dir)
        chains = list_chains(dest)
        previous = os.path.join(chains[-1][1], filename) if chains else None
        old_hash = None
        if previous and os.path.isfile(previous):
            old_hash = content_hash(runner, backup_type, previous, pg_bin_dir)
        result.update(dump_size_bytes=dump_size, content_sha256=new_hash)
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
            repo, chain_reason, is_new = store_in_chain(
                runner, dump_dir, dest, max_count, max_span, now=now, touch=[dump_path]
            )
            apply_owner([dest], owner_ids)
            apply_owner([repo], owner_ids, recursive=True)
            result.update(
                changed=True,
                stored=True,
                full=is_new,
                chain_reason=chain_reason,
                reason="no previous dump" if old_hash is None else "dump content changed",
                location=repo,
                size_bytes=session_size(repo, is_new),
                chain=chain_state(repo),
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result["duration_seconds"] = round(time.time() - started, 3)
    return result


def restore_command(backup_type, dump_path, target_database, connection, staging, pg_bin_dir=None):
    """(argv, env, stdin_path) that loads a dump into target_database (globals: into the cluster)."""
    if backup_type == "pg_dump":
        return (
            [
                pg_bin(pg_bin_dir, "pg_restore"),
                *pg_args(connection),
                "--no-owner",
                "--exit-on-error",
                "--dbname",
                target_database,
                dump_path,
            ],
            pg_env(connection),
            None,
        )
    if backup_type == "pg_globals":
        return (
            [
                pg_bin(pg_bin_dir, "psql"),
                *pg_args(connection),
                "--dbname",
                target_database or "postgres",
                "--file",
                dump_path,
            ],
            pg_env(connection),
            None,
        )
    defaults = mysql_defaults_file(staging, connection)
    return (
        [shutil.which("mysql") or "mysql", f"--defaults-file={defaults}", "--", target_database],
        {},
        dump_path,
    )


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
):
    """Load the dump stored at time `at` (default: the latest) into target_database."""
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
    filename = name + EXTENSIONS[backup_type]
    result = {
        "name": name,
        "type": backup_type,
        "chain": repo,
        "session": session,
        "target_database": target_database,
        "changed": not check_mode,
    }
    if check_mode:
        result["duration_seconds"] = round(time.time() - started, 3)
        return result
    staging = tempfile.mkdtemp(prefix="btw-restore-")
    try:
        dump_path = os.path.join(staging, filename)
        rc, _out, err = runner.run(
            [
                "rdiff-backup",
                "restore",
                "--at",
                str(int(session)),
                os.path.join(repo, filename),
                dump_path,
            ]
        )
        if rc != 0:
            raise BtwDbError(f"rdiff-backup restore of {filename} failed (rc={rc}): {err.strip()[-800:]}")
        if create_database and backup_type == "pg_dump":
            rc, _out, err = runner.run(
                [pg_bin(pg_bin_dir, "createdb"), *pg_args(connection), target_database],
                env=pg_env(connection),
            )
            if rc != 0:
                raise BtwDbError(f"createdb {target_database} failed: {err.strip()[-400:]}")
        if create_database and backup_type == "mysqldump":
            defaults = mysql_defaults_file(staging, connection)
            rc, _out, err = runner.run(
                [
                    shutil.which("mysql") or "mysql",
                    f"--defaults-file={defaults}",
                    "-e",
                    f"CREATE DATABASE `{target_database}`",
                ]
            )
            if rc != 0:
                raise BtwDbError(f"creating database {target_database} failed: {err.strip()[-400:]}")
            os.unlink(defaults)
        argv, env, stdin_path = restore_command(
            backup_type, dump_path, target_database, connection, staging, pg_bin_dir
        )
        rc, _out, err = runner.run(argv, env=env, stdin_path=stdin_path)
        if rc != 0:
            raise BtwDbError(
                f"loading the dump into {target_database or 'the cluster'} failed (rc={rc}): "
                f"{err.strip()[-800:]}"
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result["duration_seconds"] = round(time.time() - started, 3)
    return result
