"""btw mysqldump sets: the binlog coordinates they record and the catalog that lists them for the
binlog archive (issue 16); the dumps' shrink-guard figures (issue 14). Cores only."""

import json
import os

import pytest
from ansible.module_utils import btw_db, mysql_full_backups, mysql_pitr


@pytest.mark.parametrize(
    "version, options",
    [
        ("mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)",
         ["--master-data=2", "--gtid"]),
        ("mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)", ["--master-data=2", "--gtid"]),
        ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", ["--source-data=2"]),
        ("mysqldump  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)", ["--source-data=2"]),
        ("mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)", ["--master-data=2"]),
    ],
)
def test_coordinate_options_follow_the_dump_client(version, options):
    assert btw_db.coordinate_options(version) == options


def test_an_unreadable_client_version_is_a_clear_error():
    with pytest.raises(btw_db.BtwDbError, match="cannot tell the mysqldump client's version"):
        btw_db.coordinate_options("")


def test_dump_command_carries_the_coordinate_options_before_the_database(tmp_path):
    argv, _env = btw_db.dump_command(
        "mysqldump", "app", {"defaults_file": _secret(tmp_path)}, "/x/app.sql", str(tmp_path),
        extra_options=["--master-data=2", "--gtid"],
    )
    assert argv.index("--master-data=2") < argv.index("--") and argv[-1] == "app"
    assert "--single-transaction" in argv


def _secret(tmp_path):
    path = tmp_path / "my.cnf"
    path.write_text("[client]\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize(
    "stderr",
    [
        "mysqldump: Couldn't execute 'FLUSH TABLES WITH READ LOCK': Access denied; you need (at least one "
        "of) the RELOAD privilege(s) for this operation (1227)",
        "mysqldump: Couldn't execute 'SHOW MASTER STATUS': Access denied; you need (at least one of) the "
        "SUPER, REPLICATION CLIENT privilege(s) for this operation (1227)",
        "mariadb-dump: Couldn't execute 'SHOW BINLOG STATUS': Access denied; you need (at least one of) the "
        "BINLOG MONITOR privilege(s) for this operation (1227)",
    ],
)
def test_a_missing_privilege_says_what_to_grant_or_how_to_opt_out(stderr):
    message = btw_db.privilege_message(stderr)
    assert "RELOAD and REPLICATION CLIENT" in message and "BINLOG MONITOR" in message
    assert "record_coordinates: false" in message
    assert btw_db.privilege_message("mysqldump: Got error: 1049: Unknown database 'x'") is None


MARIADB_DUMP = """-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;
-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000003', MASTER_LOG_POS={pos};
CREATE TABLE `a` (id int);
INSERT INTO `a` VALUES (1);
CREATE TABLE `b` (id int);
-- SET GLOBAL gtid_slave_pos='0-1-{seq}';
-- Dump completed
"""


def test_coordinates_are_read_from_the_dump_and_left_out_of_the_content_hash(tmp_path):
    first, second = tmp_path / "1.sql", tmp_path / "2.sql"
    first.write_text(MARIADB_DUMP.format(pos=1524, seq=7))
    second.write_text(MARIADB_DUMP.format(pos=9000, seq=40))
    assert btw_db.dump_coordinates(str(first)) == {
        "binlog_file": "mysql-bin.000003", "binlog_position": 1524, "gtid": "0-1-7"}
    h1, tables = btw_db.dump_content(None, "mysqldump", str(first))
    h2, _ = btw_db.dump_content(None, "mysqldump", str(second))
    assert h1 == h2 and tables == 2  # other databases' writes move the coordinates, not the content
    mysql = tmp_path / "m.sql"
    mysql.write_text(
        "-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;\n"
        "SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'a2b4:1-5';\nCREATE TABLE `t` (id int);\n"
    )
    assert btw_db.dump_coordinates(str(mysql)) == {
        "binlog_file": "binlog.000002", "binlog_position": 157, "gtid": "a2b4:1-5"}
    plain = tmp_path / "p.sql"
    plain.write_text("CREATE TABLE `t` (id int);\n")
    assert btw_db.dump_coordinates(str(plain)) is None


def test_figures_of_a_dump():
    assert btw_db.dump_figures("mysqldump", 12, 4096) == {"tables": 12, "bytes": 4096}
    assert btw_db.dump_figures("pg_globals", 3, 100) == {"roles": 3, "bytes": 100}


def _chain(dest, name, stamps):
    data = dest / name / "rdiff-backup-data"
    data.mkdir(parents=True)
    for stamp in stamps:
        (data / f"session_statistics.{stamp}.data").write_text("")
    (data / f"current_mirror.{stamps[-1]}.data").write_text("")


def test_catalog_lists_the_stored_btw_dumps_still_present_with_their_coordinates(tmp_path):
    dest = tmp_path / "db" / "app"
    _chain(dest, "chain-20261201T020000Z", ["2026-12-01T02:00:00Z", "2026-12-01T03:00:00Z"])
    _chain(dest, "chain-20261202T020000Z", ["2026-12-02T02:00:00Z"])
    epoch = {s: int(btw_db.parse_at(s)) for s in ("2026-12-01T02:00:00Z", "2026-12-01T03:00:00Z",
                                                    "2026-12-02T02:00:00Z")}
    ledger = [
        {"chain": "chain-20261130T020000Z", "session": 1, "binlog_file": "mysql-bin.000001",
         "binlog_position": 4},  # a chain retention removed: not listed
        {"chain": "chain-20261201T020000Z", "session": epoch["2026-12-01T02:00:00Z"],
         "binlog_file": "mysql-bin.000002", "binlog_position": 300, "gtid": "0-1-9", "dump": "app.sql"},
        {"chain": "chain-20261201T020000Z", "session": epoch["2026-12-01T03:00:00Z"],
         "binlog_file": "mysql-bin.000002", "binlog_position": 900, "gtid": "0-1-12", "dump": "app.sql"},
        {"chain": "chain-20261202T020000Z", "session": epoch["2026-12-02T02:00:00Z"],
         "binlog_file": "mysql-bin.000004", "binlog_position": 120, "gtid": "0-1-30", "dump": "app.sql"},
        {"chain": "chain-20261202T020000Z", "session": 5, "binlog_file": "mysql-bin.000005",
         "binlog_position": 4},  # a session rdiff-backup regressed: not listed
    ]
    (dest / btw_db.COORDINATES_FILE).write_text(json.dumps({"dumps": ledger}))
    specs = [{"kind": "btw", "path": str(dest)}]
    found = mysql_full_backups.list_backups(specs)
    assert [(b["binlog_file"], b["binlog_position"], b["gtid"]) for b in found] == [
        ("mysql-bin.000002", 300, "0-1-9"), ("mysql-bin.000002", 900, "0-1-12"),
        ("mysql-bin.000004", 120, "0-1-30")]
    assert {b["kind"] for b in found} == {"btw"} and not any(b["restorable"] for b in found)
    assert found[0]["path"] == os.path.join(str(dest), "chain-20261201T020000Z")
    assert mysql_full_backups.oldest_needed_file(specs) == "mysql-bin.000002"
    # a dump whose database is not known (no database in the ledger, no meta.json beside it) is no
    # starting point of a point-in-time restore, and the refusal says why
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "mysql-bin.000002").write_bytes(b"\xfebin")  # the magic alone: no event yet
    with pytest.raises(mysql_pitr.PitrError, match="hold no dump with coordinates and a known database"):
        mysql_pitr.plan(str(archive), specs, {"kind": "latest", "value": "latest"})
    with pytest.raises(mysql_full_backups.BackupCatalogError, match="no such directory"):
        mysql_full_backups.list_backups([{"kind": "btw", "path": str(tmp_path / "none")}])


def test_the_ledger_forgets_removed_chains_and_is_0600(tmp_path):
    dest = tmp_path / "set"
    _chain(dest, "chain-20261202T020000Z", ["2026-12-02T02:00:00Z"])
    (dest / btw_db.COORDINATES_FILE).write_text(json.dumps({"dumps": [
        {"chain": "chain-20261101T020000Z", "session": 1, "binlog_file": "mysql-bin.000001"}]}))
    btw_db._record_coordinates(str(dest), {"chain": "chain-20261202T020000Z", "session": 2,
                                           "binlog_file": "mysql-bin.000002", "binlog_position": 4})
    assert [e["chain"] for e in btw_db.read_coordinate_ledger(str(dest))] == ["chain-20261202T020000Z"]
    assert oct(os.stat(dest / btw_db.COORDINATES_FILE).st_mode & 0o777) == "0o600"
    (dest / btw_db.COORDINATES_FILE).write_text("not json")
    assert btw_db.read_coordinate_ledger(str(dest)) == []
