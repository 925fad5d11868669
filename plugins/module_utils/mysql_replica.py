"""Declarative replica state: read SHOW SLAVE/REPLICA STATUS, plan the statements, apply, wait.

``plan()`` is pure (current normalised status + wanted settings -> statements and diff) so the rules
are unit-tested without a server; ``ensure_replica()`` runs it against a connection.

Idempotence rules:
- coordinates (source_log_file/pos) apply only when the replica has no source yet, or when source
  host, port or user changed; a replica already configured for the same source is never re-pointed;
- the password cannot be read back: sent on (re)configuration, or on every run with update_password=always;
- other settings (SSL, connect retry, GTID mode) are compared only when given, and changed without
  coordinates (the replica keeps its position);
- with source_use_gtid the replica starts from its GTID position instead of file/position
  (MariaDB MASTER_USE_GTID=slave_pos, MySQL SOURCE_AUTO_POSITION=1); source_gtid_pos (MariaDB) is
  written to gtid_slave_pos before START, under the same rule as coordinates (new source only).
"""

import re
import time

from ansible.module_utils import mysql_replication_login as replication_login
from ansible.module_utils.mysql_connection import query
from ansible.module_utils.mysql_dialect import MARIADB, STATUS_COLUMNS, Dialect, DialectError

MASK = "********"
# Settings compared with the status: wanted-param name -> (normalised status key, kind)
COMPARED = {
    "source_host": ("source_host", "str"),
    "source_port": ("source_port", "int"),
    "source_user": ("source_user", "str"),
    "source_ssl": ("ssl_allowed", "bool"),
    "source_ssl_ca": ("ssl_ca", "str"),
    "source_ssl_cert": ("ssl_cert", "str"),
    "source_ssl_key": ("ssl_key", "str"),
    "source_ssl_verify_server_cert": ("ssl_verify_server_cert", "bool"),
    "source_connect_retry": ("connect_retry", "int"),
    "source_use_gtid": ("gtid_start", "gtid"),
}
# A MariaDB GTID list: domain-server-sequence, comma separated ("" = empty position).
GTID_LIST_RE = re.compile(r"^\s*(?:\d+-\d+-\d+(?:\s*,\s*\d+-\d+-\d+)*)?\s*$")
IDENTITY = ("source_host", "source_port", "source_user")
# wanted-param name -> CHANGE option key in the dialect table
CHANGE_KEYS = {
    "source_host": "host",
    "source_port": "port",
    "source_user": "user",
    "source_password": "password",
    "source_log_file": "log_file",
    "source_log_pos": "log_pos",
    "source_ssl": "ssl",
    "source_ssl_ca": "ssl_ca",
    "source_ssl_cert": "ssl_cert",
    "source_ssl_key": "ssl_key",
    "source_ssl_verify_server_cert": "ssl_verify_server_cert",
    "source_connect_retry": "connect_retry",
}
INT_STATUS = (
    "source_port",
    "connect_retry",
    "read_source_log_pos",
    "exec_source_log_pos",
    "relay_log_pos",
    "relay_log_space",
    "seconds_behind",
    "last_io_errno",
    "last_sql_errno",
    "source_server_id",
)


class ReplicaError(Exception):
    """The replica could not be brought to the wanted state; ``details`` go into the failure result."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


# -- status ----------------------------------------------------------------------------------
def normalise_status(row):
    """SHOW SLAVE/REPLICA STATUS row (or None) -> dict with one set of names, whatever the dialect."""
    if not row:
        return dict(
            configured=False,
            io_running="No",
            sql_running="No",
            seconds_behind=None,
            source_host="",
            source_port=None,
            source_user="",
            source_log_file="",
            read_source_log_pos=None,
            exec_source_log_pos=None,
            relay_log_file="",
            relay_log_pos=None,
            relay_source_log_file="",
            last_io_errno=0,
            last_io_error="",
            last_sql_errno=0,
            last_sql_error="",
            using_gtid="",
            gtid_start=False,
        )
    status = {}
    for key, columns in STATUS_COLUMNS.items():
        for column in columns:
            if column in row:
                status[key] = row[column]
                break
    for key in INT_STATUS:
        value = status.get(key)
        if value in ("", None):
            status[key] = None if key != "last_io_errno" and key != "last_sql_errno" else 0
        else:
            try:
                status[key] = int(value)
            except (TypeError, ValueError):
                pass
    for key in (
        "last_io_error",
        "last_sql_error",
        "source_host",
        "source_user",
        "source_log_file",
        "relay_log_file",
        "relay_source_log_file",
        "using_gtid",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
    ):
        status[key] = "" if status.get(key) is None else str(status[key])
    status["configured"] = bool(status.get("source_host"))
    # Starts from its GTID position: MariaDB Using_Gtid=Slave_Pos, MySQL Auto_Position=1 -> True;
    # file/position -> False; MariaDB Current_Pos (GTID, but not what this module sets) differs from both.
    using = status["using_gtid"].lower()
    if using == "current_pos":
        status["gtid_start"] = "current_pos"
    else:
        status["gtid_start"] = using == "slave_pos" or str(status.get("auto_position") or "").strip() == "1"
    return status


def read_status(conn, dialect):
    rows = query(conn, dialect.show_replica_status)
    return normalise_status(rows[0] if rows else None)


def _as_bool(value):
    return str(value).strip().lower() in ("yes", "1", "true", "on")


def _current_value(status, key, kind):
    value = status.get(key)
    if kind == "gtid":
        return value if value == "current_pos" else bool(value)
    if kind == "bool":
        return _as_bool(value)
    if kind == "int":
        return None if value in (None, "") else int(value)
    return "" if value is None else str(value)


def settings_view(status):
    """The comparable settings of a status, for the diff."""
    if not status.get("configured"):
        return {}
    return {param: _current_value(status, key, kind) for param, (key, kind) in COMPARED.items()}


# -- plan ------------------------------------------------------------------------------------
def plan(status, wanted, dialect):
    """Decide what to issue. Returns dict(statements=[(sql_template, values)], before, after, ...).

    ``wanted`` holds the module params (source_*, state, update_password). Each statement is kept as
    (text with {placeholders}, values) and rendered with escaping by render().
    """
    state = wanted.get("state") or "running"
    configured = bool(status.get("configured"))
    running = status.get("io_running") in ("Yes", "Connecting") or status.get("sql_running") == "Yes"
    before = dict(settings_view(status), state=_state_of(status))
    steps = []
    result = dict(coordinates_applied=False, coordinates_ignored_reason="", gtid_position_applied=False)
    gtid_pos = wanted.get("source_gtid_pos")
    if gtid_pos is not None and not GTID_LIST_RE.match(str(gtid_pos)):
        raise ReplicaError(
            f"source_gtid_pos {gtid_pos!r} is not a MariaDB GTID list "
            "(domain-server-sequence, comma separated)"
        )
    use_gtid = bool(wanted.get("source_use_gtid"))
    if gtid_pos is not None and not use_gtid:
        raise ReplicaError("source_gtid_pos is only used with source_use_gtid=true")

    if state == "absent":
        if configured or running:
            if running:
                steps.append(("stop", None))
            steps.append(("reset_all", None))
        return dict(result, steps=steps, before=before, after={"state": "absent"})

    changes = {}
    identity_changed = not configured or any(_differs(status, p, wanted.get(p)) for p in IDENTITY)
    if identity_changed:
        for param in COMPARED:
            if wanted.get(param) is not None:
                changes[param] = wanted[param]
        if wanted.get("source_password") is None:
            raise ReplicaError(
                "source_password is required to (re)configure the replica's source "
                f"({'no source configured yet' if not configured else 'host/port/user changed'})"
            )
        changes["source_password"] = wanted["source_password"]
        if use_gtid:
            # The GTID position replaces file/position (the two cannot be given together).
            changes["source_use_gtid"] = True
            if gtid_pos is not None and dialect.sets_gtid_slave_pos:
                changes["gtid_slave_pos"] = str(gtid_pos).replace(" ", "")
                result["gtid_position_applied"] = True
            elif gtid_pos is not None:
                result["coordinates_ignored_reason"] = (
                    "MySQL takes the GTID position from the seed itself (SET @@GLOBAL.GTID_PURGED in the "
                    "dump): source_gtid_pos is not used"
                )
        elif wanted.get("source_log_file"):
            changes["source_log_file"] = wanted["source_log_file"]
            changes["source_log_pos"] = int(wanted["source_log_pos"])
            result["coordinates_applied"] = True
    else:
        for param in COMPARED:
            if param in IDENTITY or wanted.get(param) is None:
                continue
            if _differs(status, param, wanted[param]):
                changes[param] = wanted[param]
        if wanted.get("update_password") == "always" and wanted.get("source_password") is not None:
            changes["source_password"] = wanted["source_password"]
        if wanted.get("source_log_file") or gtid_pos is not None:
            result["coordinates_ignored_reason"] = (
                "the replica is already configured for this source (at "
                f"{status.get('relay_source_log_file') or status.get('source_log_file')}:"
                f"{status.get('exec_source_log_pos')}); coordinates only apply to a new source, "
                "use state=absent first to reseed"
            )

    if changes:
        if running:
            steps.append(("stop", None))
        if "gtid_slave_pos" in changes:
            steps.append(("gtid_slave_pos", changes.pop("gtid_slave_pos")))
        steps.append(("change", changes))
        if state == "running":
            steps.append(("start", None))
    elif state == "running" and not (
        status.get("io_running") in ("Yes", "Connecting") and status.get("sql_running") == "Yes"
    ):
        steps.append(("start", None))
    elif state == "stopped" and running:
        steps.append(("stop", None))

    after = dict(before)
    after.pop("state", None)
    if identity_changed:
        after = {p: _normal(p, wanted[p]) for p in COMPARED if wanted.get(p) is not None}
    else:
        after.update({p: _normal(p, v) for p, v in changes.items() if p in COMPARED})
    if result["coordinates_applied"]:
        after["source_log_file"] = changes["source_log_file"]
        after["source_log_pos"] = changes["source_log_pos"]
    if result["gtid_position_applied"]:
        after["gtid_slave_pos"] = str(gtid_pos).replace(" ", "")
    after["state"] = state
    return dict(result, steps=steps, before=before, after=after)


def _normal(param, value):
    kind = COMPARED[param][1]
    if kind in ("bool", "gtid"):
        return bool(value)
    if kind == "int":
        return int(value)
    return str(value)


def _differs(status, param, value):
    if value is None:
        return False
    key, kind = COMPARED[param]
    return _current_value(status, key, kind) != _normal(param, value)


def _state_of(status):
    if not status.get("configured"):
        return "absent"
    if status.get("io_running") in ("Yes", "Connecting") and status.get("sql_running") == "Yes":
        return "running"
    return "stopped"


# -- rendering -------------------------------------------------------------------------------
def render_change(changes, dialect, literal):
    """CHANGE MASTER TO / CHANGE REPLICATION SOURCE TO with escaped values.

    Returns (sql, masked_sql). ``literal`` is the connection's escaping function (pymysql
    connection.literal / escape): strings are quoted and escaped by it, numbers go through int().
    """
    parts, masked = [], []
    order = [
        "source_host",
        "source_port",
        "source_user",
        "source_password",
        "source_log_file",
        "source_log_pos",
        "source_ssl",
        "source_ssl_ca",
        "source_ssl_cert",
        "source_ssl_key",
        "source_ssl_verify_server_cert",
        "source_connect_retry",
    ]
    for param in order:
        if param not in changes:
            continue
        value = changes[param]
        name = dialect.change_option(CHANGE_KEYS[param])
        if param in ("source_port", "source_log_pos", "source_connect_retry"):
            text = str(int(value))
        elif param in ("source_ssl", "source_ssl_verify_server_cert"):
            text = "1" if value else "0"
        else:
            text = literal(str(value))
        parts.append(f"{name}={text}")
        masked.append(f"{name}={literal(MASK) if param == 'source_password' else text}")
    if "source_use_gtid" in changes:
        option = dialect.gtid_start_option(bool(changes["source_use_gtid"]))
        parts.append(option)
        masked.append(option)
    elif "source_log_file" in changes and dialect.flavor == MARIADB and dialect.supports_use_gtid_option:
        parts.append(f"{dialect.change_option('use_gtid')}=no")
        masked.append(f"{dialect.change_option('use_gtid')}=no")
    return f"{dialect.change_source} {', '.join(parts)}", f"{dialect.change_source} {', '.join(masked)}"


def render(steps, dialect, literal):
    """[(sql, masked_sql)] for the planned steps."""
    out = []
    for kind, changes in steps:
        if kind == "stop":
            out.append((dialect.stop_replica,) * 2)
        elif kind == "start":
            out.append((dialect.start_replica,) * 2)
        elif kind == "reset_all":
            out.append((dialect.reset_replica_all,) * 2)
        elif kind == "gtid_slave_pos":
            # Only while the replica threads are stopped (planned after STOP, before CHANGE/START).
            out.append((f"SET GLOBAL gtid_slave_pos = {literal(str(changes))}",) * 2)
        elif kind == "change":
            out.append(render_change(changes, dialect, literal))
    return out


# -- wait ------------------------------------------------------------------------------------
def wait_decision(status, max_lag):
    """'ok', 'wait', or ('error', message) for one status sample (pure)."""
    if status.get("last_io_error") and status.get("io_running") != "Yes":
        return ("error", f"replica IO thread error {status.get('last_io_errno')}: {status['last_io_error']}")
    if status.get("last_sql_error") and status.get("sql_running") != "Yes":
        return (
            "error",
            f"replica SQL thread error {status.get('last_sql_errno')}: {status['last_sql_error']}",
        )
    if status.get("io_running") == "Yes" and status.get("sql_running") == "Yes":
        lag = status.get("seconds_behind")
        if lag is not None and int(lag) <= int(max_lag):
            return "ok"
    return "wait"


def wait_for_replica(conn, dialect, max_lag, timeout, poll=0.5, clock=time.monotonic, sleep=time.sleep):
    deadline = clock() + timeout
    status = read_status(conn, dialect)
    while True:
        decision = wait_decision(status, max_lag)
        if decision == "ok":
            return status
        if isinstance(decision, tuple):
            raise ReplicaError(decision[1], status=status)
        if clock() >= deadline:
            raise ReplicaError(
                f"replica not caught up after {timeout}s: io_running={status.get('io_running')} "
                f"sql_running={status.get('sql_running')} seconds_behind={status.get('seconds_behind')} "
                f"last_io_error={status.get('last_io_error')!r}",
                status=status,
            )
        sleep(poll)
        status = read_status(conn, dialect)


# -- module entry ----------------------------------------------------------------------------
def _verify_source_login(params, status):
    """Log in to the source as source_user/source_password (with the source_ssl_* files) from this host;
    raise ReplicaError, before any statement ran, when the source refuses it."""
    login = replication_login.login_params(
        params.get("source_host"), params.get("source_port"), params.get("source_user"),
        params.get("source_password"), params.get("source_ssl_ca"), params.get("source_ssl_cert"),
        params.get("source_ssl_key"),
    )
    outcome = replication_login.check_login(login)
    if not outcome["ok"]:
        raise ReplicaError(
            replication_login.describe_failure(login, outcome) + "; the replica was not changed",
            status=status, source_login=outcome,
        )
    return outcome


def ensure_replica(conn, params, check_mode=False):
    version = query(conn, "SELECT VERSION() AS v")[0]["v"]
    dialect = Dialect.from_version_string(version, params.get("flavor") or "auto")
    status = read_status(conn, dialect)
    decided = plan(status, params, dialect)
    try:
        rendered = render(decided["steps"], dialect, conn.escape)
    except DialectError as exc:
        raise ReplicaError(str(exc)) from exc
    result = dict(
        changed=bool(rendered),
        statements=[masked for _, masked in rendered],
        diff=dict(before=decided["before"], after=decided["after"]),
        coordinates_applied=decided["coordinates_applied"] and bool(rendered),
        coordinates_ignored_reason=decided["coordinates_ignored_reason"],
        gtid_position_applied=decided["gtid_position_applied"] and bool(rendered),
        flavor=dialect.flavor,
        version=version,
        status=status,
    )
    if params.get("verify_source_login") and params.get("state", "running") != "absent":
        result["source_login"] = _verify_source_login(params, status)
    if check_mode:
        return result
    for sql, masked in rendered:
        try:
            query(conn, sql)
        except Exception as exc:  # pymysql errors: report which statement failed (masked)
            raise ReplicaError(
                f"'{masked}' failed: {exc}",
                statements=result["statements"],
                status=read_status(conn, dialect),
            ) from exc
    result["status"] = read_status(conn, dialect)
    if params.get("state", "running") == "running" and params.get("wait", True):
        try:
            result["status"] = wait_for_replica(
                conn, dialect, params.get("max_lag_seconds") or 30, params.get("wait_timeout") or 300
            )
        except ReplicaError as exc:
            exc.details.update(statements=result["statements"], changed=result["changed"])
            raise
    return result
