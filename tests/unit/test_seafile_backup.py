"""Unit tests of the Seafile backup core (plugins/module_utils/seafile_backup.py)."""
import os
import re
import subprocess

import pytest
from ansible.module_utils.seafile_backup import (
    SeafileBackupError,
    desired_settings,
    edit_backup_section,
    generate_sync_token,
    mask_secrets,
    parse_status,
    plan_token_deletion,
    previous_last_success,
    read_backup_section,
    render_metrics,
    run_syncs,
    sync_command,
    token_fingerprint,
    validate_library_id,
    validate_library_ids,
    validate_sync_token,
    validate_url,
)

ID1 = "f690ea2c-fe4d-459a-ba1e-165cdc6df391"
ID2 = "e2df70b5-cd80-496f-98cf-c9f038cf1307"
TOKEN = "c7a78c0210c2470e14a20a8244562ab8ad509734"
TOKEN2 = "0" * 39 + "1"

DOC_STATUS = f"""Total number of libraries: 10
Number of synchronized libraries: 7
Number of libraries waiting for sync: 0
Number of libraries syncing: 1
Number of libraries failed to sync: 2

List of syncing libraries:
{ID2}

List of libraries failed to sync:
{ID1}
{ID2.replace('e2', 'a2', 1)}
"""


# -- status --------------------------------------------------------------------------------------
def test_parse_documented_status():
    status = parse_status(DOC_STATUS)
    counts = [status[k] for k in ("total", "synchronized", "waiting", "syncing", "failed")]
    assert counts == [10, 7, 0, 1, 2]
    assert status["syncing_libraries"] == [ID2]
    assert status["failed_libraries"] == [ID1, ID2.replace("e2", "a2", 1)]
    assert status["warnings"] == []


def test_parse_empty_lists():
    text = ("Total number of libraries: 0\nNumber of synchronized libraries: 0\n"
            "Number of libraries waiting for sync: 0\nNumber of libraries syncing: 0\n"
            "Number of libraries failed to sync: 0\n\nList of syncing libraries:\n\n"
            "List of libraries failed to sync:\n")
    status = parse_status(text)
    assert status["syncing_libraries"] == [] and status["failed_libraries"] == []
    assert status["total"] == 0


def test_parse_many_ids_and_uppercase():
    ids = [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(500)]
    text = DOC_STATUS.split("List of libraries failed to sync:")[0] + "List of libraries failed to sync:\n"
    text = text.replace("failed to sync: 2", "failed to sync: 500").replace("libraries: 10", "libraries: 508")
    text += "\n".join(i.upper() for i in ids) + "\n"
    status = parse_status(text)
    assert status["failed_libraries"] == ids
    assert status["warnings"] == []


def test_count_mismatch_is_a_warning_not_an_error():
    status = parse_status(DOC_STATUS.replace("failed to sync: 2", "failed to sync: 3"))
    assert any("failed count 3" in w for w in status["warnings"])


@pytest.mark.parametrize("bad, message", [
    (DOC_STATUS.replace("libraries: 10", "libraries: ten"), "not a number"),
    (DOC_STATUS.replace(f"{ID1}\n", "not-a-library\n"), "not a library id"),
    (DOC_STATUS.replace("Number of libraries waiting for sync: 0\n", ""),
     "missing: Number of libraries waiting"),
    (DOC_STATUS.replace("List of syncing libraries:\n", ""), "unexpected text"),
    (DOC_STATUS.split("List of syncing")[0], "missing: List of syncing libraries"),
    ("", "missing"),
    ("Error: cannot connect to seafile daemon\n", "unexpected text"),
    (DOC_STATUS + "List of syncing libraries:\n", "appears twice"),
    (DOC_STATUS + "Total number of libraries: 3\n", "after the lists"),
])
def test_parse_malformed_status_fails_clearly(bad, message):
    with pytest.raises(SeafileBackupError, match=message):
        parse_status(bad)


# -- input validation ----------------------------------------------------------------------------
def test_token_validation_and_generation():
    assert validate_sync_token(TOKEN) == TOKEN
    token = generate_sync_token()
    assert re.fullmatch(r"[0-9a-f]{40}", token)
    assert generate_sync_token() != token
    assert generate_sync_token(b"x") == "11f6ad8ec52a2984abaafd7c3b516503785c2072"


@pytest.mark.parametrize("bad", [TOKEN[:-1], TOKEN + "0", TOKEN.upper(), "g" * 40, "", None, 12,
                                 " " + TOKEN[1:]])
def test_malformed_token_rejected_without_echoing_it(bad):
    with pytest.raises(SeafileBackupError) as info:
        validate_sync_token(bad)
    if isinstance(bad, str) and bad:
        assert bad not in str(info.value)


def test_fingerprint_distinguishes_without_disclosing():
    assert token_fingerprint(TOKEN) != token_fingerprint(TOKEN2)
    assert TOKEN not in token_fingerprint(TOKEN)
    assert token_fingerprint(None) is None


@pytest.mark.parametrize("url", ["http://backup-server", "https://backup.example.org:8443/seafile",
                                 "http://10.0.0.2:8082"])
def test_good_urls(url):
    assert validate_url(url) == url


@pytest.mark.parametrize("url", ["backup-server", "ftp://backup", "http://", "https:///x", "http://a b",
                                 "http://host:99999", "", None, "http://host/?q=1"])
def test_bad_urls(url):
    with pytest.raises(SeafileBackupError, match="backup_url"):
        validate_url(url, "backup_url")


def test_library_ids():
    assert validate_library_id(ID1.upper()) == ID1
    assert validate_library_ids([ID1, ID2, ID1.upper()]) == [ID1, ID2]
    assert validate_library_ids([]) == []
    for bad in ["x", ID1[:-1], ID1 + "0", ID1.replace("-", ""), "'; DROP TABLE RepoUserToken; --"]:
        with pytest.raises(SeafileBackupError, match="not a UUID|not library ids"):
            validate_library_ids([ID1, bad])
    with pytest.raises(SeafileBackupError, match="must be a list"):
        validate_library_ids(ID1)


def test_desired_settings():
    assert desired_settings("primary", backup_url="http://b", sync_token=TOKEN) == {
        "backup_url": "http://b", "sync_token": TOKEN}
    assert desired_settings("backup", primary_url="https://p", sync_token=TOKEN) == {
        "primary_url": "https://p", "sync_token": TOKEN, "sync_poll_interval": "1"}
    assert desired_settings("backup", primary_url="https://p", sync_token=TOKEN,
                            sync_poll_interval=3)["sync_poll_interval"] == "3"
    for kwargs in ({"sync_poll_interval": 0}, {"sync_poll_interval": "1.5"}, {"sync_token": "abc"},
                   {"primary_url": "p"}):
        args = dict(primary_url="https://p", sync_token=TOKEN)
        args.update(kwargs)
        with pytest.raises(SeafileBackupError):
            desired_settings("backup", **args)
    with pytest.raises(SeafileBackupError, match="role"):
        desired_settings("both", backup_url="http://b", sync_token=TOKEN)


# -- seafile.conf [backup] section ---------------------------------------------------------------
CONF = """[fileserver]
port=8082
# keep   this    comment   exactly

[database]
type = mysql
host = 127.0.0.1
password = s3cret=with=equals

[quota]
default = 2
"""


def outside_backup(text):
    """Everything except the [backup] section, for byte-for-byte comparison."""
    return re.sub(r"(?ms)^\[backup\][^\[]*", "", text)


def test_section_appended_when_missing_rest_byte_for_byte():
    settings = {"backup_url": "http://backup-server", "sync_token": TOKEN}
    out = edit_backup_section(CONF, settings)
    assert out.startswith(CONF)
    assert out.endswith(f"\n[backup]\nbackup_url = http://backup-server\nsync_token = {TOKEN}\n")
    assert read_backup_section(out) == settings
    assert edit_backup_section(out, settings) == out  # idempotent


def test_section_in_the_middle_edited_in_place():
    text = CONF.replace("[quota]", f"[backup]\n# set by ops\nbackup_url=http://old\nsync_token = {TOKEN}\n"
                                   "extra_key = kept\n\n[quota]")
    out = edit_backup_section(text, {"backup_url": "https://new", "sync_token": TOKEN})
    assert outside_backup(out) == outside_backup(text)
    assert ("# set by ops\nbackup_url = https://new\nsync_token = " + TOKEN
            + "\nextra_key = kept\n\n[quota]") in out
    assert out.count("[backup]") == 1


def test_unchanged_value_keeps_its_original_spelling():
    text = f"[backup]\nbackup_url=http://b\nsync_token={TOKEN}\n"
    assert edit_backup_section(text, {"backup_url": "http://b", "sync_token": TOKEN}) == text


def test_missing_keys_added_after_last_key_and_other_side_removed():
    text = "[general]\nx = 1\n\n[backup]\nprimary_url = http://p\nsync_poll_interval = 3\n\n[other]\ny = 2\n"
    out = edit_backup_section(text, {"backup_url": "http://b", "sync_token": TOKEN},
                              remove_keys=("primary_url", "sync_poll_interval"))
    assert out == (f"[general]\nx = 1\n\n[backup]\nbackup_url = http://b\nsync_token = {TOKEN}\n"
                   "\n[other]\ny = 2\n")


def test_duplicate_key_dropped_and_crlf_kept():
    text = "[a]\r\nk = v\r\n[backup]\r\nsync_token = aaa\r\nsync_token = bbb\r\n"
    out = edit_backup_section(text, {"sync_token": TOKEN})
    assert out == f"[a]\r\nk = v\r\n[backup]\r\nsync_token = {TOKEN}\r\n"


def test_file_without_final_newline_and_empty_file():
    expected = f"[a]\nk = v\n\n[backup]\nsync_token = {TOKEN}\n"
    assert edit_backup_section("[a]\nk = v", {"sync_token": TOKEN}) == expected
    assert edit_backup_section("", {"sync_token": TOKEN}) == f"[backup]\nsync_token = {TOKEN}\n"
    assert edit_backup_section("[backup]", {"sync_token": TOKEN}) == f"[backup]\nsync_token = {TOKEN}\n"
    settings = {"backup_url": "http://b", "sync_token": TOKEN}
    assert (edit_backup_section("[backup]\nbackup_url = http://b", settings)
            == f"[backup]\nbackup_url = http://b\nsync_token = {TOKEN}\n")


def test_two_backup_sections_refused():
    with pytest.raises(SeafileBackupError, match="more than one"):
        edit_backup_section("[backup]\na = 1\n[backup]\nb = 2\n", {"sync_token": TOKEN})


def test_absent_removes_only_the_section():
    text = CONF.replace("[quota]", f"[backup]\nsync_token = {TOKEN}\n\n[quota]")
    assert edit_backup_section(text, {}, state="absent") == CONF
    assert edit_backup_section(CONF, {}, state="absent") == CONF


def test_non_utf8_bytes_survive_roundtrip():
    raw = b"[general]\nname = caf\xe9\n"
    text = raw.decode("utf-8", "surrogateescape")
    out = edit_backup_section(text, {"sync_token": TOKEN})
    assert out.encode("utf-8", "surrogateescape").startswith(raw)


def test_mask_secrets():
    masked = mask_secrets(f"[backup]\nsync_token = {TOKEN}\nbackup_url = http://b\n")
    assert TOKEN not in masked and "<secret sha256:" in masked and "backup_url = http://b" in masked



def test_mask_secrets_masks_every_secret_bearing_key_in_every_section():
    text = (
        "[fileserver]\nport=8082\nweb_token_expire_time = 7200\n"
        "[database]\r\nuser = seafile\r\npassword = p=w;#x\r\n;password: old-pw\r\n"
        "[commit_object_backend]\nkey_id = AKIAEXAMPLE\nkey = s3-secret\nsse_c_key=cust-key\n"
        "[notification]\njwt_private_key = jwt-secret\n"
        "[other]\nDB_PASSWORD_FILE = /p\napi_secret_value = v\nempty_password =\n"
        f"[backup]\nsync_token = {TOKEN}\n"
    )
    masked = mask_secrets(text)
    for secret in ("p=w;#x", "old-pw", "s3-secret", "cust-key", "jwt-secret", "/p", "= v", TOKEN):
        assert secret not in masked, secret
    assert "password = <secret>\r\n;password: <secret>\r\n" in masked
    assert "sse_c_key=<secret>\n" in masked and f"<secret {token_fingerprint(TOKEN)}>" in masked
    # not secrets: shown as they are
    for shown in ("port=8082", "web_token_expire_time = 7200", "user = seafile", "key_id = AKIAEXAMPLE",
                  "empty_password =\n"):
        assert shown in masked, shown


# -- sync ----------------------------------------------------------------------------------------
def test_sync_command_is_an_argument_list():
    assert sync_command("/x/seaf-backup-cmd.sh", ID1) == ["/x/seaf-backup-cmd.sh", "sync", ID1]
    assert sync_command("/x/s.sh", ID1, force=True) == ["/x/s.sh", "sync", "--force", ID1]


def test_run_syncs_reports_each_library_and_continues_after_failure():
    calls = []

    def runner(argv):
        calls.append(argv)
        return (1, "", "corrupt") if argv[-1] == ID1 else (0, "done", "")

    outcomes = run_syncs(runner, "s", [ID1, ID2])
    assert [o["result"] for o in outcomes] == ["failed", "ok"]
    assert outcomes[0]["stderr"] == "corrupt" and len(calls) == 2


def test_run_syncs_validates_all_ids_before_running_any():
    calls = []
    with pytest.raises(SeafileBackupError):
        run_syncs(lambda argv: calls.append(argv) or (0, "", ""), "s", [ID1, "nope"])
    assert calls == []


def test_run_syncs_against_the_standin(tmp_path):
    state = tmp_path / "state"
    state.write_text(f'total=2\nsynchronized=0\nfailed="{ID1} {ID2}"\nfail_sync="{ID1}"\ndelay=0\n')
    script = os.path.join(os.path.dirname(__file__), "..", "standins", "seaf-backup-cmd.sh")
    env = dict(os.environ, SEAF_BACKUP_STANDIN_STATE=str(state))

    def runner(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    first = run_syncs(runner, script, [ID1, ID2])
    assert [o["result"] for o in first] == ["failed", "ok"]
    forced = run_syncs(runner, script, [ID1], force=True)
    assert forced[0]["result"] == "ok"
    status = parse_status(runner([script, "status"])[1])
    assert status["failed_libraries"] == [] and status["synchronized"] == 2


# -- failover SQL --------------------------------------------------------------------------------
def test_plan_token_deletion_is_parameterised():
    plan = plan_token_deletion("seafile_db", [ID1, ID2, ID1])
    sql, args = plan["delete"]
    assert sql == "DELETE FROM `seafile_db`.`RepoUserToken` WHERE repo_id IN (%s, %s)"
    assert args == [ID1, ID2]
    assert ID1 not in sql and ID1 not in plan["select"][0]
    assert plan_token_deletion("seafile-db", [])["delete"] is None


@pytest.mark.parametrize("database, ids", [("seafile`; DROP", [ID1]), ("seafile_db", ["' OR 1=1 --"])])
def test_plan_token_deletion_rejects_injection(database, ids):
    with pytest.raises(SeafileBackupError):
        plan_token_deletion(database, ids)


# -- metrics -------------------------------------------------------------------------------------
def test_metrics_success_and_carry_over():
    status = parse_status(DOC_STATUS)
    repl = {"healthy": True, "io_running": "Yes", "sql_running": "Yes", "seconds_behind": 4}
    first = render_metrics(1000.0, True, status, repl)
    assert 'seafile_backup_libraries{state="failed"} 2' in first
    assert "seafile_backup_replication_lag_seconds 4.0" in first
    assert "seafile_backup_replication_io_running 1" in first
    assert previous_last_success(first) == 1000.0
    failed = render_metrics(1600.0, False, None, None, previous_text=first)
    assert "seafile_backup_check_success 0" in failed and "seafile_backup_status_up 0" in failed
    assert "seafile_backup_last_success_timestamp_seconds 1000.0" in failed
    assert "seafile_backup_seconds_since_last_success 600.0" in failed
    assert "seafile_backup_libraries{" not in failed
    never = render_metrics(5.0, False, status, {"healthy": False, "io_running": "Connecting",
                                                "sql_running": "No", "seconds_behind": None})
    assert "seafile_backup_replication_io_running 0" in never
    assert "seafile_backup_replication_sql_running 0" in never
    assert "seafile_backup_replication_healthy 0" in never
    assert "seafile_backup_seconds_since_last_success NaN" in never
    assert "seafile_backup_replication_lag_seconds NaN" in never
    assert "last_success_timestamp_seconds" not in never


def test_metrics_pass_promtool(tmp_path):
    promtool = "/usr/bin/promtool"
    if not os.path.exists(promtool):
        pytest.skip("promtool not installed (scripts/setup.sh installs prometheus)")
    status = parse_status(DOC_STATUS)
    for text in (render_metrics(1000.0, True, status, {"healthy": True, "seconds_behind": 0}),
                 render_metrics(1000.0, False, None, None, "garbage")):
        proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
