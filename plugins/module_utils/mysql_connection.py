"""Connections to MySQL/MariaDB servers, shared by the mysql_* modules.

Pure Python (no AnsibleModule import): the option dicts below are merged into each module's
argument_spec (documented once, in plugins/doc_fragments/mysql_connection.py), ``connect()`` opens a
pymysql connection from those options, ``connections()`` opens the servers a module needs and
closes them whatever happens, and ``client_defaults_file()`` writes the 0600 option file that hands
credentials to the command-line clients (mysqldump, mysql) without putting them on a command line.
"""

import configparser
import contextlib
import os
import tempfile

from ansible.module_utils.basic import missing_required_lib

try:
    import pymysql
    import pymysql.cursors

    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
    MYSQL_ERRORS = (pymysql.err.MySQLError,)
except ImportError as exc:  # pragma: no cover - reported by the module with missing_required_lib
    pymysql = None
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = exc
    MYSQL_ERRORS = ()


class MySQLConnectionError(Exception):
    """The server could not be reached or refused the login.

    ``where`` is user@host:port (or user@socket) of the server, ``error`` the driver's message; neither
    holds the password.
    """

    def __init__(self, message, where=None, error=None):
        super().__init__(message)
        self.where = where
        self.error = error if error is not None else message


def login_argument_spec():
    """Options of the server a module talks to (login_*), merged into each module's argument_spec."""
    return dict(
        login_host=dict(type="str", default="localhost"),
        login_port=dict(type="int", default=3306),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="str"),
        connect_timeout=dict(type="int", default=10),
        config_file=dict(type="path", default="~/.my.cnf"),
        ssl_ca=dict(type="path"),
        ssl_cert=dict(type="path"),
        ssl_key=dict(type="path"),
    )


def source_argument_spec():
    """An admin login on the replication source (source_*), for modules that run on the replica side."""
    return dict(
        source_host=dict(type="str"),
        source_port=dict(type="int", default=3306),
        source_user=dict(type="str"),
        source_password=dict(type="str", no_log=True),
        source_unix_socket=dict(type="str"),
    )


def connection_argument_spec(source=False, **options):
    """A module's argument_spec: the login_* options, with ``source=True`` the source_* admin login,
    then the module's own ``options`` (documented by the doc fragments mysql_connection and
    mysql_connection.source)."""
    spec = login_argument_spec()
    if source:
        spec.update(source_argument_spec())
    spec.update(options)
    return spec


def login_params(params, prefix="login"):
    """Extract one server's connection options from module params as a plain dict.

    prefix "login" reads login_host, login_port...; "source" reads source_host...; "target" reads
    target_host... Options that only exist for login_* (ssl, config file, timeout) are shared, except
    that a module offering ``<prefix>_ssl_ca``/``_ssl_cert``/``_ssl_key`` uses those for that server.
    """
    def ssl(key):
        own = params.get(f"{prefix}_ssl_{key}") if prefix != "login" else None
        return own if own else params.get(f"ssl_{key}")

    return dict(
        host=params.get(f"{prefix}_host"),
        port=params.get(f"{prefix}_port") or 3306,
        user=params.get(f"{prefix}_user"),
        password=params.get(f"{prefix}_password"),
        unix_socket=params.get(f"{prefix}_unix_socket"),
        connect_timeout=params.get("connect_timeout") or 10,
        config_file=params.get("config_file"),
        ssl_ca=ssl("ca"),
        ssl_cert=ssl("cert"),
        ssl_key=ssl("key"),
    )


def describe(conn_params):
    """Where a connection goes, for messages (never the password)."""
    where = conn_params.get("unix_socket") or f"{conn_params.get('host')}:{conn_params.get('port')}"
    return f"{conn_params.get('user') or '(default user)'}@{where}"


def read_client_credentials(config_file):
    """user/password from the [client] group of an option file (e.g. ~/.my.cnf), when it exists.

    Only credentials are taken: a socket or host in that file must not redirect a connection the
    task aimed elsewhere (pymysql's read_default_file would let a [client] socket win over login_host).
    """
    if not config_file:
        return {}
    path = os.path.expanduser(config_file)
    if not os.path.isfile(path):
        return {}
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False)
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    found = {}
    for key in ("user", "password"):
        if parser.has_option("client", key):
            value = parser.get("client", key)
            if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[key] = value
    return found


def credentials(conn_params):
    """{user, password} for a connection: the options, else config_file's [client] user/password
    (its password only for that same user). The module's connections and the client children
    (client_defaults_file) use the same ones."""
    defaults = read_client_credentials(conn_params.get("config_file"))
    found = {}
    if conn_params.get("user") or defaults.get("user"):
        found["user"] = conn_params.get("user") or defaults["user"]
    if conn_params.get("password") is not None:
        found["password"] = conn_params["password"]
    elif defaults.get("password") is not None and conn_params.get("user") in (None, "", defaults.get("user")):
        found["password"] = defaults["password"]
    return found


def connect(conn_params, database=None):
    """Open an autocommit pymysql connection returning dict rows; raise MySQLConnectionError."""
    if not HAS_PYMYSQL:
        raise MySQLConnectionError(f"pymysql is required: {PYMYSQL_IMPORT_ERROR}")
    kwargs = dict(
        connect_timeout=conn_params.get("connect_timeout") or 10,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor,
        charset="utf8mb4",
    )
    if conn_params.get("unix_socket"):
        kwargs["unix_socket"] = conn_params["unix_socket"]
    else:
        kwargs["host"] = conn_params.get("host") or "localhost"
        kwargs["port"] = int(conn_params.get("port") or 3306)
    kwargs.update(credentials(conn_params))
    if database:
        kwargs["database"] = database
    ssl = {k: conn_params[f"ssl_{k}"] for k in ("ca", "cert", "key") if conn_params.get(f"ssl_{k}")}
    if ssl:
        kwargs["ssl"] = ssl
    try:
        return pymysql.connect(**kwargs)
    except pymysql.err.MySQLError as exc:
        where = describe(conn_params)
        raise MySQLConnectionError(f"cannot connect to MySQL server {where}: {exc}", where, str(exc)) from exc


def _close_quietly(conn):
    """Close a connection; one already closed or whose server went away is not an error here."""
    if conn is None or not getattr(conn, "open", False):
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing must never hide the task's own result or error
        pass


@contextlib.contextmanager
def connections(module, failure=None, core_errors=(), **servers):
    """Open one connection per server, yield them as a tuple (in the order given), close them all.

    ``servers`` maps a name used in messages to the option prefix of that server, for example
    ``connections(module, "reading replication facts failed", (HealthError,), replica="login",
    source="source")`` yields ``(replica_conn, source_conn)``. ``module`` is the AnsibleModule (its
    ``params`` and ``fail_json`` are used).

    - Without PyMySQL the task fails with Ansible's missing_required_lib message, before anything.
    - A server that cannot be reached or refuses the login ends the task with one fail_json message
      naming it: "cannot connect to the source server repl@db1:3306 (source_* options): <error>"
      (never the password).
    - An exception of ``core_errors`` raised in the ``with`` body ends the task with its message (and
      its ``details`` dict, when it has one, as extra result keys).
    - With ``failure``, a MySQL error raised in the body ends the task with ``failure + ": " + error``.
    - Other exceptions (fail_json's SystemExit included) pass through.
    - Every connection opened is closed in all cases (normal end, fail_json, exception).
    """
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("pymysql"), exception=str(PYMYSQL_IMPORT_ERROR))
    opened = []
    try:
        for name, prefix in servers.items():
            try:
                opened.append(connect(login_params(module.params, prefix)))
            except MySQLConnectionError as exc:
                module.fail_json(  # exits; the finally below closes what was already open
                    msg=f"cannot connect to the {name} server {exc.where} ({prefix}_* options): {exc.error}"
                )
        try:
            yield tuple(opened)
        except core_errors as exc:
            module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
        except MYSQL_ERRORS as exc:
            if failure is None:
                raise
            module.fail_json(msg=f"{failure}: {exc}")
    finally:
        for conn in opened:
            _close_quietly(conn)


def query(conn, sql, args=None):
    """Run one statement, return all rows as dicts."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall() or [])


def processlist(conn, info_chars=300):
    """The server's sessions other than this one, as SHOW FULL PROCESSLIST lists them: dicts keyed ID,
    USER, HOST, DB, COMMAND, TIME, STATE, INFO (the statement cut to info_chars).

    SHOW FULL PROCESSLIST is read from the server's thread list as it is sent. A SELECT from
    information_schema.PROCESSLIST is first materialised in an internal temporary table, and a
    MariaDB 10.11.19 server of this project's test lab died on one (signal 11 in
    ha_maria::drop_table, freeing that table): the watchers here poll the list every half second.
    """
    own = query(conn, "SELECT CONNECTION_ID() AS id")
    own_id = (own[0]["id"] if isinstance(own[0], dict) else own[0][0]) if own else None
    with conn.cursor() as cur:
        cur.execute("SHOW FULL PROCESSLIST")
        rows = list(cur.fetchall() or [])
        cols = [str(c[0]).upper() for c in cur.description] if cur.description else []
    sessions = []
    for row in rows:
        values = row.values() if isinstance(row, dict) else row
        session = dict(zip(cols, values))
        if session.get("ID") == own_id:
            continue
        if isinstance(session.get("INFO"), bytes):
            session["INFO"] = session["INFO"].decode("utf-8", "replace")
        if session.get("INFO") is not None:
            session["INFO"] = str(session["INFO"])[:info_chars]
        sessions.append(session)
    return sessions


def variables(conn, names, table="GLOBAL_VARIABLES"):
    """SHOW GLOBAL VARIABLES for the given names: {name: value}; names the server lacks are absent.
    With table="GLOBAL_STATUS", the same for SHOW GLOBAL STATUS."""
    rows = query(
        conn,
        f"SELECT VARIABLE_NAME AS n, VARIABLE_VALUE AS v FROM information_schema.{table} "
        "WHERE VARIABLE_NAME IN (" + ",".join(["%s"] * len(names)) + ")",
        [n.upper() for n in names],
    )
    return {r["n"].lower(): r["v"] for r in rows}


def status(conn, names):
    """SHOW GLOBAL STATUS for the given names: {name: value}."""
    return variables(conn, names, table="GLOBAL_STATUS")


def _option_value(value):
    """Quote a value for a MySQL option file (double quotes; backslash escapes)."""
    text = str(value)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{text}"'


def client_defaults_file(conn_params, directory=None):
    """Write a 0600 option file with a [client] section for mysqldump/mysql; return its path.

    It must be passed as the FIRST argument: ``--defaults-file=<path>``, so it is the only option
    file the client reads (``--defaults-extra-file`` would let a ~/.my.cnf override host/socket).
    The caller removes it (try/finally). The password is in this file only, never on a command line.
    """
    fd, path = tempfile.mkstemp(prefix=".mysql-client-", suffix=".cnf", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        lines = ["[client]"]
        if conn_params.get("unix_socket"):
            lines.append(f"socket={_option_value(conn_params['unix_socket'])}")
            lines.append("protocol=socket")
        else:
            lines.append(f"host={_option_value(conn_params.get('host') or 'localhost')}")
            lines.append(f"port={int(conn_params.get('port') or 3306)}")
            lines.append("protocol=tcp")
        for key, value in credentials(conn_params).items():
            lines.append(f"{key}={_option_value(value)}")
        for key in ("ca", "cert", "key"):
            if conn_params.get(f"ssl_{key}"):
                lines.append(f"ssl-{key}={_option_value(conn_params[f'ssl_{key}'])}")
        # mysqldump has no connect-timeout option: only the mysql client's own group gets it.
        lines += ["[mysql]", f"connect-timeout={int(conn_params.get('connect_timeout') or 10)}"]
        os.write(fd, ("\n".join(lines) + "\n").encode())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return path
