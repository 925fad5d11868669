"""State of the fcrepo host after converge (shutdown, pause, hot and rest backups, then a file
restore and a REST restore) and verify: run by molecule/_shared/testinfra.yml."""
import json
import time

LEVELDB = "/var/lib/fcrepo/fcrepo4-data/fcrepo.ispn.repo.cache/dataFedoraRepository"
BACKUPS = "/var/backups/fcrepo/leveldb"
RUN = "/run/fcrepo-standin"


def _lines(host, command, *args):
    return host.check_output(command, *args).splitlines()


def test_shutdown_pause_and_hot_each_left_one_leveldb_backup(host):
    backups = _lines(host, "ls -d %s/leveldb-*", BACKUPS)
    assert len(backups) == 3, backups
    assert host.file(f"{BACKUPS}/latest").linked_to == sorted(backups)[-1]


def test_backups_are_private_to_root(host):
    paths = ["/var/backups/fcrepo", BACKUPS, "/var/backups/fcrepo/binaries"]
    # one `stat` for all of them: each testinfra file attribute is a `podman exec` of its own
    modes = _lines(host, "stat -c '%%F %%a %%U:%%G' %s %s %s", *paths)
    assert modes == ["directory 700 root:root"] * len(paths), dict(zip(paths, modes))


def test_rest_stand_in_answered_fcr_backup_200_and_fcr_restore_204(host):
    calls = [json.loads(line) for line in host.file(f"{RUN}/rest.log").content_string.splitlines()]
    assert {"method": "POST", "path": "/rest/fcr:backup", "status": 200} in calls, calls
    assert {"method": "POST", "path": "/rest/fcr:restore", "status": 204} in calls, calls


def test_file_restore_kept_the_previous_leveldb_aside(host):
    aside = _lines(host, "ls -d %s.before-restore-*", LEVELDB)
    assert len(aside) == 1, aside
    assert host.file(f"{aside[0]}/CURRENT").is_file


def test_service_runs_on_the_restored_leveldb_and_keeps_writing(host):
    writer = host.file(f"{RUN}/writer.pid").content_string.strip()
    state = host.file(f"/proc/{writer}/stat").content_string.rsplit(")", 1)[1].split()[0]
    assert state != "Z", "the writer exited"
    # The writer holds the LevelDB lock of the live path (the restored copy), not of the one aside.
    open_files = host.run("readlink /proc/%s/fd/*", writer).stdout.splitlines()  # fds come and go: rc ignored
    assert f"{LEVELDB}/LOCK" in open_files, open_files
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    first = int(host.file(f"{RUN}/progress").content_string)
    assert first > 2000
    deadline = time.monotonic() + 30
    while int(host.file(f"{RUN}/progress").content_string) <= first:
        assert time.monotonic() < deadline, f"no key written in 30 s (still {first})"
        time.sleep(0.5)
