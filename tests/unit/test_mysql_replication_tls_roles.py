"""What the replication roles decide about TLS, rendered from their own task files and defaults: the
replication user's TLS requirement (REQUIRE SSL / X509 / none, so that turning TLS off removes it),
which certificates go into the expiry metrics, and when the metrics file is removed. Live: the
source role's task files run against real MariaDB servers in
tests/integration/test_mysql_replication_tls.py."""

import os

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.community.mysql.plugins.module_utils.user import sanitize_requires

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(path):
    with open(os.path.join(TOP, path), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _render(value, **variables):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(value))


def test_replication_user_requirement_follows_the_tls_switch():
    task = _load("roles/mysql_replication_source/tasks/users.yml")[0]["community.mysql.mysql_user"]
    wanted = {
        (tls, client): _render(task["tls_requires"], mysql_replication_source_tls=tls,
                               mysql_replication_source_tls_client_cert=client)
        for tls in (True, False) for client in (True, False)
    }
    assert wanted[(True, False)] == {"SSL": None} and wanted[(True, True)] == {"X509": None}
    # TLS off: no requirement, whatever the client certificate switch says (never omitted: the
    # module is told what is wanted)
    assert wanted[(False, True)] == {} and wanted[(False, False)] == {}
    # community.mysql compares its sanitised form with the account's: REQUIRE NONE is issued (and
    # changed reported) only when the account has SSL or X509, nothing otherwise
    assert sanitize_requires(wanted[(False, True)]) is None
    assert sanitize_requires({"SSL": None}) == "SSL" and sanitize_requires({"X509": None}) == "X509"
    assert sanitize_requires({}) == sanitize_requires(None)  # the account without a requirement


def test_source_metrics_certificates_and_removal():
    task = _load("roles/mysql_replication_source/tasks/tls_metrics.yml")[0]
    args = task["mysql_tls_metrics"]
    defaults = {
        "mysql_replication_source_tls_ca_cert": "/t/ca.pem",
        "mysql_replication_source_tls_cert": "/t/server.pem",
        "mysql_replication_source_tls_client_cert_file": "/t/client.pem",
        "mysql_replication_source_tls_metrics_dir": "/var/lib/prometheus/node-exporter",
        "inventory_hostname": "db1",
    }
    on = dict(defaults, mysql_replication_source_tls=True, mysql_replication_source_tls_client_cert=False)
    assert _render(args["certificates"], **on) == [{"role": "ca", "path": "/t/ca.pem"},
                                                   {"role": "server", "path": "/t/server.pem"}]
    assert _render(args["state"], **on) == "present"
    with_client = dict(on, mysql_replication_source_tls_client_cert=True)
    assert _render(args["certificates"], **with_client)[-1] == {"role": "client", "path": "/t/client.pem"}
    assert _render(args["state"], **dict(on, mysql_replication_source_tls=False)) == "absent"
    no_dir = dict(on, mysql_replication_source_tls_metrics_dir="")
    assert _render("{{ " + task["when"] + " }}", **no_dir) is False


def test_backup_server_metrics_certificates_from_the_health_facts():
    defaults = _load("roles/seafile_replication/defaults/main.yml")
    expression = defaults["seafile_replication_tls_replica_certificates"]
    health = {"tls": {"certificates": [
        {"name": "source server certificate", "path": "", "not_after": "2028-01-01T00:00:00Z",
         "days_left": 400},
        {"name": "/etc/mysql/replication-tls/ca.pem", "path": "/etc/mysql/replication-tls/ca.pem",
         "not_after": "2036-01-01T00:00:00Z", "days_left": 3300},
    ]}}
    base = dict(seafile_replication_tls=True, seafile_replication_tls_client_cert=True,
                seafile_replication_source_host="db1", seafile_replication_health=health)
    got = _render(expression, **base)
    assert [c["role"] for c in got] == ["ca", "client", "server"]
    assert got[0] == {"role": "ca", "path": "/etc/mysql/replication-tls/ca.pem"}
    assert got[2]["host"] == "db1" and got[2]["not_after"] == "2028-01-01T00:00:00Z" and got[2]["path"] == ""
    # the replica role's own paths win over the fallbacks; no health facts (skipped): files only
    got = _render(expression, **dict(base, seafile_replication_tls_client_cert=False,
                                     mysql_replication_replica_tls_ca_cert="/x/ca.pem",
                                     seafile_replication_health={"skipped": True}))
    assert got == [{"role": "ca", "path": "/x/ca.pem"}]
    assert _render(expression, **dict(base, seafile_replication_tls=False)) == []
