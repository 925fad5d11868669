"""The pure parts of the database restore (btw_db): the guard, the load commands, the dump's own list
of objects and the check against it; and, with a recording runner, that a restore never removes a
file it did not create and changes nothing when it is refused."""

import importlib.util
import json
import os

import pytest
import yaml
from ansible.module_utils import btw_db
from ansible.module_utils.testing import patch_module_args

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MYSQLDUMP = """\
-- Table structure for table `odd``name`
DROP TABLE IF EXISTS `odd``name`;
CREATE TABLE `odd``name` (
  `id` int(11) DEFAULT NULL
) ENGINE=InnoDB;
DROP SEQUENCE IF EXISTS `s`;
CREATE SEQUENCE `s` start with 1 minvalue 1 maxvalue 9223372036854775806 increment by 1 cache 1000 nocycle;
INSERT INTO `t` VALUES (1,'CREATE TABLE `fake` (')
-- Temporary table structure for view `v`
/*!50001 CREATE VIEW `v` AS SELECT
 1 AS `id` */;
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */
/*!50001 VIEW `v` AS select `t`.`id` AS `id` from `t` */;
"""

PG_SQL = '''\
CREATE SCHEMA "my schema";
CREATE TABLE "my schema"."odd ""name""" (
    x integer
);
CREATE TABLE public.items (
CREATE UNLOGGED TABLE public.scratch (
CREATE SEQUENCE public.items_id_seq
    START WITH 1
CREATE VIEW public.v AS
 SELECT 1;
CREATE MATERIALIZED VIEW public.mv AS
ALTER TABLE public.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.events_id_seq
CREATE FUNCTION public.f() RETURNS integer
COPY public.items (id) FROM stdin;
'''


def test_objects_the_dumps_create():
    assert btw_db.mysql_dump_objects(MYSQLDUMP) == {"table odd`name", "sequence s", "view v"}
    assert btw_db.pg_dump_objects([line.encode() + b"\n" for line in PG_SQL.splitlines()]) == {
        'table my schema.odd "name"',
        "table public.items",
        "table public.scratch",
        "sequence public.items_id_seq",
        "sequence public.events_id_seq",
        "view public.v",
        "materialized view public.mv",
    }
    script = 'CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE "Odd Role";\n'
    assert btw_db.pg_globals_roles(script) == {"postgres", "Odd Role"}


def test_objects_of_a_database_from_the_catalog_rows():
    rows = [["SCHEMA", "app"], ["BASE TABLE", "t"], ["VIEW", "v"], ["SEQUENCE", "s"], ["PROCEDURE", "p"]]
    rows.append(["EVENT", "nightly"])
    found = btw_db.mysql_objects(rows)
    assert found == {"table t", "view v", "sequence s", "procedure p", "event nightly"}
    assert btw_db.relations(found) == {"table t", "view v", "sequence s"}
    rows = [
        ["r", "public", "items"],
        ["m", "public", "mv"],
        ["S", "public", "seq"],
        ["function", "public", "f"],
    ]
    rows.append(["schema", "audit", ""])
    found = btw_db.pg_objects(rows)
    assert found == {
        "table public.items",
        "materialized view public.mv",
        "sequence public.seq",
        "function public.f",
        "schema audit",
    }
    assert btw_db.relations(found) == {
        "table public.items",
        "materialized view public.mv",
        "sequence public.seq",
    }


def test_compare_objects_reports_missing_and_other():
    check = btw_db.compare_objects({"table a", "view b"}, {"table a", "table kept"})
    assert check["expected"] == 2 and check["found"] == 1 and not check["ok"]
    assert check["missing"] == ["view b"] and check["other"] == ["table kept"]
    assert "dump creates" in check["checked"]
    assert btw_db.compare_objects({"table a"}, {"table a"})["ok"]


@pytest.mark.parametrize(
    "exists, objects, create, force, expected",
    [
        (False, set(), True, False, {"create": True, "replace": False}),
        (False, set(), True, True, {"create": True, "replace": False}),
        (True, set(), False, False, {"create": False, "replace": False}),
        (True, {"table t"}, False, True, {"create": False, "replace": True}),
        (True, set(), False, True, {"create": False, "replace": False}),
        (True, {"table t"}, False, False, "live is not empty \\(1 object\\(s\\): table t\\).*set force"),
        (True, set(), True, False, "live already exists and create_database is set"),
        (True, {"table t"}, True, False, "already exists.*not empty: that also needs force"),
        (True, {"table t"}, True, True, "already exists and create_database is set: restore into a new name"),
        (False, set(), False, False, "live does not exist: set create_database"),
        (False, set(), False, True, "live does not exist"),
    ],
)
def test_restore_plan(exists, objects, create, force, expected):
    if isinstance(expected, str):
        with pytest.raises(btw_db.BtwDbError, match=expected):
            btw_db.restore_plan("live", exists, objects, create, force)
    else:
        plan = btw_db.restore_plan("live", exists, objects, create, force)
        assert {k: plan[k] for k in expected} == expected and "live" in plan["action"]


def test_restore_plan_names_a_few_objects_only():
    objects = {f"table t{i:02d}" for i in range(25)}
    with pytest.raises(btw_db.BtwDbError, match=r"25 object\(s\): table t00, .*table t09, \.\.\.\)") as err:
        btw_db.restore_plan("live", True, objects, False, False)
    assert "t10" not in str(err.value)


def test_load_commands(tmp_path):
    conn = {"host": "db1", "port": 5432, "user": "restore", "password": "s3cret"}
    argv, env, stdin = btw_db.restore_command("pg_dump", "/d/x.dump", "live", conn, None, "/usr/bin")
    assert argv[0] == "/usr/bin/pg_restore" or argv[0].endswith("pg_restore")
    assert "--single-transaction" in argv and "--exit-on-error" in argv and "--clean" not in argv
    assert (
        argv[-3:] == ["--dbname", "live", "/d/x.dump"] and stdin is None and env == {"PGPASSWORD": "s3cret"}
    )
    argv, _env, _stdin = btw_db.restore_command("pg_dump", "/d/x.dump", "live", conn, None, replace=True)
    assert argv[argv.index("--clean") + 1] == "--if-exists"
    argv, _env, _stdin = btw_db.restore_command("pg_globals", "/d/g.sql", None, conn, None)
    assert "--no-psqlrc" in argv and argv[-4:] == ["--dbname", "postgres", "--file", "/d/g.sql"]
    argv, env, stdin = btw_db.restore_command("mysqldump", "/d/x.sql", "live", conn, "/private/client.cnf")
    assert argv[1] == "--defaults-file=/private/client.cnf" and argv[-2:] == ["--", "live"]
    assert stdin == "/d/x.sql" and env == {} and not any("s3cret" in a for a in argv)


def test_globals_load_errors():
    stderr = (
        'psql:/t/g.sql:14: ERROR:  role "postgres" already exists\n'
        "psql:/t/g.sql:20: ERROR:  permission denied to create role\n"
        "psql:/t/g.sql:22: NOTICE:  something\n"
    )
    tolerated, fatal = btw_db.globals_load_errors(stderr)
    assert tolerated == ['psql:/t/g.sql:14: ERROR:  role "postgres" already exists']
    assert fatal == ["psql:/t/g.sql:20: ERROR:  permission denied to create role"]


class FakeMysql:
    """A recording runner standing in for the mysql client and rdiff-backup: the target holds
    state_rows before the load, after_load_rows after it, and nothing but its schema once a DROP ran."""

    def __init__(self, state_rows, load_rc=0, after_load_rows=None):
        self.calls = []
        self.state_rows = state_rows
        self.load_rc = load_rc
        self.after_load_rows = after_load_rows or []
        self.loaded = self.dropped = False

    def run(self, argv, env=None, cwd=None, stdout_path=None, stdin_path=None):
        self.calls.append(list(argv))
        if argv[0] == "rdiff-backup":
            with open(argv[-1], "w") as f:
                f.write("CREATE TABLE `t` (\n  `id` int\n);\n")
            return 0, "", ""
        if stdin_path:
            self.loaded = True
            return self.load_rc, "", "ERROR 1146 (42S02) at line 9: Table 'x.y' doesn't exist\n"
        sql = argv[argv.index("--execute") + 1]
        if sql.startswith("SELECT 'SCHEMA'"):
            rows = self.after_load_rows if self.loaded else self.state_rows
            if self.dropped:
                rows = [r for r in rows if r[0] == "SCHEMA"]
            return 0, "".join("\t".join(r) + "\n" for r in rows), ""
        self.dropped = self.dropped or "DROP" in sql
        return 0, "", ""

    def statements(self):
        return [c[c.index("--execute") + 1] for c in self.calls if "--execute" in c]


@pytest.fixture
def backup(monkeypatch, tmp_path):
    monkeypatch.setattr(btw_db, "chain_at", lambda dest, at: (os.path.join(dest, "chain-x"), 1_700_000_000.0))
    return dict(name="app", backup_type="mysqldump", root=str(tmp_path), destination="db/app")


def operator_cnf(tmp_path):
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[client]\nuser=root\npassword=op-secret\n")
    cnf.chmod(0o600)
    return cnf


def test_a_credentials_file_is_only_read(backup, tmp_path):
    cnf = operator_cnf(tmp_path)
    runner = FakeMysql([], after_load_rows=[["SCHEMA", "fresh"], ["BASE TABLE", "t"]])
    result = btw_db.db_restore(
        **backup,
        target_database="fresh",
        connection={"defaults_file": str(cnf)},
        create_database=True,
        runner=runner,
    )
    assert cnf.read_text() == "[client]\nuser=root\npassword=op-secret\n"
    mysql_calls = [c for c in runner.calls if c[0] != "rdiff-backup"]
    assert mysql_calls and all(c[1] == f"--defaults-file={cnf}" for c in mysql_calls)
    assert "CREATE DATABASE `fresh`" in runner.statements()
    assert result["created"] and result["verified"]["ok"] and result["verified"]["expected"] == 1


def test_a_refused_restore_runs_nothing_but_the_look(backup, tmp_path):
    for check_mode in (False, True):
        runner = FakeMysql([["SCHEMA", "live"], ["BASE TABLE", "t"]])
        with pytest.raises(btw_db.BtwDbError, match="live is not empty"):
            btw_db.db_restore(
                **backup,
                target_database="live",
                connection={"user": "u"},
                runner=runner,
                check_mode=check_mode,
            )
        assert len(runner.calls) == 1 and runner.statements()[0].startswith("SELECT 'SCHEMA'")


def test_a_failed_mysql_load_drops_only_the_database_it_created(backup, tmp_path):
    runner = FakeMysql([], load_rc=1)
    with pytest.raises(
        btw_db.BtwDbError, match="doesn't exist; fresh, created for this restore, was dropped"
    ):
        btw_db.db_restore(
            **backup, target_database="fresh", connection={"user": "u"}, create_database=True, runner=runner
        )
    assert runner.statements()[-1] == "DROP DATABASE IF EXISTS `fresh`"


def test_a_failed_mysql_load_empties_an_empty_target_again(backup, tmp_path):
    runner = FakeMysql(
        [["SCHEMA", "empty"]], load_rc=1, after_load_rows=[["SCHEMA", "empty"], ["BASE TABLE", "t"]]
    )
    with pytest.raises(
        btw_db.BtwDbError, match="load had created in empty was dropped again: it is empty, as it was"
    ):
        btw_db.db_restore(**backup, target_database="empty", connection={"user": "u"}, runner=runner)
    assert "DROP TABLE IF EXISTS `empty`.`t`" in runner.statements()[-2]
    assert not any("DROP DATABASE" in s for s in runner.statements())


def test_a_failed_forced_mysql_load_is_reported_partial(backup, tmp_path):
    before = [["SCHEMA", "live"], ["BASE TABLE", "orders"]]
    runner = FakeMysql(before, load_rc=1, after_load_rows=before)
    with pytest.raises(
        btw_db.BtwDbError, match=r"live is PARTIALLY restored.*0 of the dump's 1.*missing: table t"
    ):
        btw_db.db_restore(
            **backup, target_database="live", connection={"user": "u"}, force=True, runner=runner
        )
    assert not any("DROP" in s for s in runner.statements())


def test_a_load_that_leaves_out_a_table_of_the_dump_fails_the_check(backup, tmp_path):
    runner = FakeMysql([], after_load_rows=[["SCHEMA", "fresh"], ["BASE TABLE", "other"]])
    with pytest.raises(
        btw_db.BtwDbError, match=r"check failed: 1 of the 1 .* not in fresh.*fresh, created for"
    ):
        btw_db.db_restore(
            **backup, target_database="fresh", connection={"user": "u"}, create_database=True, runner=runner
        )
    assert runner.statements()[-1] == "DROP DATABASE IF EXISTS `fresh`"
    runner = FakeMysql([["SCHEMA", "empty"]], after_load_rows=[["SCHEMA", "empty"]])
    with pytest.raises(btw_db.BtwDbError, match=r"\(table t\); empty is not a complete copy of the backup"):
        btw_db.db_restore(**backup, target_database="empty", connection={"user": "u"}, runner=runner)


def test_mysql_drop_statements():
    objects = {"table odd`name", "view v", "procedure p", "function f", "event e", "sequence s", "other x"}
    assert btw_db.mysql_drop_statements("db", objects) == (
        "SET FOREIGN_KEY_CHECKS = 0; DROP VIEW IF EXISTS `db`.`v`; DROP EVENT IF EXISTS `db`.`e`; "
        "DROP FUNCTION IF EXISTS `db`.`f`; DROP PROCEDURE IF EXISTS `db`.`p`; "
        "DROP SEQUENCE IF EXISTS `db`.`s`; DROP TABLE IF EXISTS `db`.`odd``name`"
    )


# -- the module: documents what it accepts, passes force through, refuses force for a directory --------


def _load_module():
    path = os.path.join(TOP, "library", "btw_restore.py")
    spec = importlib.util.spec_from_file_location("_module_btw_restore", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_module(mod, args, capsys):
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def test_module_documents_what_it_accepts(capsys):
    mod = _load_module()
    out = _run_module(mod, {"_no_such_option": 1, "root": "/r", "destination": "d", "target": "/t"}, capsys)
    accepted = set(out["msg"].split("Supported parameters include: ")[1].rstrip(".").split(", "))
    documented = yaml.safe_load(mod.DOCUMENTATION)["options"]
    assert set(documented) == accepted
    assert documented["force"] == {
        "description": documented["force"]["description"],
        "type": "bool",
        "default": False,
    }


def test_module_passes_force_and_check_mode_to_the_core(monkeypatch, capsys):
    mod = _load_module()
    calls = []

    def fake_restore(*args, **kwargs):
        calls.append((args, kwargs))
        return {"changed": True, "action": "load", "verified": {"ok": True}}

    monkeypatch.setattr(mod, "db_restore", fake_restore)
    args = dict(
        root="/r", destination="db/shop", type="mysqldump", name="shop", target_database="shop", force=True
    )
    out = _run_module(mod, dict(args, _ansible_check_mode=True), capsys)
    assert out["changed"] and out["verified"] == {"ok": True}
    assert calls[0][1] == {"check_mode": True, "force": True}
    out = _run_module(mod, {"root": "/r", "destination": "fs/www", "target": "/t", "force": True}, capsys)
    assert out["failed"] and "force applies to database restores" in out["msg"]
