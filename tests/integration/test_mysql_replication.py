"""The MySQL replication modules against two real MariaDB servers started on loopback.

Cores are called directly; the module wrappers run for real (through ansible-playbook against
localhost, and the seed module as its own process for the kill test).
"""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pymysql
import pytest
from ansible.module_utils.mysql_checksum import compare_tables
from ansible.module_utils.mysql_connection import connect
from ansible.module_utils.mysql_health import gather_facts
from ansible.module_utils.mysql_replica import ReplicaError, ensure_replica
from ansible.module_utils.mysql_seed import SeedError, run_seed

from tests.lib import canary
from tests.lib.mariadb import ROOT_PASSWORD

CHANGED_ELSEWHERE = canary.canary("changed-elsewhere-pw")
WRONG_PW = canary.canary("wrong-pw")

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPL_PASSWORD = canary.canary("repl-pw'q")
IGNORED = ["app.skipped"]


# -- helpers ---------------------------------------------------------------------------------
def login(server, prefix="login"):
    return {
        f"{prefix}_host": "127.0.0.1",
        f"{prefix}_port": server.port,
        f"{prefix}_user": "root",
        f"{prefix}_password": ROOT_PASSWORD,
    }


def local(server):
    """The replica side: the module runs on the backup host and talks to its server over the socket."""
    return dict(login_unix_socket=server.socket, login_user="root", config_file=None)


def seed_params(src, dst=None, **kw):
    params = dict(
        login(src),
        databases=["app"],
        ignore_tables=IGNORED,
        consistency="auto",
        lock_wait_timeout=60,
        max_query_seconds=300,
        extra_dump_args=[],
        compress="gzip",
        connect_timeout=5,
        config_file=None,
    )
    if dst is not None:
        params.update(mode="import", target_unix_socket=dst.socket, target_user="root")
    params.update(kw)
    return params


def replica_params(src, seed=None, **kw):
    params = dict(
        source_host="127.0.0.1",
        source_port=src.port,
        source_user="repl",
        source_password=REPL_PASSWORD,
        state="running",
        update_password="on_create",
        wait=True,
        max_lag_seconds=5,
        wait_timeout=60,
        flavor="auto",
    )
    if seed:
        params.update(source_log_file=seed["binlog_file"], source_log_pos=seed["binlog_position"])
    params.update(kw)
    return params


def make_source(src, rows=200):
    src.sql("CREATE DATABASE app")
    src.sql(
        "CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64), payload TEXT) "
        "ENGINE=InnoDB"
    )
    src.sql("CREATE TABLE app.skipped (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    src.sql(
        "INSERT INTO app.items (name, payload) SELECT CONCAT('item-', seq), REPEAT('x', 200) "
        f"FROM seq_1_to_{rows}",
        db="app",
    )
    src.sql("INSERT INTO app.skipped (v) VALUES (1), (2)")
    src.sql(f"CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD.replace(chr(39), chr(39) * 2)}'")
    src.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")


@pytest.fixture
def pair(mariadb_factory):
    """A source with data and a replica configured to ignore app.skipped (like the Seafile backup server)."""
    src = mariadb_factory("source", server_id=1)
    dst = mariadb_factory(
        "replica", server_id=2, extra_args=[f"--replicate-ignore-table={t}" for t in IGNORED]
    )
    make_source(src)
    return src, dst


def count(server, table):
    return server.sql(f"SELECT COUNT(*) FROM {table}")[0][0]


def wait_rows(server, table, expected, timeout=20):
    """The table's row count once it is `expected`, or after `timeout` s. A replica that has not yet
    applied the CREATE (unknown database 1049, unknown table 1146) is waited for like a short count."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = count(server, table)
        except pymysql.err.MySQLError as exc:
            if exc.args[0] not in (1049, 1146) or time.monotonic() >= deadline:
                raise
            found = None
        if found == expected or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def seeded_and_running(src, dst):
    seed = run_seed(seed_params(src, dst))
    conn = connect(dict(unix_socket=dst.socket, user="root"))
    try:
        result = ensure_replica(conn, replica_params(src, seed))
    finally:
        conn.close()
    return seed, result


def with_replica(dst, func, *args, **kw):
    conn = connect(dict(unix_socket=dst.socket, user="root"))
    try:
        return func(conn, *args, **kw)
    finally:
        conn.close()


def with_pair(src, dst, func, params):
    replica, source = (
        connect(dict(unix_socket=dst.socket, user="root")),
        connect(dict(unix_socket=src.socket, user="root")),
    )
    try:
        return func(replica, source, params)
    finally:
        replica.close()
        source.close()


# -- seed + replication ----------------------------------------------------------------------
def test_seed_file_mode_is_private_complete_and_has_coordinates(pair, tmp_path):
    src, _ = pair
    out = tmp_path / "dumps"
    out.mkdir()
    result = run_seed(seed_params(src, mode="file", dest=str(out / "seed.sql.gz")))
    path = out / "seed.sql.gz"
    assert os.listdir(out) == ["seed.sql.gz"]  # no temp or option file left behind
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    text = gzip.decompress(path.read_bytes()).decode()
    assert f"MASTER_LOG_FILE='{result['binlog_file']}', MASTER_LOG_POS={result['binlog_position']}" in text
    assert result["bytes"] == len(text.encode())
    assert result["gtid"] and f"gtid_slave_pos='{result['gtid']}'" in text
    assert "CREATE TABLE `items`" in text and "CREATE TABLE `skipped`" not in text
    assert result["consistency"] == "single_transaction" and result["non_transactional_tables"] == []
    # the coordinates are the source's position at the time of the dump
    status = src.sql("SHOW MASTER STATUS")[0]
    assert (result["binlog_file"], result["binlog_position"]) == (status[0], status[1])


def test_myisam_table_switches_auto_to_lock(pair, tmp_path):
    src, dst = pair
    src.sql("CREATE TABLE app.legacy (id INT PRIMARY KEY) ENGINE=MyISAM")
    result = run_seed(seed_params(src, dst))
    assert result["consistency"] == "lock" and result["non_transactional_tables"] == ["app.legacy"]
    assert "--lock-all-tables" in result["command"]


def test_import_with_writes_running_then_replication_has_every_row(pair):
    src, dst = pair
    stop = threading.Event()
    written = []

    def writer():
        conn = src.connect()
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("INSERT INTO app.items (name, payload) VALUES ('during', 'w')")
                    written.append(cur.lastrowid)
                    cur.execute("INSERT INTO app.skipped (v) VALUES (99)")
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        seed, result = seeded_and_running(src, dst)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert len(written) > 10, "the writer must have run during the dump"
    assert result["changed"] and result["coordinates_applied"]
    assert result["status"]["io_running"] == "Yes" and result["status"]["sql_running"] == "Yes"
    assert all("repl-S3cret" not in s for s in result["statements"])
    checked = with_pair(
        src, dst, compare_tables, dict(databases=["app"], ignore_tables=IGNORED, wait_timeout=60)
    )
    assert checked["compared"] == 1 and checked["mismatched"] == [] and checked["missing_on_replica"] == []
    ids_source = [r[0] for r in src.sql("SELECT id FROM app.items ORDER BY id")]
    ids_replica = [r[0] for r in dst.sql("SELECT id FROM app.items ORDER BY id")]
    assert ids_replica == ids_source and set(written) <= set(ids_replica)
    # the ignored table was neither dumped nor replicated
    assert dst.sql("SHOW TABLES FROM app LIKE 'skipped'") == ()


def test_ignored_table_is_not_replicated_when_it_exists_on_the_replica(pair):
    src, dst = pair
    seeded_and_running(src, dst)
    dst.sql("CREATE TABLE app.skipped (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    src.sql("INSERT INTO app.skipped (v) VALUES (7)")
    src.sql("INSERT INTO app.items (name) VALUES ('after')")
    with_pair(src, dst, compare_tables, dict(databases=["app"], ignore_tables=IGNORED, wait_timeout=60))
    assert count(dst, "app.skipped") == 0
    assert dst.sql("SELECT COUNT(*) FROM app.items WHERE name = 'after'")[0][0] == 1


def test_second_apply_changes_nothing_and_never_repoints(pair):
    src, dst = pair
    seed, first = seeded_and_running(src, dst)
    src.sql("INSERT INTO app.items (name) VALUES ('moved on')")
    with_pair(src, dst, compare_tables, dict(databases=["app"], wait_timeout=60))
    before = with_replica(dst, ensure_replica, replica_params(src, seed, wait=False), check_mode=True)
    position = before["status"]["exec_source_log_pos"]
    assert position > seed["binlog_position"]
    again = with_replica(dst, ensure_replica, replica_params(src, seed))
    assert not again["changed"] and again["statements"] == []
    assert "already configured" in again["coordinates_ignored_reason"]
    assert again["status"]["exec_source_log_pos"] >= position
    # a different seed position is not applied either
    other = with_replica(
        dst, ensure_replica, replica_params(src, dict(binlog_file="mysql-bin.000001", binlog_position=4))
    )
    assert not other["changed"] and other["status"]["exec_source_log_pos"] >= position


def test_check_mode_plans_without_issuing(pair):
    src, dst = pair
    seed = run_seed(seed_params(src, dst))
    planned = with_replica(dst, ensure_replica, replica_params(src, seed), check_mode=True)
    assert planned["changed"] and planned["statements"][0].startswith(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1'"
    )
    assert "MASTER_PASSWORD='********'" in planned["statements"][0]
    assert dst.sql("SHOW SLAVE STATUS") == ()


def test_state_stopped_then_absent(pair):
    src, dst = pair
    seeded_and_running(src, dst)
    stopped = with_replica(dst, ensure_replica, replica_params(src, state="stopped"))
    assert stopped["changed"] and stopped["status"]["io_running"] == "No"
    assert not with_replica(dst, ensure_replica, replica_params(src, state="stopped"))["changed"]
    gone = with_replica(dst, ensure_replica, dict(state="absent"))
    assert gone["changed"] and dst.sql("SHOW SLAVE STATUS") == ()
    assert not with_replica(dst, ensure_replica, dict(state="absent"))["changed"]


# -- facts and checksums ---------------------------------------------------------------------
def facts_params(**kw):
    params = dict(
        mode="preflight",
        databases=["app"],
        ignore_tables=IGNORED,
        replication_user="repl",
        replication_host="127.0.0.1",
        min_binlog_retention_days=7,
        max_lag_seconds=30,
        skip_checks=[],
    )
    params.update(kw)
    return params


def test_preflight_and_health_facts(pair):
    src, dst = pair
    pre = with_pair(src, dst, gather_facts, facts_params())
    assert pre["reseed_required"] and pre["problems"] == [], pre["problems"]
    assert pre["source"]["log_bin"] and pre["source"]["server_id"] == 1 and pre["replica"]["server_id"] == 2
    assert pre["replica"]["replicate_ignore_table"] == IGNORED
    assert pre["replication_user_grants"]["'repl'@'127.0.0.1'"][0].startswith(
        "GRANT REPLICATION SLAVE ON *.*"
    )
    seeded_and_running(src, dst)
    health = with_pair(src, dst, gather_facts, facts_params(mode="health"))
    assert health["healthy"] and not health["reseed_required"], health["problems"]
    assert health["io_running"] == "Yes" and health["sql_running"] == "Yes" and health["seconds_behind"] == 0
    # a wrongly granted replication user is reported
    src.sql("GRANT SELECT ON app.* TO 'repl'@'127.0.0.1'")
    src.sql("CREATE USER 'repl'@'%' IDENTIFIED BY 'x'")
    src.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'")
    bad = with_pair(src, dst, gather_facts, facts_params(mode="health"))
    message = " ".join(bad["problems"])
    assert not bad["healthy"] and "SELECT ON app.*" in message and "'repl'@'%' exists" in message


def test_purged_binlog_means_reseed(pair):
    src, dst = pair
    seeded_and_running(src, dst)
    with_replica(dst, ensure_replica, replica_params(src, state="stopped"))
    src.sql("FLUSH BINARY LOGS")
    src.sql("INSERT INTO app.items (name) VALUES ('lost')")
    src.sql("FLUSH BINARY LOGS")
    newest = src.sql("SHOW MASTER STATUS")[0][0]
    src.sql(f"PURGE BINARY LOGS TO '{newest}'")
    facts = with_pair(src, dst, gather_facts, facts_params(fail_on_problems=False))
    assert facts["reseed_required"]
    assert any(c["name"] == "binlog_available" and not c["ok"] for c in facts["checks"])


def test_checksum_detects_a_difference(pair):
    src, dst = pair
    seeded_and_running(src, dst)
    dst.sql("UPDATE app.items SET name = 'tampered' WHERE id = 3")
    src.sql("CREATE TABLE app.newer (id INT PRIMARY KEY) ENGINE=InnoDB")
    with_replica(dst, ensure_replica, replica_params(src, state="stopped"))
    src.sql("CREATE TABLE app.unseen (id INT PRIMARY KEY) ENGINE=InnoDB")
    dst.sql("START SLAVE SQL_THREAD")  # IO thread stopped: app.unseen never arrives
    conn_params = dict(databases=["app"], ignore_tables=IGNORED, wait_timeout=2, retries=1)
    with pytest.raises(Exception, match="did not reach the source position"):
        with_pair(src, dst, compare_tables, conn_params)
    dst.sql("START SLAVE")
    result = with_pair(src, dst, compare_tables, dict(conn_params, wait_timeout=60))
    assert result["mismatched"] == ["app.items"]
    assert result["missing_on_replica"] == []
    portable = with_pair(src, dst, compare_tables, dict(conn_params, wait_timeout=60, method="row_hash"))
    assert portable["mismatched"] == ["app.items"] and portable["compared"] == 3
    dst.sql("UPDATE app.items SET name = 'item-3' WHERE id = 3")
    repaired = with_pair(src, dst, compare_tables, dict(conn_params, wait_timeout=60, method="row_hash"))
    assert repaired["mismatched"] == [] and repaired["tables"][0]["source"].startswith("200:")
    assert {t["table"]: t["attempts"] for t in result["tables"]}["app.items"] == 2
    dst.sql("DROP TABLE app.newer")
    missing = with_pair(src, dst, compare_tables, dict(conn_params, wait_timeout=60))
    assert "app.newer" in missing["missing_on_replica"]


# -- faults ----------------------------------------------------------------------------------
def test_same_server_id_is_refused_with_a_clear_message(mariadb_factory):
    src = mariadb_factory("source", server_id=1)
    dst = mariadb_factory("replica", server_id=1)
    facts = with_pair(src, dst, gather_facts, dict(mode="preflight", databases=[], skip_checks=[]))
    assert not facts["healthy"]
    assert any("same server_id 1" in p for p in facts["problems"])


def test_malformed_ignore_table_fails_before_anything(pair, tmp_path):
    src, _ = pair
    with pytest.raises(SeedError, match="'seafile_Repo'"):
        run_seed(
            seed_params(src, mode="file", dest=str(tmp_path / "x.sql.gz"), ignore_tables=["seafile_Repo"])
        )
    assert os.listdir(tmp_path) == ["source", "replica"] or not (tmp_path / "x.sql.gz").exists()
    assert not any(n.startswith(".x.sql") for n in os.listdir(tmp_path))


def test_unreachable_source(tmp_path):
    from tests.lib.ports import free_port

    params = dict(
        login_host="127.0.0.1",
        login_port=free_port(),
        login_user="root",
        login_password=canary.canary("unused-pw"),
        databases=["app"],
        mode="file",
        dest=str(tmp_path / "s.sql.gz"),
        connect_timeout=2,
        config_file=None,
    )
    with pytest.raises(SeedError, match="source unreachable: cannot connect to MySQL server root@127.0.0.1"):
        run_seed(params)
    assert os.listdir(tmp_path) == []


def test_wrong_replication_password_surfaces_io_error(pair):
    src, dst = pair
    seed = run_seed(seed_params(src, dst))
    with pytest.raises(ReplicaError) as err:
        with_replica(dst, ensure_replica,
                     replica_params(src, seed, source_password=WRONG_PW, wait_timeout=60))
    assert "Access denied for user 'repl'" in str(err.value)
    assert "1045" in str(err.value)


def _wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _seed_in_background(params, **kw):
    """run_seed in a thread: (the thread, a dict that gets "result" or "error" when it ends)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = run_seed(params, **kw)
        except SeedError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _processlist(server):
    return [(r["ID"], r["STATE"], r["INFO"]) for r in server.sessions()]


def _stall_dump_on(server, table):
    """Hold a write lock on `table` so the dump stops there, after earlier tables were streamed."""
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute(f"LOCK TABLES {table} WRITE")
    return conn


@pytest.mark.parametrize("how", ["kill_dump_process", "kill_source_server"])
def test_dump_failing_half_way(pair, tmp_path, how):
    src, dst = pair
    src.sql("CREATE TABLE app.zz_last (id INT PRIMARY KEY) ENGINE=InnoDB")
    blocker = _stall_dump_on(src, "app.zz_last")
    started = []

    def recording_popen(argv, **kw):
        proc = subprocess.Popen(argv, **kw)
        started.append((argv[0], proc))
        return proc

    mode = dict(mode="file", dest=str(tmp_path / "seed.sql.gz")) if how == "kill_dump_process" else {}
    target = None if mode else dst
    thread, outcome = _seed_in_background(seed_params(src, target, **mode), popen=recording_popen)
    try:
        _wait_for(lambda: any("metadata lock" in str(r[1]) for r in _processlist(src)), what="dump stalled")
        if how == "kill_dump_process":
            dump = next(p for name, p in started if "dump" in os.path.basename(name))
            dump.send_signal(signal.SIGKILL)
        else:
            src.proc.kill()
            src.proc.wait()
        thread.join(120)
    finally:
        try:
            blocker.close()
        except pymysql.err.Error:
            pass
    assert "error" in outcome, outcome
    message = str(outcome["error"])
    assert "seed failed" in message
    if how == "kill_dump_process":
        assert "killed by signal 9" in message
        assert os.listdir(tmp_path / "") == ["source", "replica"]  # no final file, no temp file
    else:
        assert outcome["error"].details["target_partial"] is True
        assert "PARTIAL data" in message
        assert count(dst, "app.items") == 200  # the table before the stall did arrive: partial for real


def _module_process(module, args, tmp_path):
    """Run a module file as its own process, as Ansible would (args file with ANSIBLE_MODULE_ARGS)."""
    args_file = tmp_path / f"{module}-args.json"
    canary.write_private(args_file, json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    launcher = textwrap.dedent(f"""
        import runpy, sys, ansible.module_utils
        ansible.module_utils.__path__.append({os.path.join(TOP, "plugins", "module_utils")!r})
        runpy.run_path({os.path.join(TOP, "library", module + ".py")!r}, run_name='__main__')
    """)
    # its temporary files (the client option file) go to the test's directory: a process killed
    # with SIGKILL runs no cleanup, and they must not pile up in /tmp run after run
    return subprocess.Popen(
        [sys.executable, "-c", launcher, str(args_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


def test_lock_released_when_the_module_process_is_killed(pair, tmp_path):
    src, dst = pair
    # enough data that the dump cannot finish while its consumer is stalled
    src.sql(
        "INSERT INTO app.items (name, payload) SELECT 'bulk', REPEAT('y', 2000) FROM seq_1_to_6000", db="app"
    )
    # stall the consumer: the import blocks on a locked table on the target
    dst.sql("CREATE DATABASE app")
    dst.sql("CREATE TABLE app.items (id INT PRIMARY KEY)")
    target_blocker = _stall_dump_on(dst, "app.items")
    args = dict(seed_params(src, dst, consistency="lock"))
    proc = _module_process("mysql_consistent_seed", args, tmp_path)
    try:
        _wait_for(
            lambda: (
                any(
                    "FLUSH TABLES WITH READ LOCK" in str(r[2]) or "SELECT /*!40001" in str(r[2])
                    for r in _processlist(src)
                )
                or proc.poll() is not None
            ),
            what="dump running",
        )
        assert proc.poll() is None, proc.communicate()
        _wait_for(lambda: any("metadata lock" in str(r[1]) for r in _processlist(dst)), what="import stalled")
        # the global read lock is held: a writer gives up
        writer = src.connect()
        with writer.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 1")
            with pytest.raises(pymysql.err.OperationalError) as err:
                cur.execute("INSERT INTO app.items (name) VALUES ('blocked')")
            assert err.value.args[0] == 1205
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # the lock is gone with the process: the same writer now succeeds
            cur.execute("SET SESSION lock_wait_timeout = 30")
            cur.execute("INSERT INTO app.items (name) VALUES ('after kill')")
        writer.close()
        _wait_for(
            lambda: not any("dump" in str(r[2]).lower() or "40001" in str(r[2]) for r in _processlist(src)),
            what="dump session gone",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        target_blocker.close()


def _run_ignoring_errors(conn, statement):
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    except pymysql.err.Error:
        pass  # killed by the test's cleanup


def test_long_running_query_is_refused(pair, tmp_path):
    src, _ = pair
    sleeper = src.connect()
    sleeper_id = sleeper.thread_id()
    thread = threading.Thread(target=_run_ignoring_errors, args=(sleeper, "SELECT SLEEP(30)"))
    thread.start()
    try:
        _wait_for(
            lambda: any(
                r["ID"] == sleeper_id and int(r["TIME"] or 0) >= 2
                for r in src.sessions()
            ),
            what="a 2 s old query",
        )
        with pytest.raises(SeedError) as err:
            run_seed(seed_params(src, mode="file", dest=str(tmp_path / "s.sql.gz"), max_query_seconds=2))
        message = str(err.value)
        assert "refusing to seed" in message and f"id {sleeper_id} user root" in message
        assert "SLEEP(30)" in message
        assert not (tmp_path / "s.sql.gz").exists()
    finally:
        src.sql(f"KILL {sleeper_id}")
        thread.join()
        sleeper.close()


def test_lock_wait_timeout_kills_a_waiting_dump(pair, tmp_path):
    """FTWRL queued behind a running query: after lock_wait_timeout the dump is killed, writers resume."""
    src, _ = pair
    sleeper = src.connect()
    sleeper_id = sleeper.thread_id()
    thread = threading.Thread(
        target=_run_ignoring_errors,
        args=(sleeper, "UPDATE app.items SET name = 'slow' WHERE id = 1 AND SLEEP(20) = 0"),
    )
    thread.start()
    try:
        _wait_for(
            lambda: any(
                r["ID"] == sleeper_id and re.match(r"UPDATE.*SLEEP\(20\)", str(r["INFO"] or ""))
                for r in src.sessions()
            ),
            what="the long query",
        )
        with pytest.raises(SeedError) as err:
            run_seed(
                seed_params(
                    src,
                    mode="file",
                    dest=str(tmp_path / "s.sql.gz"),
                    consistency="lock",
                    lock_wait_timeout=2,
                    max_query_seconds=300,
                )
            )
        message = str(err.value)
        assert "lock_wait_timeout 2s" in message and "SLEEP(20)" in message
        assert not (tmp_path / "s.sql.gz").exists()
        src.sql("INSERT INTO app.items (name) VALUES ('writers resume')")
    finally:
        src.sql(f"KILL {sleeper_id}")
        thread.join()
        sleeper.close()


# -- the real module wrappers, through ansible-playbook against localhost ---------------------
def _playbook(tmp_path, tasks, check=False):
    playbook = tmp_path / "play.yml"
    canary.write_private(playbook,
                         json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
    )
    argv = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-v",
        str(playbook),
    ]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=TOP, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{") :])
    results = [t["hosts"]["localhost"] for play in out["plays"] for t in play["tasks"]]
    return proc, results


def test_modules_through_ansible_check_mode_and_no_log(pair, tmp_path):
    src, dst = pair
    seed_task = {
        "name": "seed",
        "mysql_consistent_seed": dict(seed_params(src, dst, config_file=None)),
        "register": "seed",
    }
    replica_task = {
        "name": "replica",
        "mysql_replica": dict(
            local(dst),
            source_host="127.0.0.1",
            source_port=src.port,
            source_user="repl",
            source_password=REPL_PASSWORD,
            source_log_file="{{ seed.binlog_file }}",
            source_log_pos="{{ seed.binlog_position }}",
            max_lag_seconds=5,
        ),
    }
    facts_task = {
        "name": "facts",
        "mysql_replication_facts": dict(
            local(dst),
            **login(src, "source"),
            mode="health",
            databases=["app"],
            ignore_tables=IGNORED,
            replication_user="repl",
            replication_host="127.0.0.1",
        ),
    }
    checksum_task = {
        "name": "checksum",
        "mysql_table_checksum": dict(
            local(dst), **login(src, "source"), databases=["app"], ignore_tables=IGNORED
        ),
    }

    proc, results = _playbook(tmp_path, [seed_task], check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert results[0]["check_mode"] is True and results[0]["consistency"] == "single_transaction"
    assert dst.sql("SHOW DATABASES LIKE 'app'") == ()  # check mode dumped nothing

    proc, results = _playbook(tmp_path, [seed_task, replica_task, facts_task, checksum_task])
    assert proc.returncode == 0, proc.stdout[-3000:]
    seed, replica, facts, checksum = results
    assert seed["binlog_file"] and seed["changed"]
    assert replica["changed"] and replica["status"]["sql_running"] == "Yes"
    assert replica["diff"]["after"]["source_user"] == "repl"
    assert facts["healthy"] and not facts["changed"]
    assert checksum["compared"] == 1 and checksum["mismatched"] == []
    for secret in (REPL_PASSWORD, ROOT_PASSWORD):
        assert secret not in proc.stdout and secret not in proc.stderr

    # second run: same seed coordinates, nothing to change
    replica_task["mysql_replica"].update(
        source_log_file=seed["binlog_file"], source_log_pos=seed["binlog_position"]
    )
    proc, results = _playbook(tmp_path, [replica_task, facts_task])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert results[0]["changed"] is False and results[0]["statements"] == []


def test_module_failure_fails_the_play(pair, tmp_path):
    src, dst = pair
    task = {
        "name": "replica",
        "mysql_replica": dict(
            local(dst),
            source_host="127.0.0.1",
            source_port=src.port,
            source_user="repl",
            source_password=canary.canary("nope-pw"),
            source_log_file="mysql-bin.000001",
            source_log_pos=4,
            wait_timeout=60,
        ),
    }
    proc, results = _playbook(tmp_path, [task])
    assert proc.returncode != 0
    assert results[0]["failed"] and "Access denied" in results[0]["msg"]
    assert "nope" not in proc.stdout


def test_awkward_password_reaches_the_clients_through_the_option_file(pair, tmp_path):
    src, dst = pair
    awkward = canary.canary("p w\"d\\#;'x")
    src.sql("CREATE USER 'dumper'@'127.0.0.1' IDENTIFIED BY %s", (awkward,))
    src.sql("GRANT ALL ON *.* TO 'dumper'@'127.0.0.1'")
    dst.sql("CREATE USER 'loader'@'localhost' IDENTIFIED BY %s", (awkward,))
    dst.sql("GRANT ALL ON *.* TO 'loader'@'localhost'")
    params = seed_params(src, dst, login_user="dumper", login_password=awkward, target_user="loader",
                         target_password=awkward)
    result = run_seed(params)
    assert result["binlog_file"] and count(dst, "app.items") == 200
    assert not any(awkward in arg for arg in result["command"])


# -- replication credentials proven before anything changes (issue 15 items 17, 18) ---------------
def test_wrong_replication_password_is_refused_before_the_dump_and_before_change_master(pair):
    src, dst = pair
    with pytest.raises(SeedError) as err:
        run_seed(seed_params(src, dst, replication_user="repl", replication_password=WRONG_PW))
    message = str(err.value)
    assert "'repl' cannot log in to the source" in message and "1045" in message
    assert "nothing was dumped" in message
    assert dst.sql("SHOW DATABASES LIKE 'app'") == ()  # nothing dumped, nothing imported
    seed = run_seed(seed_params(src, dst, replication_user="repl", replication_password=REPL_PASSWORD))
    assert seed["replication_login"]["ok"] and seed["replication_login"]["account"] == "repl@127.0.0.1"
    with_replica(dst, ensure_replica, replica_params(src, seed, verify_source_login=True))
    before = with_replica(dst, ensure_replica, replica_params(src, state="running", wait=False))["status"]
    # a rotated-but-wrong password pushed to a working replica: refused, the replica is left as it was
    wrong = replica_params(src, source_password=WRONG_PW, update_password="always", verify_source_login=True)
    with pytest.raises(ReplicaError) as err:
        with_replica(dst, ensure_replica, wrong)
    assert "the replica was not changed" in str(err.value) and "1045" in str(err.value)
    after = with_replica(dst, ensure_replica, replica_params(src, state="running", wait=False))["status"]
    assert after["io_running"] == "Yes" and after["source_user"] == before["source_user"]
    src.sql("INSERT INTO app.items (name) VALUES ('still-replicating')")
    _wait_for(lambda: count(dst, "app.items") == 201, what="the replica still replicating")


def test_health_reports_a_wrong_stored_password_while_the_io_thread_runs(pair):
    src, dst = pair
    seeded_and_running(src, dst)
    params = facts_params(mode="health", replication_password=REPL_PASSWORD, source_host="127.0.0.1",
                          source_port=src.port)
    good = with_pair(src, dst, gather_facts, params)
    assert good["healthy"], good["problems"]
    assert [c["ok"] for c in good["checks"] if c["name"] == "replication_login"] == [True]
    # the password changes on the source only: the IO thread keeps its old connection and runs on
    conn = src.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET sql_log_bin = 0")
            cur.execute(f"ALTER USER 'repl'@'127.0.0.1' IDENTIFIED BY '{CHANGED_ELSEWHERE}'")
    finally:
        conn.close()
    bad = with_pair(src, dst, gather_facts, params)
    assert bad["io_running"] == "Yes" and bad["sql_running"] == "Yes"
    assert not bad["healthy"]
    assert any("'repl' cannot log in to the source" in p and "1045" in p for p in bad["problems"]), bad
    # the inventory is right again, but the replica still holds the old password: its own check fails
    stored = dict(params, replication_password=CHANGED_ELSEWHERE, replica_stored_password=True)
    held = with_pair(src, dst, gather_facts, stored)
    assert [c["name"] for c in held["checks"] if not c["ok"]] == ["replica_stored_password"], held["problems"]
    assert "the password the REPLICA HOLDS is refused" in held["problems"][0]
    assert "1045" in held["problems"][0]
    assert REPL_PASSWORD not in json.dumps(held) and CHANGED_ELSEWHERE not in json.dumps(held)
    with_replica(dst, ensure_replica, replica_params(src, source_password=CHANGED_ELSEWHERE,
                                                     update_password="always"))
    fixed = with_pair(src, dst, gather_facts, stored)
    assert fixed["healthy"], fixed["problems"]


# -- application downtime ends at the dump's snapshot (issue 15 item 20) --------------------------
def test_snapshot_file_is_written_while_the_dump_still_runs(pair, tmp_path):
    src, dst = pair
    src.sql("CREATE TABLE app.zz_last (id INT PRIMARY KEY) ENGINE=InnoDB")
    marker = tmp_path / "seed.snapshot"
    blocker = _stall_dump_on(src, "app.zz_last")
    thread, outcome = _seed_in_background(
        seed_params(src, dst, consistency="single_transaction", snapshot_file=str(marker)))
    try:
        _wait_for(lambda: any("metadata lock" in str(r[1]) for r in _processlist(src)), what="dump stalled")
        # the dump waits on a table: its snapshot is taken, the application may start again now (the
        # seed writes the file once it has read the coordinates from the dump's output: a moment after
        # the stall shows in the processlist, while the dump still waits)
        _wait_for(marker.exists, timeout=30, what="snapshot file")
        assert json.loads(marker.read_text())["snapshot_taken"] is True
        assert oct(marker.stat().st_mode & 0o777) == "0o600"
        assert thread.is_alive()
    finally:
        blocker.close()
        thread.join(120)
    result = outcome["result"]
    assert result["snapshot_seconds"] < result["duration_seconds"]
    # an existing file is never overwritten: refused before anything is done
    with pytest.raises(SeedError, match="already exists"):
        run_seed(seed_params(src, dst, snapshot_file=str(marker)))
    # a seed that fails still writes it (snapshot_taken false), so the waiter stops waiting
    failed = tmp_path / "failed.snapshot"
    with pytest.raises(SeedError):
        run_seed(seed_params(src, dst, replication_user="repl", replication_password=WRONG_PW,
                             snapshot_file=str(failed)))
    assert json.loads(failed.read_text())["snapshot_taken"] is False
