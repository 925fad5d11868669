"""Physical seed core: the backup's binlog record, and the refusals before anything is streamed."""
import os

import pytest
from ansible.module_utils import mysql_physical_seed as seed


@pytest.mark.parametrize("text, expected", [
    ("mysql-bin.000003\t1234\t0-1-56\n",
     dict(binlog_file="mysql-bin.000003", binlog_position=1234, gtid="0-1-56")),
    ("mysql-bin.000003\t1234\t0-1-56,1-2-3", dict(binlog_file="mysql-bin.000003", binlog_position=1234,
                                                 gtid="0-1-56,1-2-3")),
    ("binlog.000001\t4", dict(binlog_file="binlog.000001", binlog_position=4, gtid="")),
])
def test_the_binlog_record_is_read(text, expected):
    assert seed.parse_binlog_info(text) == expected


@pytest.mark.parametrize("text", ["", "\n", "mysql-bin.000001", "mysql-bin.000001\tx\t0-1-1"])
def test_a_bad_binlog_record_is_an_error(text):
    with pytest.raises(seed.PhysicalSeedError, match="is log_bin on at the source"):
        seed.parse_binlog_info(text)


def test_the_newer_record_name_is_read_first(tmp_path):
    (tmp_path / "xtrabackup_binlog_info").write_text("old.000001\t4\t\n")
    (tmp_path / "mariadb_backup_binlog_info").write_text("new.000002\t8\t0-1-2\n")
    assert seed.read_binlog_info(str(tmp_path))["binlog_file"] == "new.000002"
    os.unlink(tmp_path / "mariadb_backup_binlog_info")
    assert seed.read_binlog_info(str(tmp_path))["binlog_file"] == "old.000001"
    os.unlink(tmp_path / "xtrabackup_binlog_info")
    with pytest.raises(seed.PhysicalSeedError, match="has no binlog record"):
        seed.read_binlog_info(str(tmp_path))


def test_an_existing_staging_directory_is_never_reused(tmp_path):
    datadir = tmp_path / "data"
    (datadir / "mysql").mkdir(parents=True)
    (datadir / ".restore-staging-20261203T041500Z").mkdir()
    with pytest.raises(seed.PhysicalSeedError, match="exists already.*nothing was changed"):
        seed.stage(["true"], str(datadir), "20261203T041500Z", source_conn=None)


def test_swap_needs_a_staged_copy_and_a_run_id(tmp_path):
    datadir = tmp_path / "data"
    (datadir / "mysql").mkdir(parents=True)
    with pytest.raises(seed.PhysicalSeedError, match="nothing staged"):
        seed.swap(str(datadir), "20261203T041500Z")
    with pytest.raises(Exception, match="is not a UTC timestamp"):
        seed.swap(str(datadir), "../etc")


def test_a_missing_program_is_named_before_anything_is_streamed(tmp_path):
    datadir = tmp_path / "data"
    (datadir / "mysql").mkdir(parents=True)
    with pytest.raises(seed.PhysicalSeedError, match="not found on the backup host: no-such-mbstream"):
        seed.stage(["true"], str(datadir), "20261203T041500Z", source_conn=None, mbstream="no-such-mbstream")
    assert os.listdir(datadir) == ["mysql"]
