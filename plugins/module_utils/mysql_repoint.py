"""Re-point a replica to another source by GTID, without a re-seed: is it safe, and do it.

MariaDB GTIDs are ``domain-server-seqno``. A replica that starts with MASTER_USE_GTID=slave_pos asks
its new source for everything after its ``gtid_slave_pos`` (one GTID per domain). That only works,
and only loses nothing, when the new source holds every transaction the replica has applied: for
every domain of the replica's position, the new source has logged that domain, and has logged the
replica's last GTID itself (same server id, seqno at least as high: ``gtid_binlog_state`` keeps the
last seqno per domain and server). The new source must also still have the binlogs after that
position (not purged: the ``Gtid_list`` at the start of its oldest binlog).

``check_mariadb()`` and ``check_mysql()`` are pure: positions in, a decision out (ok, the reasons
when not). ``repoint()`` reads the two servers, decides, and re-points through mysql_replica's
``ensure_replica`` (STOP, CHANGE MASTER ... MASTER_USE_GTID=slave_pos, START, wait). The replica is
stopped only for the final decision on its settled position, and started again when that refuses.

MySQL: the new source must hold the replica's gtid_executed (GTID_SUBSET on the new source) and
must not have purged what the replica lacks (GTID_SUBSET(gtid_purged, replica's set)); the start
is SOURCE_AUTO_POSITION=1.
"""

import re

from ansible.module_utils.mysql_connection import query, variables
from ansible.module_utils.mysql_dialect import MARIADB, Dialect
from ansible.module_utils.mysql_replica import ReplicaError, ensure_replica, read_status

GTID_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


class RepointError(Exception):
    """The re-point is refused (new source lacks transactions, bad input) or failed; ``details``
    go into the failure result."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


# -- MariaDB GTID lists ----------------------------------------------------------------------
def parse_gtid_list(text, what="GTID list"):
    """'0-1-100,1-2-7' -> [(0, 1, 100), (1, 2, 7)]; '' or None -> []. Raises RepointError when malformed."""
    out = []
    for item in str(text or "").replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        match = GTID_RE.match(item)
        if not match:
            raise RepointError(
                f"{what} {text!r} is not a MariaDB GTID list (domain-server-seqno, comma separated)"
            )
        out.append(tuple(int(g) for g in match.groups()))
    return out


def by_domain(gtids):
    """[(d, s, n)] -> {d: (s, n)}: a position (one GTID per domain; the highest seqno wins)."""
    out = {}
    for domain, server, seqno in gtids:
        if domain not in out or seqno > out[domain][1]:
            out[domain] = (server, seqno)
    return out


def by_domain_server(gtids):
    """[(d, s, n)] -> {(d, s): n}: a binlog state (last seqno of each server in each domain)."""
    out = {}
    for domain, server, seqno in gtids:
        out[(domain, server)] = max(seqno, out.get((domain, server), -1))
    return out


def fmt(domain, server, seqno):
    return f"{domain}-{server}-{seqno}"


def check_mariadb(replica_slave_pos, source_binlog_pos, source_binlog_state=None, source_purged=None,
                  replica_current_pos=None):
    """Decide whether the new source holds every transaction the replica has applied (pure).

    All arguments are MariaDB GTID list strings: the replica's gtid_slave_pos (and gtid_current_pos,
    for a note about its own local transactions), the new source's gtid_binlog_pos and
    gtid_binlog_state (the state is per domain and server; when not given, the position stands in
    for it), and the Gtid_list of its oldest binlog (what it has purged).

    Returns dict(ok, missing=[...messages], purged=[...], ahead=[...], local=[...], behind={domain: n}).
    """
    replica = by_domain(parse_gtid_list(replica_slave_pos, "the replica's gtid_slave_pos"))
    src_pos = by_domain(parse_gtid_list(source_binlog_pos, "the new source's gtid_binlog_pos"))
    state_list = parse_gtid_list(source_binlog_state, "the new source's gtid_binlog_state")
    state = by_domain_server(state_list or [(d, s, n) for d, (s, n) in src_pos.items()])
    src_domains = {d for d, _ in state} | set(src_pos)
    purged = by_domain_server(parse_gtid_list(source_purged, "the new source's purged Gtid_list"))
    result = dict(ok=True, missing=[], purged=[], local=[], behind={}, reasons=[])

    if not replica:
        result["missing"].append(
            "the replica has no GTID position (gtid_slave_pos is empty): it cannot be proven that the new "
            "source holds what the replica has applied"
        )
    for domain in sorted(replica):
        server, seqno = replica[domain]
        gtid = fmt(domain, server, seqno)
        if domain not in src_domains:
            result["missing"].append(
                f"domain {domain}: the replica has applied up to {gtid}, the new source has no "
                f"transaction of domain {domain} in its binlog"
            )
            continue
        have = state.get((domain, server))
        if have is None:
            others = ", ".join(fmt(d, s, n) for (d, s), n in sorted(state.items()) if d == domain)
            result["missing"].append(
                f"domain {domain}: the replica has applied up to {gtid}, the new source has no "
                f"transaction of server {server} in domain {domain} (it has {others})"
            )
            continue
        if have < seqno:
            result["missing"].append(
                f"domain {domain}: the replica has applied up to {gtid}, the new source only up to "
                f"{fmt(domain, server, have)} ({seqno - have} transaction(s) of server {server} missing)"
            )
            continue
        newest = src_pos.get(domain, (server, have))[1]
        result["behind"][domain] = max(0, newest - seqno)
        for (pdomain, pserver), pseqno in purged.items():
            # purged up to pseqno: the replica must already have it (same server, seqno at least as high)
            if pdomain == domain and pserver == server and pseqno > seqno:
                result["purged"].append(
                    f"domain {domain}: the new source has purged its binlogs up to "
                    f"{fmt(domain, server, pseqno)}, past the replica's {gtid}: the transactions "
                    "between are no longer available"
                )
    for domain, server, seqno in parse_gtid_list(replica_current_pos, "the replica's gtid_current_pos"):
        if replica.get(domain) != (server, seqno):
            result["local"].append(fmt(domain, server, seqno))
    result["reasons"] = result["missing"] + result["purged"]
    result["ok"] = not result["reasons"]
    return result


# -- MySQL -----------------------------------------------------------------------------------
def check_mysql(replica_executed, source_has_all, missing_set, source_purged_ok, purged_set=""):
    """The MySQL decision from GTID_SUBSET results computed on the new source (pure)."""
    reasons = []
    if not str(replica_executed or "").strip():
        reasons.append("the replica's gtid_executed is empty: it cannot be proven that the new source holds "
                       "what the replica has applied")
    elif not source_has_all:
        reasons.append(f"the new source lacks transactions the replica has applied: {missing_set}")
    if not source_purged_ok:
        reasons.append(f"the new source has purged transactions the replica has not applied: {purged_set}")
    return dict(ok=not reasons, missing=reasons[:1] if not source_has_all else [], reasons=reasons)


def refusal_message(source, reasons):
    return (
        f"re-point to {source} refused, nothing was changed: the new source does not hold every transaction "
        f"the replica has applied ({'; '.join(reasons)}). Re-seed the replica from the new source instead."
    )


# -- reading the servers ---------------------------------------------------------------------
def oldest_binlog_gtid_list(conn):
    """The Gtid_list event of the source's oldest binlog (what it has purged), '' when none."""
    logs = query(conn, "SHOW BINARY LOGS")
    if not logs:
        return ""
    first = logs[0].get("Log_name")
    for row in query(conn, "SHOW BINLOG EVENTS IN %s LIMIT 4", (first,)):
        if row.get("Event_type") == "Gtid_list":
            return str(row.get("Info") or "").strip("[] ")
    return ""


def read_positions(replica_conn, source_conn, dialect):
    """The GTID positions the decision needs, as strings."""
    if dialect.flavor == MARIADB:
        rep = variables(replica_conn, ["gtid_slave_pos", "gtid_current_pos", "server_id"])
        src = variables(source_conn, ["gtid_binlog_pos", "gtid_binlog_state", "log_bin", "server_id"])
        binlog_on = str(src.get("log_bin")).upper() == "ON"
        src["purged"] = oldest_binlog_gtid_list(source_conn) if binlog_on else ""
        return rep, src
    rep = variables(replica_conn, ["gtid_executed", "server_id", "server_uuid"])
    src = variables(source_conn, ["gtid_executed", "gtid_purged", "log_bin", "server_id", "server_uuid"])
    return rep, src


def decide(replica_conn, source_conn, dialect):
    rep, src = read_positions(replica_conn, source_conn, dialect)
    if str(src.get("log_bin", "")).upper() not in ("ON", "1"):
        return dict(ok=False, reasons=["the new source has no binary log (log_bin is OFF)"], missing=[],
                    replica=rep, source=src)
    if str(rep.get("server_id")) == str(src.get("server_id")):
        same_id = f"the new source has the replica's own server_id {rep.get('server_id')}"
        return dict(ok=False, reasons=[same_id], missing=[], replica=rep, source=src)
    if dialect.flavor == MARIADB:
        decided = check_mariadb(rep.get("gtid_slave_pos"), src.get("gtid_binlog_pos"),
                                src.get("gtid_binlog_state"), src.get("purged"), rep.get("gtid_current_pos"))
    else:
        executed = rep.get("gtid_executed") or ""
        row = query(
            source_conn,
            "SELECT GTID_SUBSET(%s, @@GLOBAL.gtid_executed) AS has_all, "
            "GTID_SUBTRACT(%s, @@GLOBAL.gtid_executed) AS missing, "
            "GTID_SUBSET(@@GLOBAL.gtid_purged, %s) AS purged_ok, "
            "GTID_SUBTRACT(@@GLOBAL.gtid_purged, %s) AS purged",
            (executed, executed, executed, executed),
        )[0]
        decided = check_mysql(executed, int(row["has_all"]) == 1, row["missing"], int(row["purged_ok"]) == 1,
                              row["purged"])
    decided.update(replica=rep, source=src)
    return decided


# -- the re-point ----------------------------------------------------------------------------
def replica_settings(params):
    """The module's options -> mysql_replica's wanted settings for the new source.

    source_* in the module are the admin login to the new source; replication_* are what the replica
    uses (host and port default to the admin login's).
    """
    wanted = dict(
        source_host=params.get("replication_host") or params.get("source_host"),
        source_port=params.get("replication_port") or params.get("source_port") or 3306,
        source_user=params.get("replication_user"),
        source_password=params.get("replication_password"),
        state="running",
        update_password="on_create",
        wait=True,
        max_lag_seconds=params.get("max_lag_seconds") or 30,
        wait_timeout=params.get("wait_timeout") or 300,
        flavor=params.get("flavor") or "auto",
    )
    for key in ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_server_cert"):
        if params.get(f"replication_{key}") is not None:
            wanted[f"source_{key}"] = params[f"replication_{key}"]
    return wanted


def target_of(params):
    return f"{params['source_host']}:{params.get('source_port') or 3306}"


def repoint(replica_conn, source_conn, params, check_mode=False):
    """Move the replica to the new source by GTID, after checking the new source holds what it applied.

    ``params`` are mysql_replica's wanted settings for the new source (source_host/port/user/password as
    the replica reaches it, SSL, wait...). source_use_gtid is forced on and no position is given: the
    replica keeps its own gtid_slave_pos.
    """
    version = query(replica_conn, "SELECT VERSION() AS v")[0]["v"]
    dialect = Dialect.from_version_string(version, params.get("flavor") or "auto")
    wanted = dict(params, source_use_gtid=True, source_gtid_pos=None, source_log_file=None,
                  source_log_pos=None)
    if not wanted.get("source_host") or not wanted.get("source_user"):
        raise RepointError(
            "source_host and source_user (the new source, as the replica reaches it) are required"
        )
    if wanted.get("source_password") is None:
        raise RepointError("source_password (the replication user's password) is required to re-point")
    status = read_status(replica_conn, dialect)
    if not status["configured"]:
        raise RepointError(
            "the replica has no source configured: there is nothing to re-point (seed it instead)"
        )
    target = target_of(wanted)
    previous = f"{status['source_host']}:{status['source_port']}"
    same = (status["source_host"], status["source_port"], status["source_user"]) == (
        wanted["source_host"], int(wanted.get("source_port") or 3306), wanted["source_user"])
    result = dict(changed=False, previous_source=previous, source=target, already_pointing=same,
                  flavor=dialect.flavor, version=version, statements=[])
    if same and status["gtid_start"] is True:
        done = ensure_replica(replica_conn, wanted, check_mode=check_mode)
        result.update(done, previous_source=previous, source=target, already_pointing=True, check={})
        return result

    decided = decide(replica_conn, source_conn, dialect)
    result["check"] = decided
    if not decided["ok"]:
        raise RepointError(refusal_message(target, decided["reasons"]), check=decided, **_short(result))
    if check_mode:
        planned = ensure_replica(replica_conn, wanted, check_mode=True)
        result.update(planned, previous_source=previous, source=target, already_pointing=False, check=decided)
        return result

    # Settle the replica's position (threads stopped), then decide again on that position.
    was_running = status["io_running"] in ("Yes", "Connecting") or status["sql_running"] == "Yes"
    stopped = False
    try:
        if was_running:
            query(replica_conn, dialect.stop_replica)
            stopped = True
        decided = decide(replica_conn, source_conn, dialect)
        result["check"] = decided
        if not decided["ok"]:
            raise RepointError(refusal_message(target, decided["reasons"]), check=decided, **_short(result))
        done = ensure_replica(replica_conn, wanted)
    except BaseException as exc:
        if stopped:
            _restart_if_not_repointed(replica_conn, dialect, status)
        if isinstance(exc, ReplicaError):
            raise RepointError(f"re-point to {target} failed: {exc}", check=decided, **exc.details) from exc
        raise
    statements = ([dialect.stop_replica] if stopped else []) + done["statements"]
    result.update(done, changed=True, statements=statements, previous_source=previous, source=target,
                  already_pointing=False, check=decided)
    return result


def _restart_if_not_repointed(conn, dialect, before):
    """After a failure between our STOP and the CHANGE: start the replica again on its old source."""
    try:
        now = read_status(conn, dialect)
        if (now["source_host"], now["source_port"]) == (before["source_host"], before["source_port"]):
            query(conn, dialect.start_replica)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def _short(result):
    return {k: result[k] for k in ("previous_source", "source", "flavor")}
