"""seafile.conf [backup] on the primary node(s) and the backup server after converge + idempotence of
playbooks/seafile_backup_config.yml: run by molecule/_shared/testinfra.yml on every host of the
scenario. Expected values: the scenario's own molecule.yml (platforms and group_vars)."""
import functools
import re
from pathlib import Path

import pytest
import testinfra
import yaml

MOLECULE = yaml.safe_load((Path(__file__).parents[1] / "molecule.yml").read_text())
SETTINGS = MOLECULE["provisioner"]["inventory"]["group_vars"]["all"]
GROUPS = {platform["name"]: platform["groups"] for platform in MOLECULE["platforms"]}
CONF = "/opt/seafile/conf/seafile.conf"
# written by prepare (../seafile/prepare_seafile_config.yml); the playbook must keep it byte for byte
KEPT = ("[fileserver]\nport=8082\n# kept   byte for byte\n\n"
        "[database]\ntype = mysql\nhost = 127.0.0.1\ndb_name = seafile_db\n")


@functools.cache
def _conf(name):
    """seafile.conf of one container, read once for every test (each read is a `podman exec`)."""
    return testinfra.get_host(f"podman://{name}").file(CONF).content_string


def _backup_section(host):
    text = _conf(host.backend.get_hostname())
    return dict(re.findall(r"(?m)^(\w+) = (.*)$", text.split("[backup]")[-1]))


@pytest.fixture(scope="module")
def every_host(pytestconfig):
    return testinfra.get_hosts(pytestconfig.option.hosts.split(","))


def test_rest_of_seafile_conf_kept_and_backup_section_written_once(host):
    text = _conf(host.backend.get_hostname())
    assert text.startswith(KEPT), text
    assert text.count("[backup]") == 1, text


def test_backup_section_points_at_the_other_side(host):
    groups = GROUPS[host.backend.get_hostname()]
    section = _backup_section(host)
    if "seafile_primary" in groups:
        expected = {"backup_url": SETTINGS["seafile_backup_config_backup_url"]}
    else:
        assert groups == ["seafile_backup"]
        expected = {"primary_url": SETTINGS["seafile_backup_config_primary_url"],
                    "sync_poll_interval": str(SETTINGS["seafile_backup_config_sync_poll_interval"])}
    assert {k: v for k, v in section.items() if k != "sync_token"} == expected
    assert "sync_token" in section


def test_sync_token_is_40_hex_and_the_same_on_every_node(every_host):
    assert len(every_host) == len(GROUPS)
    tokens = {_backup_section(node).get("sync_token") for node in every_host}
    assert len(tokens) == 1, "the nodes have different sync_tokens"
    assert re.fullmatch("[0-9a-f]{40}", tokens.pop() or ""), "the sync_token is not 40 lowercase hex"


def test_centos_ca_bundle_path_holds_the_system_bundle(host):
    # https URLs: Seafile (built for CentOS) reads /etc/pki/tls/cert.pem
    assert SETTINGS["seafile_backup_config_backup_url"].startswith("https://")
    link = host.file("/etc/pki/tls/cert.pem")
    assert link.is_symlink
    assert link.linked_to == "/etc/pki/tls/certs/ca-bundle.crt"
    bundle = host.file("/etc/pki/tls/certs/ca-bundle.crt")
    assert bundle.mode == 0o644
    assert bundle.sha256sum == host.file("/etc/ssl/certs/ca-certificates.crt").sha256sum


def test_seafile_restarted_once_not_again_by_the_idempotence_run(host):
    log = host.file("/var/log/seafile-standin.log").content_string
    assert len([line for line in log.splitlines() if re.match("(re)?start ", line)]) == 1, log
