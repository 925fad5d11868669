"""Table-by-table comparison of a source and its replica with CHECKSUM TABLE or a portable row hash.

``checksum_table`` (default) uses the server's CHECKSUM TABLE: fast, but its value depends on the
storage format, so it is only comparable between servers of the same flavour and version.
``row_hash`` computes, in SQL on each side, COUNT(*) and the BIT_XOR of a 64-bit MD5 prefix of every
row's values (the pt-table-checksum recipe): the same on MariaDB and MySQL of any version, order-free.

Before comparing, the replica is made to catch up with the source position read at the start
(MASTER_POS_WAIT / SOURCE_POS_WAIT, from the dialect table). A mismatching table is compared again
(fresh position, fresh wait) a few times, because writes may be in flight between the two reads.
"""

import time

from ansible.module_utils.mysql_connection import query
from ansible.module_utils.mysql_dialect import Dialect
from ansible.module_utils.mysql_seed import SeedError, validate_ignore_tables


class ChecksumError(Exception):
    """The comparison could not run (bad input, replica not catching up, query failure)."""


def quote_identifier(name):
    return "`" + str(name).replace("`", "``") + "`"


def source_position(conn, dialect):
    rows = query(conn, dialect.show_binlog_status)
    if not rows:
        raise ChecksumError("the source reports no binlog position (is log_bin on?)")
    return dict(file=rows[0]["File"], position=int(rows[0]["Position"]))


def wait_for_position(conn, dialect, position, timeout):
    """Block until the replica's SQL thread applied the source position; raise on timeout/not running."""
    rows = query(
        conn,
        f"SELECT {dialect.pos_wait_function}(%s, %s, %s) AS r",
        (position["file"], int(position["position"]), int(timeout)),
    )
    result = rows[0]["r"]
    if result is None:
        raise ChecksumError(
            "the replica's SQL thread is not running (or no source configured): cannot wait for "
            f"{position['file']}:{position['position']}"
        )
    if int(result) == -1:
        raise ChecksumError(
            f"the replica did not reach the source position {position['file']}:"
            f"{position['position']} within {timeout}s"
        )
    return int(result)


def table_checksums(conn, tables):
    """{db.table: checksum or None (missing)} via CHECKSUM TABLE, one statement per table."""
    out = {}
    for db, table in tables:
        rows = query(conn, f"CHECKSUM TABLE {quote_identifier(db)}.{quote_identifier(table)}")
        out[f"{db}.{table}"] = rows[0]["Checksum"] if rows else None
    return out


def row_hash_sql(db, table, columns):
    """COUNT(*) + BIT_XOR of MD5 over the row values (NULL-aware) for one table."""
    cols = [quote_identifier(c) for c in columns]
    nulls = "CONCAT(" + ", ".join(f"ISNULL({c})" for c in cols) + ")"
    row = "CONCAT_WS('#', " + ", ".join(cols + [nulls]) + ")"
    return (
        "SELECT COUNT(*) AS n, COALESCE(LOWER(CONV(BIT_XOR(CAST(CONV(SUBSTRING(MD5("
        + row
        + "), 1, 16), 16, 10) AS UNSIGNED)), 10, 16)), '0') AS h "
        + f"FROM {quote_identifier(db)}.{quote_identifier(table)}"
    )


def table_row_hashes(conn, tables):
    """{db.table: 'rows:hash' or None (missing)}; the column list is part of the value."""
    out = {}
    for db, table in tables:
        columns = [
            r["COLUMN_NAME"]
            for r in query(
                conn,
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (db, table),
            )
        ]
        if not columns:
            out[f"{db}.{table}"] = None
            continue
        row = query(conn, row_hash_sql(db, table, columns))[0]
        out[f"{db}.{table}"] = f"{row['n']}:{row['h']}:{','.join(columns)}"
    return out


def list_tables(conn, databases, ignore_tables):
    ignored = {(d, t) for d, t in ignore_tables}
    rows = query(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
        "AND TABLE_SCHEMA IN (" + ",".join(["%s"] * len(databases)) + ") "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME",
        list(databases),
    )
    return [
        (r["TABLE_SCHEMA"], r["TABLE_NAME"])
        for r in rows
        if (r["TABLE_SCHEMA"], r["TABLE_NAME"]) not in ignored
    ]


def compare_results(source_sums, replica_sums):
    """Pure comparison: (tables, mismatched, missing_on_replica)."""
    tables, mismatched, missing = [], [], []
    for name, src in source_sums.items():
        rep = replica_sums.get(name)
        match = rep is not None and src == rep
        tables.append(dict(table=name, source=src, replica=rep, match=match))
        if rep is None:
            missing.append(name)
        elif not match:
            mismatched.append(name)
    return tables, mismatched, missing


def compare_tables(replica_conn, source_conn, params, sleep=time.sleep):
    databases = list(params.get("databases") or [])
    if not databases:
        raise ChecksumError("databases must name at least one database")
    try:
        ignore_tables = validate_ignore_tables(params.get("ignore_tables") or [])
    except SeedError as exc:
        raise ChecksumError(str(exc)) from exc
    method = params.get("method") or "checksum_table"
    if method not in ("checksum_table", "row_hash"):
        raise ChecksumError(f"unknown method {method!r} (checksum_table or row_hash)")
    sums = table_checksums if method == "checksum_table" else table_row_hashes
    timeout = int(params.get("wait_timeout") or 120)
    retries = int(params.get("retries") if params.get("retries") is not None else 3)
    source_dialect = Dialect.from_version_string(query(source_conn, "SELECT VERSION() AS v")[0]["v"])
    replica_dialect = Dialect.from_version_string(query(replica_conn, "SELECT VERSION() AS v")[0]["v"])

    tables = list_tables(source_conn, databases, ignore_tables)
    start = source_position(source_conn, source_dialect)
    wait_for_position(replica_conn, replica_dialect, start, timeout)
    source_sums = sums(source_conn, tables)
    replica_sums = sums(replica_conn, tables)
    results, mismatched, missing = compare_results(source_sums, replica_sums)
    attempts = {name: 1 for name in source_sums}
    for _ in range(retries):
        if not mismatched:
            break
        sleep(0.5)
        retry = [tuple(name.split(".", 1)) for name in mismatched]
        # Source first, then its position, then wait: the replica has applied at least what was summed.
        source_again = sums(source_conn, retry)
        wait_for_position(
            replica_conn, replica_dialect, source_position(source_conn, source_dialect), timeout
        )
        replica_again = sums(replica_conn, retry)
        source_sums.update(source_again)
        replica_sums.update(replica_again)
        for name in source_again:
            attempts[name] += 1
        results, mismatched, missing = compare_results(source_sums, replica_sums)
    for entry in results:
        entry["attempts"] = attempts[entry["table"]]
    return dict(
        tables=results,
        compared=len(results),
        mismatched=mismatched,
        missing_on_replica=missing,
        source_position=start,
        method=method,
    )
