"""Documentation fragment of the MySQL/MariaDB connection options shared by the mysql_* modules.

The options match the argument specs of plugins/module_utils/mysql_connection.py:
``DOCUMENTATION`` documents ``login_argument_spec()`` (the server the module talks to) and
``SOURCE`` documents ``source_argument_spec()`` (an admin login on the replication source, for the
modules that run on the replica side); a module builds its spec with
``connection_argument_spec(source=..., **its_own_options)`` and its documentation with

    extends_documentation_fragment:
      - mysql_connection
      - mysql_connection.source

(ansible.cfg: doc_fragment_plugins = ./plugins/doc_fragments). A module may restate the
description of one option (for example the privileges its login_user needs); its own keys win
over the fragment's, the type and default stay here.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or address of the server the login_* options reach (the module's description says
        which server that is). Not used when O(login_unix_socket) is set.
    type: str
    default: localhost
  login_port:
    description: TCP port of that server.
    type: int
    default: 3306
  login_user:
    description: User on that server; when not given, the C(user) of O(config_file).
    type: str
  login_password:
    description: Password of O(login_user).
    type: str
  login_unix_socket:
    description: Unix socket of that server, used instead of O(login_host) and O(login_port).
    type: str
  connect_timeout:
    description: Connection timeout in seconds, for every server the module connects to.
    type: int
    default: 10
  config_file:
    description:
      - Client option file read by the module's own connections when it exists.
      - Only C(user) and C(password) of its C([client]) group are used, when not given as options (the
        password only for that same user); a host or socket in it never redirects a connection.
      - The same user and password go to the C(mysqldump)/C(mysql) children, in the private option
        file they get as C(--defaults-file) (the only one they read, so nothing else of this file or of
        C(/etc/mysql/my.cnf) reaches them).
    type: path
    default: ~/.my.cnf
  ssl_ca:
    description:
      - CA certificate (on the host running the module) for TLS to every server the module
        connects to.
    type: path
  ssl_cert:
    description:
      - Client certificate (on the host running the module) for TLS to every server the module
        connects to.
    type: path
  ssl_key:
    description:
      - Client key (on the host running the module) for TLS to every server the module
        connects to.
    type: path
"""

    SOURCE = r"""
options:
  source_host:
    description:
      - Replication source host, as reached from the host running the module.
      - One of O(source_host), O(source_unix_socket) is required.
    type: str
  source_port:
    description: Source server TCP port.
    type: int
    default: 3306
  source_user:
    description: Admin user on the source.
    type: str
  source_password:
    description: Password of O(source_user).
    type: str
  source_unix_socket:
    description: Unix socket of the source (when the module runs on the source host, for example in tests).
    type: str
"""
