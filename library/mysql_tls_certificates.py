#!/usr/bin/python
"""Ansible module: a private CA and a server or client certificate for replication over TLS."""

DOCUMENTATION = r"""
---
module: mysql_tls_certificates
short_description: Private site CA and server/client certificates for MySQL/MariaDB replication over TLS
description:
  - Makes, with the openssl command line, what is missing of a CA (O(ca_cert), O(ca_key)) and one
    certificate signed by it (O(cert), O(key)) for the source server (O(purpose=server)) or the
    replica's client (O(purpose=client)).
  - B(Never overwrites a file.) Existing files are checked instead; the module fails with a clear
    message when a certificate is not signed by the CA, does not match its key, or does not cover
    every name in O(subject_alt_names) (the replica's host name check would fail).
  - Private keys are created 0600 (owned by O(owner)/O(group) when given) and never returned or
    logged; certificates are 0644. Files made by a run that fails half way are removed.
  - Returns the certificates' expiry (days left) and lists those expired or expiring within
    O(expiry_warning_days).
version_added: "1.0.0"
author: Backup toolkit team
options:
  ca_cert:
    description: CA certificate (PEM). Made with O(ca_key) when absent.
    type: path
    required: true
  ca_key:
    description: CA private key. Needed to create the CA or a certificate; may be left out to only check.
    type: path
  ca_common_name:
    description: Common name of a CA this module makes.
    type: str
    default: replication CA
  ca_days:
    description: Validity of a CA this module makes, in days.
    type: int
    default: 3650
  cert:
    description: Certificate (PEM) signed by the CA. Made with O(key) when absent.
    type: path
  key:
    description: Private key of O(cert).
    type: path
  purpose:
    description: C(server) (extendedKeyUsage serverAuth) or C(client) (clientAuth).
    type: str
    choices: [server, client]
    default: server
  common_name:
    description: Common name of O(cert); defaults to the first of O(subject_alt_names).
    type: str
  subject_alt_names:
    description:
      - Host names and IP addresses O(cert) must cover (the address the replica connects to). Required
        for a server certificate.
    type: list
    elements: str
    default: []
  days:
    description: Validity of a certificate this module makes, in days.
    type: int
    default: 825
  owner:
    description: Owner of the certificate and key this module makes (C(mysql) for the server's files).
    type: str
  group:
    description: Group of the certificate and key this module makes.
    type: str
  expiry_warning_days:
    description: Certificates expiring within this many days are listed in C(expiring).
    type: int
    default: 30
notes:
  - Needs the openssl command on the host. Check mode reports what would be made, without making it.
"""

EXAMPLES = r"""
- name: Site CA and the source's server certificate (made when absent)
  mysql_tls_certificates:
    ca_cert: /etc/mysql/replication-tls/ca.pem
    ca_key: /etc/mysql/replication-tls/ca.key
    cert: /etc/mysql/replication-tls/server.pem
    key: /etc/mysql/replication-tls/server.key
    subject_alt_names: [db1.example.org, 10.0.0.1]
    owner: mysql
"""

RETURN = r"""
created:
  description: Files made by this run (or that would be, in check mode).
  returned: always
  type: list
  elements: str
certificates:
  description: The CA (C(ca)) and the certificate (C(server) or C(client)) with subject, names, expiry.
  returned: always
  type: dict
  sample: {ca: {path: /etc/mysql/replication-tls/ca.pem, subject: CN=replication CA,
                not_after: "2036-11-29T17:26:51Z", days_left: 3649, expired: false, expiring: false}}
expired:
  description: Names (ca, server, client) of expired certificates.
  returned: always
  type: list
  elements: str
expiring:
  description: Names of certificates expiring within O(expiry_warning_days).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.mysql_tls import TLSError, ensure_certificates


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_cert=dict(type="path", required=True),
            ca_key=dict(type="path", no_log=False),
            ca_common_name=dict(type="str", default="replication CA"),
            ca_days=dict(type="int", default=3650),
            cert=dict(type="path"),
            key=dict(type="path", no_log=False),
            purpose=dict(type="str", choices=["server", "client"], default="server"),
            common_name=dict(type="str"),
            subject_alt_names=dict(type="list", elements="str", default=[]),
            days=dict(type="int", default=825),
            owner=dict(type="str"),
            group=dict(type="str"),
            expiry_warning_days=dict(type="int", default=30),
        ),
        supports_check_mode=True,
        required_together=[("cert", "key")],
    )
    try:
        result = ensure_certificates(module.params, check_mode=module.check_mode)
    except (TLSError, KeyError, OSError) as exc:
        module.fail_json(msg=f"TLS certificates: {exc}")
    if result["expiring"]:
        module.warn(f"certificates expiring soon: {', '.join(result['expiring'])}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
