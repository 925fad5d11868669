"""Point-in-time restore from a btw mysqldump set (one database): the choice of the base, the
refusals, and the check of what mariadb-binlog --database would replay wrongly. Cores only; the
binlogs are written event by event (header level, as the archive's reader sees them)."""

import json
import struct

import pytest
from ansible.module_utils import binlog_archive as ba
from ansible.module_utils import btw_db, mysql_full_backups, mysql_pitr, mysql_pitr_btw

F = "mysql-bin.{:06d}".format
WRITE_ROWS = 23


def _event(ts, etype, body, pos):
    size = 19 + len(body) + 4
    return struct.pack("<IBIIIH", ts, etype, 1, size, pos + size, 0) + body + b"\0\0\0\0"


def _fde():
    return b"\x04\x00" + b"10.11.99".ljust(50, b"\0") + b"\0" * 4 + b"\x13" + b"\x00" * 10 + b"\x01"


def _query(text, db=""):
    return struct.pack("<IIBHH", 1, 0, len(db), 0, 0) + db.encode() + b"\0" + text.encode()


def _table_map(db, table):
    name = bytes([len(db)]) + db.encode() + b"\0" + bytes([len(table)]) + table.encode() + b"\0"
    return b"\x01" * 6 + b"\0\0" + name


def _gtid(seq, ddl=False):
    return ba.MARIADB_GTID_EVENT, struct.pack("<QIB", seq, 0, 1 if ddl else 0)


def _rows(*tables):
    """One statement's row events: its table maps together, then one rows event per table."""
    return [(ba.TABLE_MAP_EVENT, _table_map(*t.split("."))) for t in tables] + [
        (WRITE_ROWS, b"\0" * 8) for _t in tables
    ]


def _trx(seq, *statements):
    events = [_gtid(seq), (ba.QUERY_EVENT, _query("BEGIN"))]
    for statement in statements:
        events += statement
    return events + [(ba.XID_EVENT, struct.pack("<Q", seq))]


def _ddl(seq, text, db=""):
    return [_gtid(seq, ddl=True), (ba.QUERY_EVENT, _query(text, db))]


def write_archive(directory, transactions, start_time=1000):
    """One binlog file of the given transactions (lists of (type, body)), one second apart."""
    directory.mkdir(exist_ok=True)
    data = bytearray(ba.BINLOG_MAGIC)
    data += _event(start_time, ba.FORMAT_DESCRIPTION_EVENT, _fde(), len(data))
    for n, events in enumerate(transactions):
        for etype, body in events:
            data += _event(start_time + 1 + n, etype, body, len(data))
    (directory / F(1)).write_bytes(bytes(data))
    return str(directory)


def _chain(dest, name, stamps, meta=None):
    data = dest / name / "rdiff-backup-data"
    data.mkdir(parents=True)
    for stamp in stamps:
        (data / f"session_statistics.{stamp}.data").write_text("")
    (data / f"current_mirror.{stamps[-1]}.data").write_text("")
    if meta is not None:
        (dest / name / "shop.meta.json").write_text(json.dumps(meta))


def btw_set(tmp_path, name, database, position, stamp="2026-12-01T02:00:00Z", ledger_database=True):
    """A btw set's destination with one stored dump of `database` at mysql-bin.000001:position."""
    dest = tmp_path / name
    chain = "chain-" + stamp.replace("-", "").replace(":", "")
    coordinates = {"binlog_file": F(1), "binlog_position": position, "gtid": "0-1-1"}
    _chain(dest, chain, [stamp], meta={"type": "mysqldump", "database": database, "coordinates": coordinates})
    entry = dict(coordinates, chain=chain, session=int(btw_db.parse_at(stamp)), dump="shop.sql")
    if ledger_database:
        entry["database"] = database
    (dest / btw_db.COORDINATES_FILE).write_text(json.dumps({"dumps": [entry]}))
    return {"kind": "btw", "path": str(dest)}


def full_dump(tmp_path, position, name="all.sql"):
    path = tmp_path / name
    path.write_text(f"-- CHANGE MASTER TO MASTER_LOG_FILE='{F(1)}', MASTER_LOG_POS={position};\n"
                    "CREATE TABLE t (id INT);\n-- SET GLOBAL gtid_slave_pos='0-1-1';\n")
    return {"kind": "dump", "path": str(path)}


def _starts(directory):
    return [t["start"] for t in mysql_pitr.ArchiveIndex(directory).trx]


# -- choosing the base ------------------------------------------------------------------------------


def _b(kind, database=None, pos=4):
    return dict(kind=kind, name=f"{kind}-{database}-{pos}", database=database, restorable=True,
                binlog_file=F(1), binlog_position=pos)


def test_a_named_database_adds_its_btw_dumps_to_the_full_backups():
    listed = [_b("lvm", pos=4), _b("btw", "shop", 10), _b("btw", "crm", 20), _b("dump", pos=30)]
    backups, database = mysql_pitr_btw.choose_backups(listed, "shop")
    assert [b["name"] for b in backups] == ["lvm-None-4", "btw-shop-10", "dump-None-30"]
    assert database == "shop"
    # no database named: the full backups only, as before; btw dumps count for retention only
    assert mysql_pitr_btw.choose_backups(listed) == ([listed[0], listed[3]], None)


def test_btw_dumps_alone_are_a_base_when_they_hold_one_database():
    shop = [_b("btw", "shop", 10), _b("btw", "shop", 20)]
    assert mysql_pitr_btw.choose_backups(shop) == (shop, "shop")
    several = r"several databases \(crm, shop\), each holding one: name the database"
    with pytest.raises(mysql_pitr_btw.PitrBtwError, match=several):
        mysql_pitr_btw.choose_backups(shop + [_b("btw", "crm", 30)])
    # a dump whose database is not known (no ledger entry, no meta.json) is no base
    unknown = [dict(_b("btw", None, 10), restorable=False)]
    assert mysql_pitr_btw.choose_backups(unknown) == ([], None)


def test_a_database_no_btw_dump_holds_is_refused_naming_what_is_held():
    listed = [_b("lvm"), _b("btw", "shop", 10)]
    with pytest.raises(mysql_pitr_btw.PitrBtwError, match=r"database crm: no btw mysqldump .* hold: shop"):
        mysql_pitr_btw.choose_backups(listed, "crm")
    note = "none: the server has no binary log (log_bin is OFF)"
    bare = [{"path": "/b/crm/chain-1", "database": "crm", "note": note}]
    with pytest.raises(mysql_pitr_btw.PitrBtwError, match="record no binlog coordinates .*log_bin is OFF"):
        mysql_pitr_btw.choose_backups(listed, "crm", bare)
    for bad in ("shop; DROP", "../x", "`a`", ""):
        with pytest.raises(mysql_pitr_btw.PitrBtwError, match="plain database name"):
            mysql_pitr_btw.check_database_name(bad)


def test_the_catalog_reads_the_database_from_the_ledger_or_the_chains_meta(tmp_path):
    new = btw_set(tmp_path, "new", "shop", 100)
    old = btw_set(tmp_path, "old", "crm", 200, ledger_database=False)  # a ledger entry written before
    found = mysql_full_backups.list_backups([new, old])
    assert [(b["database"], b["restorable"], b["dump"]) for b in found] == [
        ("shop", True, "shop.sql"), ("crm", True, "shop.sql")]
    assert found[0]["destination"] == new["path"]
    # a set whose dumps record no coordinates (the server had no binary log) is named as such
    bare = tmp_path / "bare"
    _chain(bare, "chain-20261201T020000Z", ["2026-12-01T02:00:00Z"],
           meta={"type": "mysqldump", "database": "logs", "coordinates": None,
                 "coordinates_note": "none: the server has no binary log (log_bin is OFF)"})
    assert mysql_full_backups.btw_dumps_without_coordinates([{"kind": "btw", "path": str(bare)}, new]) == [
        {"path": str(bare / "chain-20261201T020000Z"), "database": "logs",
         "note": "none: the server has no binary log (log_bin is OFF)"}]


# -- the plan -----------------------------------------------------------------------------------------


def shop_archive(tmp_path, extra=()):
    """shop and crm written one after the other, then `extra` transactions."""
    return write_archive(tmp_path / "archive", [
        _trx(1, _rows("shop.orders")),
        _trx(2, _rows("crm.people")),
        _trx(3, _rows("shop.orders"), _rows("crm.people")),  # two statements in one transaction
        _ddl(4, "CREATE TABLE notes (id INT)", db="shop"),
        _ddl(5, "CREATE TABLE crm.tags (id INT)", db=""),
        _trx(6, _rows("shop.orders")),
        *extra,
    ])


def test_plan_from_a_btw_dump_filters_the_replay_to_its_database(tmp_path):
    archive = shop_archive(tmp_path)
    starts = _starts(archive)
    older_dump = full_dump(tmp_path, 4)
    shop = btw_set(tmp_path, "shop", "shop", starts[1])  # dumped after trx 1
    p = mysql_pitr.plan(archive, [older_dump, shop], mysql_pitr.parse_target(latest=True), database="shop")
    assert p["backup"]["kind"] == "btw" and p["database"] == "shop"
    assert p["transactions"] == 5 and p["first_applied"]["gtid"] == "0-1-2"
    facts = mysql_pitr.summary(p)
    assert facts["database"] == "shop" and facts["backup"]["database"] == "shop"
    assert facts["restores"].startswith("database shop only") and "not restored" in facts["restores"]
    argv = []

    class Stop(Exception):
        pass

    def fake_pipe(producer, consumer, what, stdin_path=None):
        argv.append(producer)
        raise Stop

    original = mysql_pitr._run_pipe
    mysql_pitr._run_pipe = fake_pipe
    try:
        with pytest.raises(Stop):
            mysql_pitr.replay(p, str(tmp_path / "client.cnf"), binlog_binary="mariadb-binlog")
    finally:
        mysql_pitr._run_pipe = original
    assert argv[0][:3] == ["mariadb-binlog", "--no-defaults", "--database=shop"]
    # in place from a btw base: refused before anything, also in check mode (the module calls it)
    with pytest.raises(mysql_pitr.PitrError, match="restored into a scratch instance only"):
        mysql_pitr.check_destination(p, in_place=True)
    mysql_pitr.check_destination(p, in_place=False)
    # without a database the full dump is the base, every database replayed, no filter
    whole = mysql_pitr.plan(archive, [older_dump, shop], mysql_pitr.parse_target(latest=True))
    assert whole["backup"]["kind"] == "dump" and whole["database"] is None
    assert mysql_pitr.summary(whole)["restores"] == "every database of the backup"


def test_a_newer_full_backup_wins_over_an_older_btw_dump_and_restores_everything(tmp_path):
    archive = shop_archive(tmp_path)
    starts = _starts(archive)
    shop = btw_set(tmp_path, "shop", "shop", starts[1])
    newer = full_dump(tmp_path, starts[3])
    p = mysql_pitr.plan(archive, [shop, newer], mysql_pitr.parse_target(latest=True), database="shop")
    assert p["backup"]["kind"] == "dump" and p["database"] is None and p["transactions"] == 3


def test_a_target_before_the_btw_dump_uses_an_older_full_backup_or_is_refused(tmp_path):
    archive = shop_archive(tmp_path)
    starts = _starts(archive)
    shop = btw_set(tmp_path, "shop", "shop", starts[3])
    p = mysql_pitr.plan(archive, [full_dump(tmp_path, 4), shop], mysql_pitr.parse_target(gtid="0-1-3"),
                        database="shop")
    assert p["backup"]["kind"] == "dump" and p["transactions"] == 2
    with pytest.raises(mysql_pitr.PitrError, match="before the oldest full backup"):
        mysql_pitr.plan(archive, [shop], mysql_pitr.parse_target(gtid="0-1-3"), database="shop")


@pytest.mark.parametrize(
    "events, problem",
    [
        (_ddl(7, "DROP TABLE shop.orders", db=""), "run with no default database would be left out"),
        (_ddl(7, "ALTER TABLE `shop`.`orders` ADD c INT", db="crm"), "run with default database crm"),
        (_trx(7, _rows("shop.orders", "crm.people")), "one statement changed tables of shop and of crm"),
        (_trx(7, _rows("crm.people", "shop.orders")), "cannot be split by database"),
    ],
)
def test_transactions_the_database_filter_replays_wrongly_are_refused_in_the_plan(tmp_path, events, problem):
    archive = shop_archive(tmp_path, extra=[events, _trx(8, _rows("shop.orders"))])
    starts = _starts(archive)
    shop = btw_set(tmp_path, "shop", "shop", starts[1])
    with pytest.raises(mysql_pitr.PitrError, match=problem) as err:
        mysql_pitr.plan(archive, [shop], mysql_pitr.parse_target(latest=True), database="shop")
    assert "GTID 0-1-7" in str(err.value) and "Nothing was changed" in str(err.value)
    assert "the archive covers" in str(err.value)
    # up to just before it, or skipping it, the replay is exact
    assert mysql_pitr.plan(archive, [shop], mysql_pitr.parse_target(gtid="0-1-7"))["transactions"] == 5
    skipped = mysql_pitr.plan(archive, [shop], mysql_pitr.parse_target(latest=True),
                              mysql_pitr.parse_skip(gtid="0-1-7"))
    assert skipped["transactions"] == 6 and skipped["database"] == "shop"


def test_statements_of_other_databases_and_names_that_only_look_alike_are_no_problem(tmp_path):
    archive = shop_archive(tmp_path, extra=[
        _ddl(7, "CREATE TABLE crm.t (shop INT)", db=""),  # a column named like the database
        _ddl(8, "CREATE TABLE myshop.t (id INT)", db=""),
        _ddl(9, "DROP TABLE t", db="crm"),
        _trx(10, _rows("crm.a", "crm.b")),
    ])
    index = mysql_pitr.ArchiveIndex(archive)
    assert mysql_pitr_btw.filter_problems(index, range(len(index.trx)), "shop") == []
