"""Binlog archive core: gaps, resume point, lag, retention, option files, the archiver's command
line, the binlog reader (header level) and transaction grouping; the PITR planner's pure parts and
the full-backup catalog."""

import json
import os
import stat
import struct

import pytest
from ansible.module_utils import binlog_archive as ba
from ansible.module_utils import binlog_archive_metrics, mysql_full_backups, mysql_pitr

F = "mysql-bin.{:06d}".format


# -- gaps, resume, lag, retention -------------------------------------------------------------


def test_continuous_archive_behind_the_source_is_lag_not_a_gap():
    archived = [(F(1), 500), (F(2), 300)]
    source = [(F(1), 500), (F(2), 800), (F(3), 200)]
    assert ba.find_gaps(archived, source, F(1), {F(1): True, F(2): False}) == []
    assert ba.lag(archived, source, last_event_time=100.0, now=130.0) == {"bytes": 700, "seconds": 30.0}
    assert ba.lag(source, source, last_event_time=100.0, now=130.0) == {"bytes": 0, "seconds": 0.0}
    assert ba.lag(archived, None) == {"bytes": None, "seconds": None}


def test_a_file_purged_before_it_was_archived_is_a_gap():
    archived = [(F(1), 500), (F(3), 100)]
    gaps = ba.find_gaps(archived, [(F(3), 400)], F(1), {F(1): True, F(3): False})
    assert [(g["kind"], g["file"], g["on_source"]) for g in gaps] == [("missing", F(2), False)]
    assert "purged on the source before it was archived" in gaps[0]["detail"]
    # still on the source (someone removed it from the archive): said so
    gaps = ba.find_gaps(archived, [(F(2), 9), (F(3), 400)], F(1))
    assert gaps[0]["on_source"] and "still on the source" in gaps[0]["detail"]


def test_the_oldest_backup_needs_files_the_archive_never_had():
    gaps = ba.find_gaps([(F(5), 100)], [(F(5), 100)], needed_from=F(3))
    assert [g["file"] for g in gaps] == [F(3), F(4)]


def test_archive_ending_in_a_file_the_source_purged_loses_its_end_and_the_files_between():
    gaps = ba.find_gaps([(F(1), 500)], [(F(4), 100)], None, {F(1): False})
    assert {(g["kind"], g["file"]) for g in gaps} == {
        ("missing", F(2)),
        ("missing", F(3)),
        ("truncated", F(1)),
    }


def test_an_older_file_archived_incomplete_is_a_gap():
    gaps = ba.find_gaps([(F(1), 400), (F(2), 10)], [(F(1), 500), (F(2), 10)], None, {F(1): True})
    assert gaps[0]["kind"] == "reinitialised"  # sizes differ for a closed file: not the same file
    gaps = ba.find_gaps([(F(1), 400), (F(2), 10)], None, None, {F(1): False, F(2): False})
    assert [(g["kind"], g["file"]) for g in gaps] == [("truncated", F(1))]


def test_reinitialised_source_is_reported_and_refused_by_the_archiver():
    archived = [(F(7), 500), (F(8), 100)]
    source = [(F(1), 300)]
    gaps = ba.find_gaps(archived, source)
    assert gaps[0]["kind"] == "reinitialised" and "move the archive aside" in gaps[0]["detail"]
    with pytest.raises(ba.ArchiveError, match="re-initialised"):
        ba.resume_file(archived, source)


def test_resume_fetches_the_newest_file_again_or_starts_where_it_must():
    source = [(F(3), 100), (F(4), 200), (F(5), 50)]
    assert ba.resume_file([(F(3), 100), (F(4), 120)], source)[0] == F(4)
    start, why = ba.resume_file([(F(1), 100)], source)
    assert start == F(3) and "gap" in why
    assert ba.resume_file([], source, needed_from=F(4))[0] == F(4)
    assert ba.resume_file([], source, needed_from=F(1))[0] == F(3)
    with pytest.raises(ba.ArchiveError, match="log_bin"):
        ba.resume_file([], [])


def test_retention_keeps_what_the_oldest_backup_needs_and_never_the_newest(tmp_path):
    archived = [(F(n), 10) for n in range(1, 6)]
    assert ba.retention_plan(archived, F(3)) == [F(1), F(2)]
    assert ba.retention_plan(archived, None) == []
    assert ba.retention_plan(archived, F(9)) == [F(1), F(2), F(3), F(4)]  # never the newest
    with pytest.raises(ba.ArchiveError, match="another source"):
        ba.retention_plan(archived, "other-bin.000003")
    for name, _ in archived:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("mine")
    assert ba.apply_retention(str(tmp_path), F(3), check_mode=True) == [F(1), F(2)]
    assert len(os.listdir(tmp_path)) == 6
    assert ba.apply_retention(str(tmp_path), F(3)) == [F(1), F(2)]
    assert sorted(os.listdir(tmp_path)) == [
        "mysql-bin.000003",
        "mysql-bin.000004",
        "mysql-bin.000005",
        "notes.txt",
    ]


def test_archive_files_lists_binlogs_only_and_refuses_two_sources_in_one_directory(tmp_path):
    (tmp_path / F(2)).write_bytes(b"ab")
    (tmp_path / F(10)).write_bytes(b"abc")
    (tmp_path / "README").write_text("x")
    assert ba.archive_files(str(tmp_path)) == [(F(2), 2), (F(10), 3)]
    (tmp_path / "other.000001").write_bytes(b"")
    with pytest.raises(ba.ArchiveError, match="several basenames"):
        ba.archive_files(str(tmp_path))
    with pytest.raises(ba.ArchiveError, match="source name"):
        ba.source_dir("/srv", "../etc")


def test_parse_binary_logs():
    text = "mysql-bin.000001\t2076\tNo\nmysql-bin.000002\t385\tNo\n"
    assert ba.parse_binary_logs(text) == [(F(1), 2076), (F(2), 385)]


# -- credentials and the command line ---------------------------------------------------------


def test_option_file_is_0600_quoted_and_the_command_line_holds_no_secret(tmp_path):
    path = str(tmp_path / "src.cnf")
    assert ba.write_option_file(path, dict(host="db1", port=3306, user="arch", password='p"w\\x'))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert 'password="p\\"w\\\\x"' in open(path).read()
    assert not ba.write_option_file(path, dict(host="db1", port=3306, user="arch", password='p"w\\x'))
    argv = ba.archiver_command(str(tmp_path / "arch"), path, 4242, F(7), binary="/usr/bin/mariadb-binlog")
    assert argv[1] == f"--defaults-file={path}"  # first: exclusive, no ~/.my.cnf
    assert "--stop-never-slave-server-id=4242" in argv and "--raw" in argv and argv[-1] == F(7)
    assert argv[-2] == f"--result-file={tmp_path / 'arch'}/"
    assert not any('p"w' in a for a in argv)
    os.chmod(path, 0o644)
    with pytest.raises(ba.ArchiveError, match="chmod 0600"):
        ba.check_secret_file(path)


def test_archiver_refuses_a_bad_configuration(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"directory": str(tmp_path / "a"), "server_id": 5}))
    assert ba.main(["run", "--config", str(config)]) == 1
    assert "defaults_file is missing" in capsys.readouterr().err


# -- reading binlog files (header level) and grouping transactions ----------------------------


def _event(ts, etype, body, pos):
    size = 19 + len(body) + 4
    return struct.pack("<IBIIIH", ts, etype, 1, size, pos + size, 0) + body + b"\0\0\0\0"


def _fde():
    return b"\x04\x00" + b"10.11.99".ljust(50, b"\0") + b"\0" * 4 + b"\x13" + b"\x00" * 10 + b"\x01"


def _query(text):
    return struct.pack("<IIBHH", 1, 0, 0, 0, 0) + b"\0" + text.encode()


def test_read_file_stops_before_a_partial_event_and_groups_transactions(tmp_path):
    data = bytearray(ba.BINLOG_MAGIC)
    for ts, etype, body in (
        (100, ba.FORMAT_DESCRIPTION_EVENT, _fde()),
        (101, ba.MARIADB_GTID_EVENT, struct.pack("<QIB", 5, 0, 1)),  # standalone: DDL
        (101, ba.QUERY_EVENT, _query("DROP TABLE t")),
        (102, ba.MARIADB_GTID_EVENT, struct.pack("<QIB", 6, 0, 0)),
        (102, ba.QUERY_EVENT, _query("BEGIN")),
        (102, ba.XID_EVENT, struct.pack("<Q", 9)),
        (103, ba.MARIADB_GTID_EVENT, struct.pack("<QIB", 7, 0, 0)),
        (103, ba.QUERY_EVENT, _query("BEGIN")),
    ):
        data += _event(ts, etype, body, len(data))
    whole = len(data)
    data += _event(104, ba.XID_EVENT, struct.pack("<Q", 10), len(data))[:10]  # killed mid-event
    path = tmp_path / F(1)
    path.write_bytes(bytes(data))
    info = ba.read_file(str(path))
    assert info["complete_bytes"] == whole and info["size"] == whole + 10 and not info["closed"]
    trx = ba.transactions(info["events"])
    assert [(t["gtid"], t["time"], t["statement"]) for t in trx] == [
        ("0-1-5", 101, "DROP TABLE t"),
        ("0-1-6", 102, None),
    ]
    assert trx[1]["start"] == trx[0]["end"]
    (tmp_path / F(2)).write_bytes(b"not a binlog")
    with pytest.raises(ba.ArchiveError, match="not a binlog"):
        ba.read_file(str(tmp_path / F(2)))


def test_status_asks_the_source_before_reading_the_archive(tmp_path):
    # a quiet source writes one transaction while the health check reads the archive, and the
    # archiver has it at once: that is no lag (read the other way round it would count the seconds
    # since the previous transaction, an hour here)
    data = bytearray(ba.BINLOG_MAGIC)
    data += _event(100, ba.FORMAT_DESCRIPTION_EVENT, _fde(), len(data))
    ends = []
    for seq, ts in ((1, 100), (2, 3600)):
        data += _event(ts, ba.MARIADB_GTID_EVENT, struct.pack("<QIB", seq, 0, 1), len(data))
        data += _event(ts, ba.QUERY_EVENT, _query(f"CREATE TABLE t{seq} (id INT)"), len(data))
        ends.append(len(data))
    first = ends[0]
    path = tmp_path / F(1)
    path.write_bytes(bytes(data[:first]))
    defaults = tmp_path / "src.cnf"
    ba.write_option_file(str(defaults), dict(host="db1", user="archiver", password="pw"))
    asked = []

    class Answer:
        returncode = 0
        stderr = b""

    def source(argv, **_kw):
        asked.append(argv)
        answer = Answer()
        answer.stdout = f"{F(1)}\t{len(data)}\n".encode()
        path.write_bytes(bytes(data))  # the archiver streams the new transaction right after
        return answer

    st = ba.status(str(tmp_path), str(defaults), now=3601, run=source)
    assert asked and st["lag_bytes"] == 0 and st["lag_seconds"] == 0
    assert st["last"]["gtid"] == "0-1-2" and st["transactions"] == 2


# -- the restore planner's pure parts ---------------------------------------------------------


def test_targets_are_parsed_with_their_time_zone_and_exactly_one_is_given():
    utc = mysql_pitr.parse_datetime("2026-12-02 14:02:00")
    assert mysql_pitr.parse_datetime("2026-12-02T14:02:00Z") == utc
    assert mysql_pitr.parse_datetime("2026-12-02T16:02:00+02:00") == utc
    with pytest.raises(mysql_pitr.PitrError, match="ISO 8601"):
        mysql_pitr.parse_datetime("yesterday at two")
    assert mysql_pitr.parse_target(position="mysql-bin.000042:1234")["position"] == 1234
    with pytest.raises(mysql_pitr.PitrError, match="exactly one target"):
        mysql_pitr.parse_target(gtid="0-1-5", latest=True)
    with pytest.raises(mysql_pitr.PitrError, match="domain-server-sequence"):
        mysql_pitr.parse_target(gtid="five")
    with pytest.raises(mysql_pitr.PitrError, match="file>:<position"):
        mysql_pitr.parse_skip(position="mysql-bin:12")


def test_replay_ranges_split_around_a_skipped_transaction():
    trx = [dict(file=F(1 + i // 3), start=100 * i, end=100 * i + 90) for i in range(6)]
    assert mysql_pitr.replay_ranges(trx, [0, 1, 2, 3, 4, 5]) == [(F(1), 0, F(2), 590, 6)]
    assert mysql_pitr.replay_ranges(trx, [1, 2, 4, 5]) == [
        (F(1), 100, F(1), 290, 2),
        (F(2), 400, F(2), 590, 2),
    ]
    assert mysql_pitr.replay_ranges(trx, []) == []


def test_event_filter_matches_a_table_named_in_a_statement_as_a_whole_word():
    drop = "DROP TABLE `t` /* generated by server */"
    assert mysql_pitr._names_identifier(drop, "t") and mysql_pitr._names_identifier(drop, "T")
    assert not mysql_pitr._names_identifier(drop, "u")  # not any statement with the letter in it
    assert mysql_pitr._names_identifier("alter table shop.orders add x int", "orders")
    assert not mysql_pitr._names_identifier("alter table shop.orders2 add x int", "orders")
    assert not mysql_pitr._names_identifier("create table my_orders (id int)", "orders")


def test_a_failed_bootstrap_is_reported_by_its_error_lines_first():
    output = b"Installing MariaDB system tables\n2026-12-02 [ERROR] InnoDB: cannot allocate\n" + b"." * 5000
    message = mysql_pitr._failure_lines(output)
    assert message.startswith("2026-12-02 [ERROR] InnoDB: cannot allocate") and len(message) < 1300
    assert mysql_pitr._failure_lines(b"exit 1") == "exit 1"


def test_a_failed_scratch_removes_only_what_it_made(tmp_path):
    # a directory the operator made (empty, e.g. a mount point) stays, only its new content goes
    given = tmp_path / "given"
    given.mkdir()
    scratch = mysql_pitr.ScratchInstance(str(given), "root")
    scratch.check_new()
    (given / "data").mkdir()
    (given / "data" / "ibdata1").write_bytes(b"x")
    (given / "client.cnf").write_text("[client]\n")
    scratch.remove()
    assert given.is_dir() and list(given.iterdir()) == []
    # a directory the restore made goes whole
    made = mysql_pitr.ScratchInstance(str(tmp_path / "made"), "root")
    made.check_new()
    os.makedirs(made.datadir)
    made.remove()
    assert not (tmp_path / "made").exists()
    # a directory with content is refused before anything is made; remove() without check_new()
    # touches nothing
    with pytest.raises(mysql_pitr.PitrError, match="exists and is not empty"):
        mysql_pitr.ScratchInstance(str(tmp_path), "root").check_new()
    mysql_pitr.ScratchInstance(str(tmp_path), "root").remove()
    assert given.is_dir()


# -- the full-backup catalog ------------------------------------------------------------------


def test_catalog_reads_lvm_metadata_and_dump_headers_oldest_first(tmp_path):
    lvm = tmp_path / "lvm"
    for name, file, pos in (("20261201T020000Z", F(4), 900), ("20261202T020000Z", F(6), 120)):
        (lvm / name / "mysql").mkdir(parents=True)
        (lvm / name / "metadata.json").write_text(
            json.dumps({"coordinates": {"binlog_file": file, "binlog_position": pos, "gtid": "0-1-9"}})
        )
    (lvm / "20261130T020000Z").mkdir()
    (lvm / "20261130T020000Z" / "metadata.json").write_text(json.dumps({"coordinates": None}))
    dump = tmp_path / "seed.sql"
    dump.write_text(
        "-- MariaDB dump\n-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000005', MASTER_LOG_POS=77;\n"
        "CREATE TABLE t (id INT);\n-- SET GLOBAL gtid_slave_pos='0-1-12';\n"
    )
    specs = [{"kind": "lvm", "path": str(lvm)}, {"kind": "dump", "path": str(dump)}]
    found = mysql_full_backups.list_backups(specs)
    assert [(b["kind"], b["binlog_file"], b["binlog_position"]) for b in found] == [
        ("lvm", F(4), 900),
        ("dump", F(5), 77),
        ("lvm", F(6), 120),
    ]
    assert found[1]["gtid"] == "0-1-12" and found[0]["restorable"]
    assert mysql_full_backups.oldest_needed_file(specs) == F(4)
    assert mysql_full_backups.oldest_needed_file([]) is None
    (tmp_path / "plain.sql").write_text("CREATE TABLE t (id INT);\n")
    with pytest.raises(mysql_full_backups.BackupCatalogError, match="--master-data=2"):
        mysql_full_backups.list_backups([{"kind": "dump", "path": str(tmp_path / "plain.sql")}])
    with pytest.raises(mysql_full_backups.BackupCatalogError, match="kind"):
        mysql_full_backups.list_backups([{"kind": "xtrabackup", "path": str(tmp_path)}])


def test_metrics_render_one_series_per_family_for_the_source(tmp_path):
    facts = dict(
        lag_bytes=None,
        lag_seconds=None,
        gaps=[{}],
        file_count=3,
        size_bytes=10,
        last=None,
        source_error="refused",
        healthy=False,
    )
    text = binlog_archive_metrics.render("db1", facts)
    assert 'mysql_binlog_archive_lag_bytes{source="db1"} NaN' in text
    assert 'mysql_binlog_archive_gaps{source="db1"} 1' in text
    assert 'mysql_binlog_archive_source_up{source="db1"} 0' in text
    path = binlog_archive_metrics.write(str(tmp_path), "db1", facts)
    assert open(path).read() == text


def test_a_scratch_directory_too_long_for_the_socket_is_refused_before_anything(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    scratch = mysql_pitr.ScratchInstance(str(deep), user="root")
    with pytest.raises(mysql_pitr.PitrError, match=r"too long a path for the scratch server's Unix socket"):
        scratch.check_new()
    assert not deep.exists()
    mysql_pitr.ScratchInstance(str(tmp_path / "short"), user="root").check_new()
