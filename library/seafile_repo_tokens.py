#!/usr/bin/python
"""Failover step: delete RepoUserToken rows of given libraries (unsyncs their clients)."""

DOCUMENTATION = r"""
---
module: seafile_repo_tokens
short_description: Unsync clients of given Seafile libraries by deleting their RepoUserToken rows
description:
  - The failover step of the Seafile real-time backup procedure. Before switching service to the
    backup server, clients syncing libraries that failed to back up must be unsynced, by deleting
    their rows from C(RepoUserToken) in the backup server's seafile database.
  - Library ids are validated as UUIDs before connecting; one bad id fails the task and nothing
    is deleted. The SQL is parameterised (one placeholder per id), run in one transaction.
  - In check mode the rows that would be deleted are counted and listed, nothing is deleted.
  - An empty list of ids does nothing.
requirements:
  - PyMySQL on the host that runs the module.
options:
  library_ids:
    description: Ids (UUIDs) of the libraries whose client tokens are deleted.
    type: list
    elements: str
    required: true
  database:
    description: Name of the seafile database on the backup server.
    type: str
    default: seafile_db
  login_host:
    description: Database host. Ignored when C(login_unix_socket) is set.
    type: str
    default: localhost
  login_port:
    description: Database port.
    type: int
    default: 3306
  login_user:
    description: Database user allowed to delete from RepoUserToken.
    type: str
  login_password:
    description: Password of C(login_user).
    type: str
  login_unix_socket:
    description: Unix socket of the database server.
    type: path
  config_file:
    description: A client option file (e.g. ~/.my.cnf) with the credentials, read with PyMySQL.
    type: path
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 30
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Unsync clients of the libraries that failed to back up
  seafile_repo_tokens:
    library_ids: "{{ seafile_status.status.failed_libraries }}"
    database: seafile_db
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
  register: seafile_tokens
"""

RETURN = r"""
count:
  description: Rows deleted (or that would be deleted in check mode).
  returned: always
  type: int
  sample: 3
rows:
  description: The rows concerned (library id and user; the tokens themselves are not returned).
  returned: always
  type: list
  elements: dict
  sample: [{repo_id: f690ea2c-fe4d-459a-ba1e-165cdc6df391, email: alice@example.org}]
library_ids:
  description: The validated, de-duplicated ids.
  returned: always
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.seafile_backup import SeafileBackupError, plan_token_deletion

try:
    import pymysql
except ImportError:
    pymysql = None
    PYMYSQL_ERROR = traceback.format_exc()
else:
    PYMYSQL_ERROR = None


def connect(params):
    kwargs = dict(database=params["database"], connect_timeout=params["connect_timeout"], autocommit=False)
    if params["config_file"]:
        kwargs["read_default_file"] = params["config_file"]
    if params["login_unix_socket"]:
        kwargs["unix_socket"] = params["login_unix_socket"]
    else:
        kwargs["host"] = params["login_host"]
        kwargs["port"] = params["login_port"]
    if params["login_user"] is not None:
        kwargs["user"] = params["login_user"]
    if params["login_password"] is not None:
        kwargs["password"] = params["login_password"]
    return pymysql.connect(**kwargs)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            library_ids=dict(type="list", elements="str", required=True),
            database=dict(type="str", default="seafile_db"),
            login_host=dict(type="str", default="localhost"),
            login_port=dict(type="int", default=3306),
            login_user=dict(type="str"),
            login_password=dict(type="str", no_log=True),
            login_unix_socket=dict(type="path"),
            config_file=dict(type="path"),
            connect_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    try:
        plan = plan_token_deletion(module.params["database"], module.params["library_ids"])
    except SeafileBackupError as exc:
        module.fail_json(msg=str(exc), count=0, rows=[], library_ids=[])
    result = dict(changed=False, count=0, rows=[], library_ids=plan["ids"])
    if not plan["ids"]:
        module.exit_json(**result)
    if pymysql is None:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=PYMYSQL_ERROR)

    try:
        conn = connect(module.params)
    except pymysql.MySQLError as exc:
        module.fail_json(msg=f"cannot connect to the seafile database: {exc}", **result)
    try:
        with conn.cursor() as cur:
            sql, args = plan["select"]
            cur.execute(sql + ("" if module.check_mode else " FOR UPDATE"), args)
            rows = [{"repo_id": r[0], "email": r[1]} for r in cur.fetchall()]
            result["rows"] = rows
            result["count"] = len(rows)
            if rows and not module.check_mode:
                sql, args = plan["delete"]
                deleted = cur.execute(sql, args)
                conn.commit()
                result["count"] = deleted
            result["changed"] = bool(rows)
    except pymysql.MySQLError as exc:
        conn.rollback()
        module.fail_json(msg=f"deleting RepoUserToken rows failed, rolled back: {exc}", **result)
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
