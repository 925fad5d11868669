"""The shared MySQL connection pieces: the documentation fragment agrees with the argument specs and
with each module's options, and ``connections()`` opens the servers a module needs, closes them in
every case and turns a connection failure into one fail_json message naming the server (never the
password). Real AnsibleModule objects and one real MariaDB server (tests/lib/mariadb.py)."""
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time

import pymysql
import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_connection import (
    MySQLConnectionError,
    connect,
    connection_argument_spec,
    connections,
    login_argument_spec,
    login_params,
    source_argument_spec,
)
from ansible.module_utils.testing import patch_module_args
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import get_docstring

from plugins.doc_fragments.mysql_connection import ModuleDocFragment
from tests.lib.mariadb import ROOT_PASSWORD, MariaDB
from tests.lib.ports import free_port

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MYSQL_MODULES = ["mysql_consistent_seed", "mysql_replica", "mysql_replication_facts", "mysql_table_checksum"]
SECRET = "pw-never-shown-4711"


# -- the documentation fragment ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fragment_var, spec",
    [("DOCUMENTATION", login_argument_spec()), ("SOURCE", source_argument_spec())],
)
def test_fragment_documents_exactly_the_argument_spec(fragment_var, spec):
    options = yaml.safe_load(getattr(ModuleDocFragment, fragment_var))["options"]
    assert sorted(options) == sorted(spec)
    for name, opt in spec.items():
        doc = options[name]
        assert doc["type"] == opt["type"], name
        assert doc.get("default") == opt.get("default"), name
        assert doc["description"], name
        assert opt.get("no_log", False) == name.endswith("_password"), name


def test_connection_argument_spec_is_login_then_source_then_the_modules_own():
    own = dict(databases=dict(type="list", elements="str", required=True))
    assert connection_argument_spec(**own) == dict(login_argument_spec(), **own)
    spec = connection_argument_spec(source=True, **own)
    assert list(spec) == list(login_argument_spec()) + list(source_argument_spec()) + ["databases"]
    assert spec["source_password"]["no_log"] is True and spec["login_password"]["no_log"] is True


def _module_spec(name, capsys):
    """The argument spec a module really builds: run its main() with an unknown option and read the
    'Supported parameters' of AnsibleModule's refusal."""
    path = os.path.join(TOP, "library", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_module_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    capsys.readouterr()
    args = dict(_no_such_option=1, databases=["db"], source_host="h", source_user="u", dest="/nonexistent/x",
                snapshots=[{"vg": "vg", "lv": "lv"}])
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    msg = json.loads(capsys.readouterr().out)["msg"]
    assert "Unsupported parameters" in msg, msg
    return mod, set(msg.split("Supported parameters include: ")[1].rstrip(".").split(", "))


@pytest.mark.parametrize("name", [*MYSQL_MODULES, "lvm_snapshot_lock"])
def test_each_module_documents_every_option_it_accepts(name, capsys):
    """What ansible-doc renders (module DOCUMENTATION + fragments) is what the module accepts."""
    fragment_loader.add_directory(os.path.join(TOP, "plugins", "doc_fragments"))
    doc = get_docstring(os.path.join(TOP, "library", f"{name}.py"), fragment_loader)[0]
    mod, accepted = _module_spec(name, capsys)
    raw = yaml.safe_load(mod.DOCUMENTATION)
    assert "mysql_connection" in raw["extends_documentation_fragment"]
    # The fragment's options are not written again, but for the privileges each login needs.
    assert set(raw["options"]) & set(login_argument_spec()) <= {"login_user"}
    if "mysql_connection.source" in raw["extends_documentation_fragment"]:
        assert set(raw["options"]) & set(source_argument_spec()) <= {"source_user"}
    assert set(doc["options"]) == accepted
    assert set(login_argument_spec()) <= accepted
    for option in login_argument_spec():
        assert doc["options"][option]["type"] == login_argument_spec()[option]["type"]


# -- connections() -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = MariaDB(tmp_path_factory.mktemp("conn-db"), 1)
    db.start()
    db.sql("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY %s", [SECRET])
    yield db
    db.stop()


@pytest.fixture
def make_module(tmp_path):
    """A real AnsibleModule with the login_* and source_* options; its args stay patched in for the
    test (fail_json needs them)."""
    with contextlib.ExitStack() as stack:

        def make(**params):
            params.setdefault("config_file", str(tmp_path / "no-such.cnf"))  # never the machine's ~/.my.cnf
            spec = login_argument_spec()
            spec.update(source_argument_spec())
            stack.enter_context(patch_module_args(params))
            return AnsibleModule(argument_spec=spec)

        yield make


def socket_login(server):
    return dict(login_unix_socket=server.socket, login_user="root")


def tcp_source(server, password=ROOT_PASSWORD, port=None):
    return dict(source_host="127.0.0.1", source_port=port or server.port, source_user="root",
                source_password=password)


def client_ids(server):
    """Connection ids of the server's client sessions (the caller's own excluded)."""
    return {r["ID"] for r in server.sessions() if r["COMMAND"] != "Daemon"}


def wait_closed(server, before, timeout=10):
    """The server's sessions are back to ``before`` (a closed client's session ends asynchronously)."""
    deadline = time.time() + timeout
    while client_ids(server) - before and time.time() < deadline:
        time.sleep(0.05)
    return client_ids(server) - before


def failure_of(excinfo_out):
    result = json.loads(excinfo_out)
    assert result["failed"] is True
    return result["msg"]


def test_yields_connections_in_the_order_given_and_closes_them(server, make_module):
    module = make_module(**socket_login(server), **tcp_source(server))
    before = client_ids(server)
    with connections(module, "x failed", replica="login", source="source") as (replica, source):
        seen = []
        for conn in (replica, source):
            with conn.cursor() as cur:
                cur.execute("SELECT USER() AS h")
                seen.append(cur.fetchone()["h"])
        assert len(client_ids(server) - before) == 2
    assert seen == ["root@localhost", "root@127.0.0.1"]  # login_* by socket, source_* by TCP
    assert not replica.open and not source.open
    assert wait_closed(server, before) == set()


def test_unreachable_second_server_fails_naming_it_and_closes_the_first(server, make_module, capsys):
    port = free_port()  # nothing listens there
    module = make_module(**socket_login(server), **tcp_source(server, password=SECRET, port=port))
    before = client_ids(server)
    capsys.readouterr()
    with pytest.raises(SystemExit) as excinfo:  # keeps the frames (and any unclosed connection) alive
        with connections(module, "x failed", replica="login", source="source"):
            pytest.fail("the body must not run when a server is unreachable")
    out = capsys.readouterr().out
    msg = failure_of(out)
    where = f"root@127.0.0.1:{port}"
    assert msg.startswith(f"cannot connect to the source server {where} (source_* options): (2003,"), msg
    assert SECRET not in out and "********" not in msg
    assert excinfo.value.code == 1
    assert wait_closed(server, before) == set(), "the replica connection opened first was left open"


def test_first_server_unreachable_stops_before_the_second(server, make_module, capsys):
    sock = str(server.base) + "/no-such.sock"
    module = make_module(login_unix_socket=sock, login_user="root", **tcp_source(server))
    before = client_ids(server)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        with connections(module, replica="login", source="source"):
            pytest.fail("the body must not run")
    msg = failure_of(capsys.readouterr().out)
    assert msg.startswith(f"cannot connect to the replica server root@{sock} (login_* options): (200"), msg
    assert wait_closed(server, before) == set()


def test_wrong_password_names_user_and_server_never_the_password(server, make_module, capsys):
    module = make_module(login_host="127.0.0.1", login_port=server.port, login_user="app",
                         login_password=SECRET + "-wrong")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        with connections(module, replica="login"):
            pytest.fail("the body must not run")
    out = capsys.readouterr().out
    msg = failure_of(out)
    where = f"app@127.0.0.1:{server.port}"
    assert msg.startswith(f"cannot connect to the replica server {where} (login_* options): (1045,"), msg
    assert "Access denied" in msg
    assert SECRET not in out and "********" not in msg


def test_mysql_error_in_the_body_becomes_the_failure_message(server, make_module, capsys):
    module = make_module(**socket_login(server), **tcp_source(server))
    before = client_ids(server)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        with connections(module, "reading facts failed", replica="login", source="source") as (_, src):
            with src.cursor() as cur:
                cur.execute("SELECT * FROM no_such_db.no_such_table")
    msg = failure_of(capsys.readouterr().out)
    assert msg.startswith(("reading facts failed: (1146,", "reading facts failed: (1049,")), msg
    assert wait_closed(server, before) == set()


def test_without_failure_text_a_mysql_error_propagates_and_connections_close(server, make_module):
    module = make_module(**socket_login(server))
    with pytest.raises(pymysql.err.ProgrammingError):
        with connections(module, replica="login") as (conn,):
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM no_such_db.no_such_table")
    assert not conn.open


def test_other_exceptions_and_fail_json_pass_through_and_connections_close(server, make_module, capsys):
    module = make_module(**socket_login(server), **tcp_source(server))
    with pytest.raises(ValueError, match="core bug"):
        with connections(module, "x failed", replica="login", source="source") as conns:
            raise ValueError("core bug")
    assert not any(c.open for c in conns)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        with connections(module, "x failed", replica="login", source="source") as conns:
            module.fail_json(msg="the core refused", detail=1)
    result = json.loads(capsys.readouterr().out)
    assert result["msg"] == "the core refused" and result["detail"] == 1
    assert not any(c.open for c in conns)


class CoreError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def test_core_errors_become_the_failure_with_their_details(server, make_module, capsys):
    module = make_module(**socket_login(server), **tcp_source(server))
    before = client_ids(server)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        with connections(module, "x failed", (CoreError,), replica="login", source="source") as conns:
            raise CoreError("the replica refuses", statements=["STOP SLAVE"])
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True and result["msg"] == "the replica refuses"
    assert result["statements"] == ["STOP SLAVE"]
    assert not any(c.open for c in conns)
    assert wait_closed(server, before) == set()
    with pytest.raises(SystemExit):
        with connections(module, "x failed", (ValueError,), replica="login"):
            raise ValueError("no details")
    assert json.loads(capsys.readouterr().out)["msg"] == "no details"


def test_a_connection_closed_or_killed_in_the_body_is_not_an_error(server, make_module):
    module = make_module(**socket_login(server), **tcp_source(server))
    before = client_ids(server)
    with connections(module, "x failed", replica="login", source="source") as (replica, source):
        replica.close()
        server.sql(f"KILL {source.thread_id()}")
    assert not source.open
    assert wait_closed(server, before) == set()


def test_connect_error_keeps_server_and_driver_message_apart(server):
    port = free_port()
    params = login_params(
        dict(login_host="127.0.0.1", login_port=port, login_user="u", login_password=SECRET, config_file=None)
    )
    with pytest.raises(MySQLConnectionError) as excinfo:
        connect(params)
    assert excinfo.value.where == f"u@127.0.0.1:{port}"
    assert excinfo.value.error.startswith("(2003,")
    assert str(excinfo.value) == f"cannot connect to MySQL server u@127.0.0.1:{port}: {excinfo.value.error}"
    assert SECRET not in str(excinfo.value)


# -- the modules themselves, through ansible-playbook ---------------------------------------------


def _play(tmp_path, tasks, python):
    playbook = tmp_path / "play.yml"
    for task in tasks:
        task["ignore_errors"] = True  # a test play: every task runs, each result is checked
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
            "-c", "local", "-e", f"ansible_python_interpreter={python}", str(playbook)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=TOP, check=False, timeout=300)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc.stdout + proc.stderr, [t["hosts"]["localhost"] for t in out["plays"][0]["tasks"]]


def test_modules_name_the_server_they_cannot_reach(server, tmp_path):
    port = free_port()
    cnf = str(tmp_path / "no-such.cnf")
    down = dict(source_host="127.0.0.1", source_port=port, source_user="root", source_password=SECRET)
    tasks = [
        {"mysql_replication_facts": dict(socket_login(server), config_file=cnf, **down)},
        {"mysql_table_checksum": dict(socket_login(server), config_file=cnf, databases=["mysql"], **down)},
        {"mysql_replica": dict(login_host="127.0.0.1", login_port=port, login_user="root",
                               login_password=SECRET, config_file=cnf, source_host="h", source_user="u")},
    ]
    output, results = _play(tmp_path, tasks, sys.executable)
    where = f"root@127.0.0.1:{port}"
    for result in results[:2]:
        assert result["failed"] is True
        assert result["msg"].startswith(f"cannot connect to the source server {where} (source_* options)")
    assert results[2]["failed"] is True
    assert results[2]["msg"].startswith(f"cannot connect to the replica server {where} (login_* options)")
    assert SECRET not in output


def test_modules_without_pymysql_say_so(server, tmp_path):
    bare = tmp_path / "bare-python"  # the system Python in a venv: no PyMySQL whatever the machine has
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python3")
    assert subprocess.run([python, "-c", "import pymysql"], capture_output=True, check=False).returncode != 0
    both = dict(socket_login(server), source_unix_socket=server.socket)
    tasks = [
        {"mysql_replication_facts": both},
        {"mysql_table_checksum": dict(both, databases=["mysql"])},
        {"mysql_replica": dict(socket_login(server), state="absent")},
    ]
    _, results = _play(tmp_path, tasks, python)
    for result in results:
        assert result["failed"] is True
        assert "Failed to import the required Python library (pymysql)" in result["msg"], result["msg"]


def test_a_server_of_its_own_ssl_options_keeps_them_to_itself():
    params = dict(login_unix_socket="/run/x.sock", source_host="db1", ssl_ca=None, source_ssl_ca="/ca.pem")
    assert login_params(params, "source")["ssl_ca"] == "/ca.pem"
    assert login_params(params)["ssl_ca"] is None
    shared = dict(params, ssl_ca="/shared.pem", source_ssl_ca=None)
    assert login_params(shared, "source")["ssl_ca"] == "/shared.pem" == login_params(shared)["ssl_ca"]
