"""Prove the replication credentials work: log in to the source as the replication user.

The replica's IO thread logs in to the source as the replication user with the password the replica
holds. A wrong password shows only when that thread reconnects (``Connecting``, error 1045): a
running IO thread keeps its old connection. This logs in the same way, from the host the module runs
on (the backup host), to the same address, with the same TLS files, so a wrong password, an account
bound to another host, or a REQUIRE SSL/X509 the replica cannot meet is found before anything is
changed (CHANGE MASTER, a seed) and by the health check on a pair that still replicates.
"""

from ansible.module_utils.mysql_connection import MySQLConnectionError, connect, query


def login_params(host, port, user, password, ssl_ca=None, ssl_cert=None, ssl_key=None, connect_timeout=10):
    """Connection options of the replication user's login (no option file: only these credentials)."""
    return dict(
        host=host,
        port=int(port or 3306),
        user=user,
        password=password,
        unix_socket=None,
        connect_timeout=connect_timeout or 10,
        config_file=None,
        ssl_ca=ssl_ca or None,
        ssl_cert=ssl_cert or None,
        ssl_key=ssl_key or None,
    )


def check_login(conn_params, connector=connect):
    """{ok, account, error}: ok when the login succeeds; account is CURRENT_USER() (user@host the
    source matched); error the server's message otherwise (never the password)."""
    if not conn_params.get("user") or conn_params.get("password") in (None, ""):
        return dict(ok=False, account="", error="no replication user or password given")
    try:
        conn = connector(conn_params)
    except MySQLConnectionError as exc:
        return dict(ok=False, account="", error=exc.error)
    try:
        account = query(conn, "SELECT CURRENT_USER() AS a")[0]["a"]
    except Exception as exc:  # noqa: BLE001 - the login worked; report what failed after it
        return dict(ok=True, account="", error=str(exc))
    finally:
        conn.close()
    return dict(ok=True, account=account, error="")


def describe_failure(conn_params, outcome):
    """One sentence for a failed login (where, as whom, the server's error, what to check)."""
    return (
        f"the replication user '{conn_params.get('user')}' cannot log in to the source "
        f"{conn_params.get('host')}:{conn_params.get('port')} from this host with the stored password"
        f"{' over TLS' if conn_params.get('ssl_ca') else ''}: {outcome.get('error')} "
        "(is the password the one set on the source? is the account bound to this host's address?)"
    )


def read_master_info(path):
    """host, user, password and port the replica holds for its default connection (MariaDB's
    master.info in its datadir: line count, log file, position, host, user, password, port...).
    Raises OSError when unreadable, ValueError when it is not a master.info."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().split("\n")
    if len(lines) < 7 or not lines[0].strip().isdigit():
        raise ValueError(f"{path} is not a MariaDB master.info file")
    return dict(host=lines[3], user=lines[4], password=lines[5], port=int(lines[6] or 3306))
