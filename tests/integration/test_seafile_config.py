"""playbooks/seafile_backup_config.yml run for real (ansible-playbook, local connection) on a
two-primary cluster + one backup server whose seafile.conf files live in tmp_path."""
import json
import os
import re
import stat
import subprocess
import sys

import pytest

from tests.integration.seafile_common import TOP, run_playbook, write_inventory
from tests.lib import canary

TOKEN = canary.register("c7a78c0210c2470e14a20a8244562ab8ad509734")  # 40 lowercase hex: the format
OTHER_CONF = """[fileserver]
port=8082
# comment   kept    as is

[database]
type = mysql
password = p=w;#x
"""


@pytest.fixture
def site(tmp_path):
    hosts = {"primary1": "seafile_primary", "primary2": "seafile_primary", "backup1": "seafile_backup"}
    confs = {}
    host_vars = {}
    for host in hosts:
        conf = tmp_path / host / "seafile.conf"
        conf.parent.mkdir()
        conf.write_text(OTHER_CONF.replace("8082", f"80{len(confs)}2"))
        confs[host] = conf
        host_vars[host] = {"seafile_backup_config_conf_path": str(conf)}
    restarts = tmp_path / "restarts.log"
    all_vars = {
        "seafile_backup_config_backup_url": "http://backup.example.org",
        "seafile_backup_config_primary_url": "http://seafile.example.org",
        "seafile_backup_config_restart_command": [
            "/bin/sh", "-c", f"echo {{{{ inventory_hostname }}}} >> {restarts}"],
    }
    groups = {"seafile_primary": ["primary1", "primary2"], "seafile_backup": ["backup1"]}
    inventory = write_inventory(tmp_path / "hosts.yml", groups, host_vars, all_vars)

    class Site:
        pass

    s = Site()
    s.tmp, s.confs, s.inventory, s.restarts = tmp_path, confs, inventory, restarts
    s.groups, s.host_vars, s.all_vars = groups, host_vars, all_vars
    s.texts = lambda: {h: c.read_text() for h, c in confs.items()}
    s.restarted = lambda: sorted(restarts.read_text().split()) if restarts.exists() else []
    s.run = lambda **kw: run_playbook(tmp_path, "seafile_backup_config.yml", inventory, **kw)
    return s


def backup_section(text):
    match = re.search(r"(?ms)^\[backup\]\n(.*)", text)
    return dict(re.findall(r"^(\w+) = (.*)$", match.group(1), re.M)) if match else None


def test_configures_cluster_and_backup_then_is_idempotent(site):
    before = site.texts()
    first = site.run(verbose=True)
    assert first.rc == 0, first.out
    texts = site.texts()
    sections = {h: backup_section(t) for h, t in texts.items()}
    token = sections["backup1"]["sync_token"]
    assert re.fullmatch(r"[0-9a-f]{40}", token)
    assert sections["primary1"] == sections["primary2"] == {"backup_url": "http://backup.example.org",
                                                            "sync_token": token}
    assert sections["backup1"] == {"primary_url": "http://seafile.example.org", "sync_token": token,
                                   "sync_poll_interval": "1"}
    for host, text in texts.items():
        assert text.startswith(before[host] + "\n[backup]\n"), "the rest of seafile.conf must be kept"
    assert site.restarted() == ["backup1", "primary1", "primary2"]
    assert token not in first.out, "the sync_token must never be logged"
    assert "sync_token: generated" in first.out

    second = site.run(verbose=True)
    assert second.rc == 0, second.out
    assert second.changed() == 0, second.out
    assert site.texts() == texts, "the token must stay stable, nothing rewritten"
    assert site.restarted() == ["backup1", "primary1", "primary2"], "no restart without a change"
    assert "sync_token: backup server seafile.conf" in second.out
    assert token not in second.out


def test_only_the_changed_node_restarts_and_check_mode_shows_masked_diff(site):
    assert site.run().rc == 0
    texts = site.texts()
    token = backup_section(texts["backup1"])["sync_token"]
    preview = site.run(extra_vars={"seafile_backup_config_sync_poll_interval": 3}, check=True, diff=True)
    assert preview.rc == 0, preview.out
    assert site.texts() == texts, "check mode must not write"
    assert "+sync_poll_interval = 3" in preview.out
    assert token not in preview.out
    run = site.run(extra_vars={"seafile_backup_config_sync_poll_interval": 3})
    assert run.rc == 0, run.out
    assert backup_section(site.confs["backup1"].read_text())["sync_poll_interval"] == "3"
    assert site.confs["primary1"].read_text() == texts["primary1"]
    assert site.restarted() == ["backup1", "backup1", "primary1", "primary2"]


def test_given_token_replaces_and_is_never_logged(site):
    assert site.run().rc == 0
    run = site.run(extra_vars={"seafile_backup_config_sync_token": TOKEN}, verbose=True, diff=True)
    assert run.rc == 0, run.out
    assert {backup_section(t)["sync_token"] for t in site.texts().values()} == {TOKEN}
    assert TOKEN not in run.out


def test_existing_primary_token_is_reused_when_backup_has_none(site):
    canary.write_private(site.confs["primary1"], OTHER_CONF + f"\n[backup]\nsync_token = {TOKEN}\n")
    run = site.run()
    assert run.rc == 0, run.out
    assert {backup_section(t)["sync_token"] for t in site.texts().values()} == {TOKEN}


@pytest.mark.parametrize("extra, message", [
    ({"seafile_backup_config_sync_token": "not-a-token"}, "must be 40 lowercase hex"),
    ({"seafile_backup_config_sync_token": TOKEN.upper()}, "must be 40 lowercase hex"),
    ({"seafile_backup_config_backup_url": "backup.example.org"}, "is not an http:// or https:// URL"),
    ({"seafile_backup_config_primary_url": "ftp://seafile.example.org"}, "is not an http:// or https:// URL"),
    ({"seafile_backup_config_sync_poll_interval": 0}, "sync_poll_interval"),
])
def test_bad_input_is_refused_before_anything_changes(site, extra, message):
    before = site.texts()
    run = site.run(extra_vars=extra)
    assert run.rc != 0
    assert message in run.out, run.out
    assert site.texts() == before
    assert site.restarted() == []
    if "sync_token" in extra:
        assert extra["seafile_backup_config_sync_token"] not in run.out


def test_two_backup_servers_refused(site):
    conf = site.tmp / "backup2.conf"
    conf.write_text(OTHER_CONF)
    site.host_vars["backup2"] = {"seafile_backup_config_conf_path": str(conf)}
    groups = dict(site.groups, seafile_backup=["backup1", "backup2"])
    inventory = write_inventory(site.tmp / "hosts2.yml", groups, site.host_vars, site.all_vars)
    before = site.texts()
    run = run_playbook(site.tmp, "seafile_backup_config.yml", inventory)
    assert run.rc != 0
    assert "cannot be a cluster" in run.out and "holds 2" in run.out, run.out
    assert site.texts() == before and conf.read_text() == OTHER_CONF


def test_malformed_token_already_in_place_refused(site):
    site.confs["backup1"].write_text(OTHER_CONF + "\n[backup]\nsync_token = 1234\n")
    before = site.texts()
    run = site.run()
    assert run.rc != 0
    assert "cannot be reused" in run.out, run.out
    assert site.texts() == before


def test_missing_seafile_conf_refused(site):
    site.confs["primary2"].unlink()
    before = {h: t for h, t in ((h, c.read_text()) for h, c in site.confs.items() if c.exists())}
    run = site.run()
    assert run.rc != 0 and "does not exist on primary2" in run.out, run.out
    assert {h: c.read_text() for h, c in site.confs.items() if c.exists()} == before


def test_https_installs_the_centos_ca_bundle(site):
    pki = site.tmp / "pki"
    ca_source = site.tmp / "ca-certificates.crt"
    ca_source.write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
    extra = {
        "seafile_backup_config_backup_url": "https://backup.example.org",
        "seafile_backup_config_ca_source": str(ca_source),
        "seafile_backup_config_ca_bundle": f"{pki}/{{{{ inventory_hostname }}}}/tls/certs/ca-bundle.crt",
        "seafile_backup_config_ca_link": f"{pki}/{{{{ inventory_hostname }}}}/tls/cert.pem",
    }
    run = site.run(extra_vars=extra)
    assert run.rc == 0, run.out
    for host in ("primary1", "primary2", "backup1"):
        bundle = pki / host / "tls" / "certs" / "ca-bundle.crt"
        link = pki / host / "tls" / "cert.pem"
        assert bundle.read_text() == ca_source.read_text()
        assert link.is_symlink() and link.resolve() == bundle.resolve()
    again = site.run(extra_vars=extra)
    assert again.rc == 0 and again.changed() == 0, again.out


def test_galera_primary_needs_log_slave_updates(site, mariadb_factory):
    """Checked with mysql_replication_facts against a real MariaDB standing in for the chosen Galera node."""
    from tests.lib.mariadb import ROOT_PASSWORD

    db = mariadb_factory("galera-node")
    extra = {
        "seafile_backup_config_galera": True,
        "seafile_backup_config_db_login_unix_socket": db.socket,
        "seafile_backup_config_db_source_host": "127.0.0.1",
        "seafile_backup_config_db_source_port": db.port,
        "seafile_backup_config_db_source_password": ROOT_PASSWORD,
    }
    before = site.texts()
    refused = site.run(extra_vars=extra)
    assert refused.rc != 0
    assert "needs log_slave_updates=ON" in refused.out, refused.out
    assert site.texts() == before and site.restarted() == []
    db.restart(extra_args=["--log-slave-updates"])
    extra["seafile_backup_config_db_source_port"] = db.port
    accepted = site.run(extra_vars=extra)
    assert accepted.rc == 0, accepted.out
    assert site.texts() != before


# -- secrets in seafile.conf (issue 15) ------------------------------------------------------------
CANARIES = {"password": canary.canary("seafile-db-pw"), "key": canary.S3_SECRET_KEY,
            "token": canary.canary("seafile-jwt")}
SECRET_CONF = f"""[commit_object_backend]
name = s3
key_id = AKIAEXAMPLE
key = {CANARIES['key']}

[notification]
jwt_private_key={CANARIES['token']}

[database]
type = mysql
user = seafile
password = {CANARIES['password']}
"""


def test_check_diff_and_the_result_mask_every_secret_of_seafile_conf(site):
    for conf in site.confs.values():
        canary.write_private(conf, SECRET_CONF)
    # One run, with the JSON callback: its output is every task's whole result, diff before/after
    # included, as a registered variable or an AWX job event holds it; --diff prints from the same.
    events = site.run(check=True, diff=True, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    assert events.rc == 0, events.out
    # stdout alone: the JSON document. Python warnings go to stderr (one CI run printed a few
    # "<unknown>:1: SyntaxWarning: invalid decimal literal" lines there), and would follow it.
    plays = json.loads(events.stdout[events.stdout.index("{"):])["plays"]
    diffs = {(host, result["diff"]["after"]) for play in plays for task in play["tasks"]
             for host, result in task["hosts"].items() if "diff" in result}
    assert {host for host, after in diffs if "\n[backup]\n" in after} == set(site.confs), events.out
    assert [c for c in CANARIES.values() if c in events.out] == [], events.out
    assert "password = <secret>" in events.out and "key = <secret>" in events.out


def run_module(tmp_path, args, umask=0o022):
    """seafile_conf_backup run for real (ansible ad hoc, local connection) under the given umask."""
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,",
            "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
            "-m", "seafile_conf_backup", "-a", json.dumps(args)]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    proc = subprocess.run(argv, cwd=TOP, capture_output=True, text=True, env=env, timeout=300, check=False,
                          preexec_fn=lambda: os.umask(umask))
    return proc.returncode, proc.stdout + proc.stderr


def test_created_seafile_conf_is_0600_and_an_existing_file_keeps_its_mode_but_others(tmp_path):
    conf = tmp_path / "conf" / "seafile.conf"
    conf.parent.mkdir()
    args = dict(path=str(conf), role="primary", backup_url="http://backup.example.org", sync_token=TOKEN,
                create=True)
    rc, out = run_module(tmp_path, args)
    assert rc == 0, out
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600, "a new seafile.conf holds the sync_token"
    assert f"sync_token = {TOKEN}" in conf.read_text() and os.listdir(conf.parent) == ["seafile.conf"]
    # an existing file (Seafile's own, maybe group-readable for its processes) keeps its mode
    os.chmod(conf, 0o640)
    rc, out = run_module(tmp_path, dict(args, backup_url="http://backup2.example.org"))
    assert rc == 0 and '"changed": true' in out, out
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640
    # a file readable by others loses that when it holds the token (found by the secret canary)
    os.chmod(conf, 0o644)
    rc, out = run_module(tmp_path, args)
    assert rc == 0 and '"changed": true' in out, out
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640
    rc, out = run_module(tmp_path, args)
    assert rc == 0 and '"changed": false' in out, out
