"""roles/mysql_binlog_archive applied for real (playbooks/mysql_binlog_archive.yml) to a container
booting systemd as PID 1 (localhost/backup-lab-systemd, scripts/lab/build-image.sh), its MariaDB
source in the same container: the unit mysql-binlog-archive@<source> active and enabled, its
credentials 0600 and off the command line, the archive following the source across rotations, a
kill -9 of mariadb-binlog and a restart of the source each restarted by systemd and resumed with
every transaction archived once (the files byte for byte the source's), a second run idempotent,
a new password written and the unit restarted with it (the role's handler).

The archive is on the source's host here (127.0.0.1): what is under test is the unit under a real
systemd, not the network. Needs root, podman and the image; skipped otherwise (make test builds it).
"""

import json
import os
import subprocess
import time

import pytest

from tests.lib import canary
from tests.lib.lab_containers import SYSTEMD_IMAGE, podman_ready, sh, sql, systemd_container
from tests.lib.lab_containers import converge as lab_converge

ARCHIVER_PW = canary.canary("binlog-archive-systemd-pw")
NEW_PW = canary.canary("binlog-archive-systemd-new-pw")

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(TOP, "playbooks", "mysql_binlog_archive.yml")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not podman_ready(SYSTEMD_IMAGE), reason="needs root, podman and " + SYSTEMD_IMAGE),
]
HOST = "binlog-archive"
SOURCE = "db1"
UNIT = f"mysql-binlog-archive@{SOURCE}.service"
# the role's defaults, as the product's playbook uses them
ARCHIVE = f"/srv/backup/binlog/{SOURCE}"
CONF = f"/etc/mysql-binlog-archive/{SOURCE}.cnf"
CORE = "/usr/local/lib/mysql-binlog-archive/binlog_archive.py"
DATADIR = "/var/lib/mysql"

SOURCE_CNF = """[mariadbd]
log_bin = mysql-bin
server_id = 1
binlog_format = ROW
"""

# the GTID of every transaction in the archive, in order, read by the core the role installed
GTIDS = f"""
import json, os, sys
sys.path.insert(0, {os.path.dirname(CORE)!r})
import binlog_archive as b
files = [os.path.join({ARCHIVE!r}, n) for n, _s in b.archive_files({ARCHIVE!r})]
print(json.dumps([t["gtid"] for f in files for t in b.transactions(b.read_file(f)["events"])]))
"""

_container = {}


def run(command, check=True):
    """A shell command in the container, as root: its stdout (stripped) when check."""
    return sh(_container["name"], command, check=check)


def in_python(script):
    """A Python script run by the container's python3 (on stdin): its stdout."""
    result = subprocess.run(["podman", "exec", "-i", _container["name"], "python3", "-"], input=script,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def query(statement):
    return sql(_container["name"], statement)


def unit(prop):
    return run(f"systemctl show -p {prop} --value {UNIT}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The container with its MariaDB source (binary log on, the archiver's account) and an
    inventory naming it the archive host; the role not applied yet."""
    base = tmp_path_factory.mktemp("binlog-archive-systemd")
    with systemd_container(HOST) as name:
        _container["name"] = name
        assert run("cat /proc/1/comm") == "systemd"
        # the image ships an empty datadir and mariadb.service disabled
        run(f"cat > /etc/mysql/mariadb.conf.d/90-binlog.cnf <<'EOF'\n{SOURCE_CNF}EOF\n"
            f"mariadb-install-db --user=mysql --datadir={DATADIR} --skip-test-db >/dev/null"
            " && systemctl start mariadb.service")
        # the statement goes in on stdin: the password is on no command line
        subprocess.run(
            ["podman", "exec", "-i", name, "mariadb"], check=True, capture_output=True, text=True,
            input=(f"CREATE USER 'archiver'@'127.0.0.1' IDENTIFIED BY '{ARCHIVER_PW}';\n"
                   "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'archiver'@'127.0.0.1';\n"
                   "CREATE DATABASE shop;\n"
                   "CREATE TABLE shop.orders (id INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;\n"))
        inventory = base / "hosts.yml"
        canary.write_private(inventory, json.dumps({"all": {"children": {"mysql_binlog_archive": {"hosts": {
            HOST: {"ansible_connection": "lab_podman", "ansible_host": name,
                   "ansible_python_interpreter": "/usr/bin/python3"}}}}}}))
        settings = base / "settings.json"
        lab = {"inventory": str(inventory), "settings": str(settings), "next_id": [0]}
        set_password(lab, ARCHIVER_PW)
        yield lab


def set_password(lab, password):
    """The playbook's variables (a 0600 file): one source, the archiver's account with this password."""
    canary.write_private(lab["settings"], json.dumps({"mysql_binlog_archive_sources": [
        {"name": SOURCE, "host": "127.0.0.1", "port": 3306, "user": "archiver",
         "password": password, "server_id": 4242}]}))


def converge(lab):
    """One run of playbooks/mysql_binlog_archive.yml: the host's changed count and the output."""
    return lab_converge(lab["inventory"], PLAYBOOK, lab["settings"], HOST)


def write(lab, count):
    """count transactions on the source, one row each."""
    first = lab["next_id"][0]
    lab["next_id"][0] += count
    query(";".join(f"INSERT INTO shop.orders VALUES ({i}, 'order-{i}')" for i in range(first, first + count)))


def main_pid():
    return int(unit("MainPID"))


def wait_for(predicate, what, timeout=30, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            journal = run(f"journalctl -u {UNIT} --no-pager -n 20 || true")
            raise AssertionError(f"{what}: not within {timeout} s; journal:\n{journal}")
        time.sleep(step)


def source_files():
    """The source's binlogs: [(name, size)], from SHOW BINARY LOGS."""
    return [tuple(line.split("\t")[:2]) for line in query("SHOW BINARY LOGS").splitlines()]


def caught_up():
    name, size = source_files()[-1]
    got = run(f"stat -c %s {ARCHIVE}/{name} 2>/dev/null || echo 0")
    return int(got) == int(size)


def restarted_after(old_pid):
    """Waits for systemd to have started the archiver again: its new MainPID."""
    def running_again():
        pid = main_pid()
        return pid if pid not in (0, old_pid) and unit("ActiveState") == "active" else None
    return wait_for(running_again, f"{UNIT} running again after {old_pid}")


def assert_archive_is_the_source():
    """Every source binlog archived byte for byte (no extra file), and the installed core's status:
    continuous, no lag, each transaction once with consecutive GTIDs ending at the source's."""
    wait_for(caught_up, "the archive caught up with the source")
    names = [name for name, _size in source_files()]
    assert run(f"ls {ARCHIVE}").split() == names
    for name in names:
        differ = run(f"cmp -l {DATADIR}/{name} {ARCHIVE}/{name} || true").split()
        # the file the source is writing has LOG_EVENT_BINLOG_IN_USE_F (byte 22: the format
        # description event's flags) set, which the server clears when it sends the event
        assert differ == (["22", "1", "0"] if name == names[-1] else []), (name, differ)
    status = json.loads(run(f"python3 {CORE} status --config /etc/mysql-binlog-archive/{SOURCE}.json"))
    assert status["continuous"], status["gaps"]
    assert status["lag_bytes"] == 0 and status["source_error"] is None, status
    gtids = json.loads(in_python(GTIDS))
    seqs = [int(g.rsplit("-", 1)[1]) for g in gtids]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert gtids[-1] == query("SELECT @@gtid_binlog_pos")
    assert status["transactions"] == len(gtids)
    return status


def test_the_role_starts_an_enabled_unit_without_secrets_on_its_command_line(lab):
    changed, output = converge(lab)
    assert changed > 0, output
    assert run(f"systemctl is-active {UNIT}") == "active"
    assert run(f"systemctl is-enabled {UNIT}") == "enabled"
    assert unit("Restart") == "on-failure"
    verify = run(f"systemd-analyze verify /etc/systemd/system/{UNIT.replace(SOURCE, '')}", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the credentials: 0600, root's; the process systemd runs is mariadb-binlog (the archiver execs
    # it), its command line naming the option file first and holding no password
    assert run(f"stat -c '%a %U' {CONF}") == "600 root"
    pid = main_pid()
    argv = run(f"tr '\\0' '\\n' < /proc/{pid}/cmdline").splitlines()
    assert os.path.basename(argv[0]) == "mariadb-binlog", argv
    assert argv[1] == f"--defaults-file={CONF}", argv
    assert "--stop-never" in argv and "--raw" in argv, argv
    assert ARCHIVER_PW not in " ".join(argv)
    assert ARCHIVER_PW not in run(f"journalctl -u {UNIT} --no-pager")


def test_the_archive_follows_the_source_across_rotations(lab):
    write(lab, 5)
    wait_for(caught_up, "the archive caught up with 5 transactions")
    first = source_files()[-1][0]
    before = int(run(f"stat -c %s {ARCHIVE}/{first}"))
    write(lab, 5)
    wait_for(caught_up, "the archive caught up with 5 more")
    assert int(run(f"stat -c %s {ARCHIVE}/{first}")) > before
    query("FLUSH BINARY LOGS")
    write(lab, 3)
    assert source_files()[-1][0] != first
    status = assert_archive_is_the_source()
    assert status["file_count"] == 2
    # UMask=0027: the archive is no one else's to read
    modes = run(f"stat -c %a {ARCHIVE} {ARCHIVE}/*").split()
    assert all(mode[-1] == "0" for mode in modes), modes


def test_kill_9_and_a_source_restart_are_restarted_and_resumed(lab):
    restarts = int(unit("NRestarts"))
    old = main_pid()
    write(lab, 4)
    run(f"kill -9 {old}")
    write(lab, 6)  # while it is down: fetched after the restart, with the file it was writing
    new = restarted_after(old)
    assert int(unit("NRestarts")) == restarts + 1
    assert run(f"systemctl is-active {UNIT}") == "active"
    assert_archive_is_the_source()
    # the source restarted: mariadb-binlog loses its connection, exits 1, systemd starts it again
    run("systemctl restart mariadb.service")
    write(lab, 3)
    restarted_after(new)
    assert int(unit("NRestarts")) == restarts + 2
    status = assert_archive_is_the_source()
    assert status["file_count"] == 3  # the restart began mysql-bin.000003


def test_a_second_run_changes_nothing_and_keeps_the_unit_running(lab):
    pid, started = main_pid(), unit("ExecMainStartTimestampMonotonic")
    changed, output = converge(lab)
    assert changed == 0, output
    assert (main_pid(), unit("ExecMainStartTimestampMonotonic")) == (pid, started)
    assert run(f"systemctl is-active {UNIT}") == "active"


def test_a_new_password_is_written_and_the_unit_restarted_with_it(lab):
    old = main_pid()
    assert int(unit("NRestarts")) == 2
    subprocess.run(["podman", "exec", "-i", _container["name"], "mariadb"], check=True, capture_output=True,
                   text=True, input=f"ALTER USER 'archiver'@'127.0.0.1' IDENTIFIED BY '{NEW_PW}';\n")
    set_password(lab, NEW_PW)
    changed, output = converge(lab)
    assert changed == 2, output  # the option file, and the handler restarting the unit
    assert "RUNNING HANDLER [mysql_binlog_archive : Restart the archivers]" in output
    assert main_pid() not in (0, old)
    # restarted by the play, not after a failure: a restart asked for resets the automatic ones' count
    assert int(unit("NRestarts")) == 0
    assert run(f"stat -c %a {CONF}") == "600"
    write(lab, 3)
    assert_archive_is_the_source()
