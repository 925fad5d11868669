#!/usr/bin/python
"""Ansible module: expiry of the replication TLS certificates as Prometheus textfile metrics."""

DOCUMENTATION = r"""
---
module: mysql_tls_metrics
short_description: Expiry of the replication TLS certificates as Prometheus textfile-collector metrics
description:
  - Writes C(mysql_replication_tls_certificate_expiry_seconds) (seconds until the certificate's
    notAfter, negative once expired) and C(mysql_replication_tls_certificate_not_after_timestamp_seconds)
    (notAfter as Unix time), labelled C(host), C(role) (C(ca), C(server), C(client)) and C(path), into
    C(mysql_replication_tls_<name>.prom) in node_exporter's textfile collector directory.
  - The file is written atomically (temporary file in the same directory, then rename, mode 0644) by
    the writer every metrics file of the toolkit goes through (plugins/module_utils/backup_metrics.py).
    It holds exactly the certificates given, so a run replaces what an earlier run wrote.
  - With O(state=absent) the file is removed (when TLS is turned off, so that no series is left to go stale).
  - A report, not a change to the host's configuration; RV(changed) is false when the file is written
    and true only when O(state=absent) removed one.
version_added: "1.0.0"
options:
  collector_dir:
    description: node_exporter's C(--collector.textfile.directory). Must exist.
    type: path
    required: true
  name:
    description:
      - The writer's part of the file name (C(source), C(replica)); letters, digits, C(.), C(_), C(-).
    type: str
    required: true
  host:
    description:
      - The C(host) label of the certificates that do not carry their own (usually C(inventory_hostname)).
    type: str
  certificates:
    description:
      - The certificates, each with C(role) (C(ca), C(server) or C(client)) and C(path) (a PEM file read
        with openssl), or C(not_after) (ISO 8601 or openssl's date) instead of a readable file, and
        optionally its own C(host) label.
    type: list
    elements: dict
    default: []
  state:
    description: C(present) writes the file, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    details: Nothing is written or removed; certificate files that do not exist yet are left out.
  diff_mode:
    support: none
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Publish the expiry of the source's CA and server certificate
  mysql_tls_metrics:
    collector_dir: /var/lib/prometheus/node-exporter
    name: source
    host: "{{ inventory_hostname }}"
    certificates:
      - {role: ca, path: /etc/mysql/replication-tls/ca.pem}
      - {role: server, path: /etc/mysql/replication-tls/server.pem}

- name: TLS is off - remove the metrics file
  mysql_tls_metrics:
    collector_dir: /var/lib/prometheus/node-exporter
    name: source
    state: absent
"""

RETURN = r"""
path:
  description: The metrics file written (or removed).
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/mysql_replication_tls_source.prom
metrics:
  description: The content written.
  returned: when O(state=present)
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_tls import TLSError
from ansible.module_utils.mysql_tls_metrics import collect, remove, write


def main():
    module = AnsibleModule(
        argument_spec=dict(
            collector_dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            host=dict(type="str"),
            certificates=dict(type="list", elements="dict", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ("host",))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "absent":
            path, existed = remove(p["collector_dir"], p["name"], module.check_mode)
            module.exit_json(changed=existed, path=path)
        certificates = p["certificates"]
        if module.check_mode:  # files this run would create (certificates not made yet) are left out
            certificates = [c for c in certificates
                            if c.get("not_after") or os.path.exists(c.get("path") or "")]
        path, text = write(p["collector_dir"], p["name"], collect(certificates, p["host"]),
                           check_mode=module.check_mode)
    except (TLSError, OSError) as exc:
        module.fail_json(msg=f"TLS certificate metrics: {exc}")
    module.exit_json(changed=False, path=path, metrics=text)


if __name__ == "__main__":
    main()
