"""Preflight and health facts of a replication pair (source + replica), as named checks.

Gathering (needs servers) and judging (pure: ``evaluate()``) are separate, so every check's rule is
unit-tested on plain dicts.
"""

import datetime
import os
import re

from ansible.module_utils import mysql_replication_login as replication_login
from ansible.module_utils.mysql_connection import query, variables
from ansible.module_utils.mysql_dialect import Dialect
from ansible.module_utils.mysql_replica import read_status
from ansible.module_utils.mysql_seed import TRANSACTIONAL_ENGINES, SeedError, validate_ignore_tables
from ansible.module_utils.mysql_tls import TLSError, certificate_info, expiry_report, parse_openssl_date

# Error 1236: the source could not send the binlog the replica asked for (usually purged).
ER_SOURCE_FATAL_READING_BINLOG = 1236
ALLOWED_REPLICATION_PRIVILEGES = {"REPLICATION SLAVE", "REPLICATION REPLICA", "USAGE"}


class HealthError(Exception):
    """Facts could not be gathered (bad input or a query failed)."""


def _on(value):
    return str(value).strip().upper() in ("1", "ON", "YES", "TRUE")


# -- grants (pure) ---------------------------------------------------------------------------
_GRANT_RE = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<on>\S+)\s+TO\s", re.I)


def parse_grant(line):
    """'GRANT REPLICATION SLAVE ON *.* TO `repl`@`10.0.0.2` ...' -> ({'REPLICATION SLAVE'}, '*.*').

    Returns (None, None) for lines that are not privilege grants (GRANT PROXY, roles).
    """
    m = _GRANT_RE.match(line.strip())
    if not m or m.group("privs").upper().startswith("PROXY"):
        return None, None
    privs = {p.strip().upper() for p in re.split(r",(?![^(]*\))", m.group("privs"))}
    return privs, m.group("on").replace("`", "")


def extra_privileges(grant_lines):
    """Privileges beyond REPLICATION SLAVE (and USAGE) in SHOW GRANTS output."""
    extra = []
    has_repl = False
    for line in grant_lines:
        privs, on = parse_grant(line)
        if privs is None:
            continue
        if on == "*.*" and privs & {"REPLICATION SLAVE", "REPLICATION REPLICA"}:
            has_repl = True
        for priv in sorted(privs - ALLOWED_REPLICATION_PRIVILEGES):
            extra.append(f"{priv} ON {on}")
    return has_repl, extra


def parse_ignore_table_variable(value):
    """replicate_ignore_table value ('a.b,c.d') -> sorted list."""
    return sorted(t.strip() for t in str(value or "").split(",") if t.strip())


# -- evaluation (pure) -----------------------------------------------------------------------
def check(name, ok, message):
    return dict(name=name, ok=bool(ok), message=message)


def evaluate(source, replica, params, grants=None):
    """Named checks from gathered facts. Returns (checks, reseed_required)."""
    skip = set(params.get("skip_checks") or [])
    mode = params.get("mode") or "preflight"
    checks = []
    checks.append(
        check(
            "log_bin",
            source["log_bin"],
            "binary log is on at the source"
            if source["log_bin"]
            else "log_bin is OFF on the source: set log_bin in its my.cnf and restart it",
        )
    )
    sid, rid = source.get("server_id"), replica.get("server_id")
    if not sid or not rid:
        checks.append(
            check(
                "server_id",
                False,
                f"server_id not set (source {sid}, replica {rid}): give each "
                "server its own non-zero server-id in my.cnf",
            )
        )
    elif sid == rid:
        checks.append(
            check(
                "server_id",
                False,
                f"source and replica have the same server_id {sid}: replication would skip every "
                "event; give the backup server a different server-id in my.cnf",
            )
        )
    else:
        checks.append(check("server_id", True, f"server_id source {sid}, replica {rid}"))
    retention = int(source.get("binlog_retention_seconds") or 0)
    wanted = float(params.get("min_binlog_retention_days") or 0) * 86400
    if retention == 0:
        checks.append(
            check("binlog_retention", True, "binary logs are kept until purged by hand (no expiry)")
        )
    else:
        checks.append(
            check(
                "binlog_retention",
                retention >= wanted,
                f"binlog retention {retention / 86400:g} days "
                f"({'>=' if retention >= wanted else '<'} the minimum {wanted / 86400:g} days)",
            )
        )
    if source.get("galera"):
        checks.append(
            check(
                "galera_log_slave_updates",
                source.get("log_slave_updates"),
                "Galera source writes replicated events to its binlog"
                if source.get("log_slave_updates")
                else "the source is a Galera node without log_slave_updates: writes made through "
                "other nodes would never reach the replica",
            )
        )
    if params.get("ignore_tables") is not None:
        want = sorted(params["ignore_tables"])
        have = replica.get("replicate_ignore_table") or []
        missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        checks.append(
            check(
                "replicate_ignore_table",
                not missing and not unexpected,
                "replica ignores exactly the wanted tables"
                if not missing and not unexpected
                else f"replicate_ignore_table differs from the wanted list: missing {missing}, "
                f"unexpected {unexpected}",
            )
        )
    if params.get("replication_user"):
        checks.append(_check_replication_user(params, grants or {}))

    status = replica.get("status") or {}
    reseed, reason = reseed_needed(status, source.get("binary_logs"))
    if status.get("configured"):
        checks.append(
            check("binlog_available", not reseed, reason or "the binlog the replica needs is on the source")
        )
    if mode == "health":
        running = status.get("io_running") == "Yes" and status.get("sql_running") == "Yes"
        errors = "; ".join(e for e in (status.get("last_io_error"), status.get("last_sql_error")) if e)
        checks.append(
            check(
                "replication_running",
                running and not errors,
                "both replication threads run"
                if running and not errors
                else f"io_running={status.get('io_running')} sql_running={status.get('sql_running')}"
                + (f": {errors}" if errors else ""),
            )
        )
        lag = status.get("seconds_behind")
        max_lag = int(params.get("max_lag_seconds") or 30)
        checks.append(
            check(
                "replication_lag",
                lag is not None and int(lag) <= max_lag,
                f"replica lag {lag}s (max {max_lag}s)",
            )
        )
    checks.extend(tls_checks(source, status, params))
    checks = [c for c in checks if c["name"] not in skip]
    return checks, reseed


def replication_tls(source, status):
    """What is known of the replication connection's encryption: {encrypted, cipher, version, seen_by}.

    ``seen_by`` is ``performance_schema`` when the source's Binlog Dump thread of the replica was
    read there (the real cipher of the IO thread's connection), else ``replica_settings`` (only the
    replica's MASTER_SSL setting is known: with it on, the IO thread refuses a plaintext link).
    """
    thread = source.get("replication_thread_tls")
    if thread:
        cipher = thread.get("cipher") or ""
        return dict(encrypted=bool(cipher), cipher=cipher, version=thread.get("version") or "",
                    seen_by="performance_schema")
    ssl = str(status.get("ssl_allowed") or "").strip().lower() in ("yes", "1")
    return dict(encrypted=ssl, cipher="", version="", seen_by="replica_settings")


def tls_checks(source, status, params):
    """replication_tls (when TLS is required) and tls_certificate_expiry (when certificates are known)."""
    checks = []
    tls = replication_tls(source, status)
    if params.get("tls_required"):
        problems = []
        if str(status.get("ssl_allowed") or "").lower() not in ("yes", "1"):
            problems.append("the replica connects without MASTER_SSL: replication runs in PLAINTEXT")
        elif str(status.get("ssl_verify_server_cert") or "").lower() not in ("yes", "1"):
            problems.append(
                "the replica does not verify the source's certificate (MASTER_SSL_VERIFY_SERVER_CERT=0)"
            )
        if tls["seen_by"] == "performance_schema" and not tls["encrypted"]:
            problems.append("the source sees the replica's connection in PLAINTEXT (no Ssl_cipher)")
        if not source.get("have_ssl"):
            problems.append(
                "the source has no TLS (have_ssl is not YES): ssl_cert/ssl_key missing in its my.cnf?"
            )
        if problems:
            message = "TLS is configured but: " + "; ".join(problems)
        elif tls["cipher"]:
            message = f"replication runs over TLS ({tls['version']} {tls['cipher']}, seen on the source)"
        else:
            message = (
                "replication is set to TLS with certificate verification (cipher not visible: "
                "performance_schema is off on the source or not readable by the admin user)"
            )
        checks.append(check("replication_tls", not problems, message))
    certificates = list(params.get("_certificates") or [])
    if certificates:
        _entries, expired, expiring = expiry_report(
            certificates, int(params.get("tls_expiry_warning_days") or 30), params.get("_now")
        )
        if expired:
            message = f"certificate(s) EXPIRED: {', '.join(expired)}"
        elif expiring:
            message = (
                f"certificate(s) expire within {params.get('tls_expiry_warning_days') or 30} days: "
                f"{', '.join(expiring)} (renew them)"
            )
        else:
            message = "no certificate expires soon"
        checks.append(check("tls_certificate_expiry", not expired, message))
    return checks


def certificates_to_check(source, params):
    """[{name, path, not_after}]: the source's server certificate (from its status) and local files."""
    certificates = []
    if source.get("ssl_server_not_after"):
        try:
            certificates.append(
                dict(name="source server certificate", path="",
                     not_after=parse_openssl_date(source["ssl_server_not_after"]))
            )
        except TLSError:
            pass
    for path in params.get("tls_certificates") or []:
        info = certificate_info(path)
        certificates.append(dict(name=path, path=path, not_after=info["not_after"]))
    return certificates


def _check_replication_user(params, grants):
    user, host = params["replication_user"], params.get("replication_host")
    if not grants:
        return check("replication_user", False, f"replication user '{user}' does not exist on the source")
    problems = []
    if "%" in grants:
        problems.append(f"'{user}'@'%' exists: bind the replication user to the backup host instead")
    if host and host not in grants:
        problems.append(f"no account '{user}'@'{host}' (found: {', '.join(sorted(grants))})")
    for account_host, lines in sorted(grants.items()):
        has_repl, extra = extra_privileges(lines)
        if not has_repl:
            problems.append(f"'{user}'@'{account_host}' lacks REPLICATION SLAVE ON *.*")
        if extra:
            problems.append(f"'{user}'@'{account_host}' has more than REPLICATION SLAVE: {', '.join(extra)}")
    return check(
        "replication_user",
        not problems,
        "; ".join(problems) if problems else f"'{user}'@'{host}' has REPLICATION SLAVE only",
    )


def reseed_needed(status, binary_logs):
    """(bool, reason): the replica was never seeded or needs a binlog the source no longer has."""
    if not status.get("configured"):
        return True, "the replica has no source configured (never seeded)"
    if int(status.get("last_io_errno") or 0) == ER_SOURCE_FATAL_READING_BINLOG:
        return True, f"the source cannot send the binlog the replica needs: {status.get('last_io_error')}"
    needed = status.get("source_log_file")
    if binary_logs is not None and needed and needed not in {b["name"] for b in binary_logs}:
        return True, f"binlog {needed} the replica needs is no longer on the source (purged): reseed required"
    return False, ""


# -- gathering -------------------------------------------------------------------------------
def source_facts(conn):
    version = query(conn, "SELECT VERSION() AS v")[0]["v"]
    dialect = Dialect.from_version_string(version)
    wanted = [
        "log_bin",
        "server_id",
        "binlog_format",
        "expire_logs_days",
        "binlog_expire_logs_seconds",
        "wsrep_on",
        "log_slave_updates",
        "log_replica_updates",
        "gtid_binlog_pos",
        "gtid_mode",
        "have_ssl",
        "performance_schema",
    ]
    values = variables(conn, wanted)
    try:
        logs = query(conn, "SHOW BINARY LOGS")
        binary_logs = [dict(name=r.get("Log_name"), size=int(r.get("File_size") or 0)) for r in logs]
    except Exception:  # noqa: BLE001 - privilege or log_bin off: reported as unknown
        binary_logs = None
    return dialect, dict(
        flavor=dialect.flavor,
        version=version,
        log_bin=_on(values.get("log_bin")),
        server_id=int(values.get("server_id") or 0),
        binlog_format=values.get("binlog_format") or "",
        binlog_retention_seconds=dialect.retention_seconds(values),
        retention_variable=dialect.retention_variable,
        galera=_on(values.get("wsrep_on")),
        log_slave_updates=_on(
            values.get(dialect.log_replica_updates_variable, values.get("log_slave_updates"))
        ),
        binary_logs=binary_logs,
        have_ssl=str(values.get("have_ssl") or "").upper() == "YES",
        performance_schema=_on(values.get("performance_schema")),
        gtid_binlog_pos=values.get("gtid_binlog_pos") or "",
        ssl_server_not_after=_status_value(conn, "Ssl_server_not_after"),
    )


def _status_value(conn, name):
    try:
        rows = query(conn, "SHOW GLOBAL STATUS LIKE %s", (name,))
    except Exception:  # noqa: BLE001 - reported as unknown
        return ""
    return str(list(rows[0].values())[1]) if rows else ""


# The replica's Binlog Dump thread on the source and its TLS status (performance_schema).
_DUMP_THREAD_TLS = (
    "SELECT t.PROCESSLIST_ID AS id, s.VARIABLE_NAME AS name, s.VARIABLE_VALUE AS value "
    "FROM performance_schema.threads t JOIN performance_schema.status_by_thread s USING (THREAD_ID) "
    "WHERE t.PROCESSLIST_USER = %s AND t.PROCESSLIST_COMMAND LIKE 'Binlog Dump%%' "
    "AND s.VARIABLE_NAME IN ('Ssl_cipher', 'Ssl_version')"
)


def replication_thread_tls(conn, user, enabled):
    """{cipher, version} of the replication user's Binlog Dump thread, or None when not visible."""
    if not enabled or not user:
        return None
    try:
        rows = query(conn, _DUMP_THREAD_TLS, (user,))
    except Exception:  # noqa: BLE001 - no privilege on performance_schema: unknown
        return None
    if not rows:
        return None
    values = {r["name"].lower(): str(r["value"] or "") for r in rows}
    return dict(cipher=values.get("ssl_cipher", ""), version=values.get("ssl_version", ""))


def replica_facts(conn):
    version = query(conn, "SELECT VERSION() AS v")[0]["v"]
    dialect = Dialect.from_version_string(version)
    values = variables(conn, ["server_id", "replicate_ignore_table"])
    return dialect, dict(
        flavor=dialect.flavor,
        version=version,
        server_id=int(values.get("server_id") or 0),
        replicate_ignore_table=parse_ignore_table_variable(values.get("replicate_ignore_table")),
        status=read_status(conn, dialect),
    )


# A quoted string literal as SHOW GRANTS prints it ('' or \' inside).
_LITERAL = r"'(?:[^'\\]|\\.|'')*'"
# After IDENTIFIED, every credential: BY PASSWORD '<hash>', BY '<password>', AS '<hash>' (MySQL
# WITH <plugin> AS), and USING '<auth string>' / USING PASSWORD('<password>') of EVERY method of a
# MariaDB "IDENTIFIED VIA a USING '...' OR b USING '...'" (10.4+).
_SECRET_RE = re.compile(
    rf"\b(BY\s+PASSWORD|BY|AS|USING(?:\s+PASSWORD\s*\()?)(\s*){_LITERAL}", re.I
)
_IDENTIFIED_RE = re.compile(r"\bIDENTIFIED\b", re.I)
_UNMASKED_RE = re.compile(r"\b(?:BY|AS|USING)\s+(?:PASSWORD\s*\(\s*)?'(?!\*{8}')", re.I)


def mask_grant(line):
    """SHOW GRANTS lines carry the password hashes: mask every one before it lands in facts and logs.

    Everything after IDENTIFIED is the account's authentication clause; every credential literal in
    it becomes '********' (the plugin names and the rest of the grant stay readable).
    """
    found = _IDENTIFIED_RE.search(line)
    if not found:
        return line
    head, tail = line[: found.start()], line[found.start():]
    masked = _SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}'********'", tail)
    if _UNMASKED_RE.search(masked):  # a literal the pattern could not read: hide the whole clause
        return head + "IDENTIFIED ********"
    return head + masked


def replication_grants(conn, user):
    """{host: [SHOW GRANTS lines, hashes masked]} for every account of the user."""
    hosts = [r["Host"] for r in query(conn, "SELECT Host FROM mysql.user WHERE User = %s", (user,))]
    grants = {}
    for host in hosts:
        rows = query(conn, "SHOW GRANTS FOR %s@%s", (user, host))
        grants[host] = [mask_grant(list(r.values())[0]) for r in rows]
    return grants


def non_transactional(conn, databases, ignore_tables):
    if not databases:
        return []
    ignored = {f"{d}.{t}" for d, t in ignore_tables}
    rows = query(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE "
        "TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (" + ",".join(["%s"] * len(databases)) + ")",
        list(databases),
    )
    return sorted(
        f"{r['TABLE_SCHEMA']}.{r['TABLE_NAME']}"
        for r in rows
        if f"{r['TABLE_SCHEMA']}.{r['TABLE_NAME']}" not in ignored
        and str(r.get("ENGINE") or "").lower() not in TRANSACTIONAL_ENGINES
    )


def replication_login_check(params, check_login=replication_login.check_login):
    """Check C(replication_login): the replication user logs in to the source (source_host/port, as the
    replica does, with the replication_ssl_* files) with replication_password. None when no
    replication_password is given or the check is skipped. A running IO thread keeps an old
    connection, so this is what finds a wrong stored password on a pair that still replicates."""
    skipped = "replication_login" in set(params.get("skip_checks") or [])
    if params.get("replication_password") in (None, "") or skipped:
        return None
    login = replication_login.login_params(
        params.get("source_host"), params.get("source_port"), params.get("replication_user"),
        params.get("replication_password"), params.get("replication_ssl_ca"),
        params.get("replication_ssl_cert"), params.get("replication_ssl_key"),
    )
    outcome = check_login(login)
    if outcome["ok"]:
        return check("replication_login", True,
                     f"the replication user logs in to the source as {outcome['account'] or login['user']}")
    return check("replication_login", False, replication_login.describe_failure(login, outcome))


def stored_password_check(replica_conn, params, check_login=replication_login.check_login):
    """Check C(replica_stored_password): the password the replica itself holds (master.info in its
    datadir) logs in to the source as the replication user. None unless params["replica_stored_password"]."""
    skipped = "replica_stored_password" in set(params.get("skip_checks") or [])
    if not params.get("replica_stored_password") or skipped:
        return None
    datadir = query(replica_conn, "SELECT @@datadir AS d")[0]["d"]
    path = os.path.join(datadir, "master.info")
    try:
        stored = replication_login.read_master_info(path)
    except FileNotFoundError:
        return check("replica_stored_password", False,
                     f"the replica holds no replication setup ({path} is absent)")
    except (OSError, ValueError) as exc:
        return check("replica_stored_password", False,
                     f"cannot read the password the replica holds from {path} ({exc}): run the check as root")
    login = replication_login.login_params(
        stored["host"], stored["port"], stored["user"], stored["password"], params.get("replication_ssl_ca"),
        params.get("replication_ssl_cert"), params.get("replication_ssl_key"),
    )
    outcome = check_login(login)
    if outcome["ok"]:
        return check("replica_stored_password", True, "the password the replica holds logs in to the source")
    return check("replica_stored_password", False,
                 "the password the REPLICA HOLDS is refused, its IO thread fails at its next reconnect: "
                 + replication_login.describe_failure(login, outcome))


def gather_facts(replica_conn, source_conn, params):
    try:
        ignore_tables = validate_ignore_tables(params.get("ignore_tables") or [])
    except SeedError as exc:
        raise HealthError(str(exc)) from exc
    try:
        _, source = source_facts(source_conn)
        source["replication_thread_tls"] = replication_thread_tls(
            source_conn, params.get("replication_user"), source["performance_schema"]
        )
        _, replica = replica_facts(replica_conn)
        grants = (
            replication_grants(source_conn, params["replication_user"])
            if params.get("replication_user")
            else None
        )
        non_tx = non_transactional(source_conn, params.get("databases") or [], ignore_tables)
    except Exception as exc:  # noqa: BLE001 - pymysql errors become one clear message
        raise HealthError(f"cannot gather replication facts: {exc}") from exc
    try:
        certificates = certificates_to_check(source, params)
    except TLSError as exc:
        raise HealthError(str(exc)) from exc
    now = datetime.datetime.now(datetime.timezone.utc)
    checks, reseed = evaluate(source, replica, dict(params, _certificates=certificates, _now=now), grants)
    try:
        stored_check = stored_password_check(replica_conn, params)
    except Exception as exc:  # noqa: BLE001 - pymysql errors become one clear message
        raise HealthError(f"cannot gather replication facts: {exc}") from exc
    for extra in (replication_login_check(params), stored_check):
        if extra is not None:
            checks.append(extra)
    problems = [c["message"] for c in checks if not c["ok"]]
    warn_days = int(params.get("tls_expiry_warning_days") or 30)
    entries, expired, expiring = expiry_report(certificates, warn_days, now)
    facts = dict(
        source=source,
        replica=replica,
        checks=checks,
        problems=problems,
        reseed_required=reseed,
        non_transactional_tables=non_tx,
        healthy=not problems,
        tls=dict(
            replication_tls(source, replica["status"]),
            required=bool(params.get("tls_required")),
            certificates=entries,
            expired=expired,
            expiring=expiring,
        ),
    )
    if grants is not None:
        facts["replication_user_grants"] = {
            f"'{params['replication_user']}'@'{h}'": g for h, g in grants.items()
        }
    if (params.get("mode") or "preflight") == "health":
        status = replica["status"]
        facts.update(
            io_running=status.get("io_running"),
            sql_running=status.get("sql_running"),
            seconds_behind=status.get("seconds_behind"),
            last_io_error=status.get("last_io_error"),
            last_sql_error=status.get("last_sql_error"),
        )
    return facts
