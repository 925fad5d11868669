"""The one table that maps a server flavour and version to its replication SQL dialect.

MariaDB 10.x/11.x and MySQL 5.7/8.0/8.4 name the same things differently (CHANGE MASTER TO vs CHANGE
REPLICATION SOURCE TO, SLAVE vs REPLICA, SHOW MASTER STATUS vs SHOW BINARY LOG STATUS vs SHOW BINLOG
STATUS, --master-data vs --source-data, expire_logs_days vs binlog_expire_logs_seconds, Master_* vs
Source_* status columns, MASTER_POS_WAIT vs SOURCE_POS_WAIT). Everything version-dependent is decided
here and nowhere else.
"""

import re

MARIADB = "mariadb"
MYSQL = "mysql"


class DialectError(Exception):
    """A version string could not be understood."""


def parse_version(version):
    """'10.11.6-MariaDB-0+deb12u1-log' -> ('mariadb', (10, 11, 6)); '8.0.36' -> ('mysql', (8, 0, 36)).

    MariaDB 10.x replicated from a MySQL-style '5.5.5-10.x' prefix is handled too.
    """
    text = str(version or "").strip()
    m = re.match(r"^(?:5\.5\.5-)?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise DialectError(f"cannot parse server version {version!r}")
    numbers = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    flavor = MARIADB if "mariadb" in text.lower() else MYSQL
    return flavor, numbers


def parse_client_version(output):
    """Flavour and version of a mysqldump/mariadb-dump/mysql client from its --version output.

    'mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)' -> mariadb 10.11.6
    'mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)'          -> mariadb 11.4.2
    'mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'   -> mysql 8.0.36
    'mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)'                     -> mysql 5.7.44
    """
    text = str(output or "")
    for pattern in (
        r"Distrib\s+(\d+\.\d+\.\d+\S*)",
        r"from\s+(\d+\.\d+\.\d+\S*)",
        r"Ver\s+(\d+\.\d+\.\d+\S*)",
    ):
        m = re.search(pattern, text)
        if m:
            version = m.group(1).rstrip(",")
            flavor = MARIADB if "mariadb" in text.lower() else MYSQL
            return flavor, parse_version(version)[1]
    raise DialectError(f"cannot parse client version from {text.strip()!r}")


# Normalised status key -> candidate column names (new MySQL name first, then the classic one).
STATUS_COLUMNS = {
    "io_state": ("Replica_IO_State", "Slave_IO_State"),
    "source_host": ("Source_Host", "Master_Host"),
    "source_port": ("Source_Port", "Master_Port"),
    "source_user": ("Source_User", "Master_User"),
    "connect_retry": ("Connect_Retry",),
    "source_log_file": ("Source_Log_File", "Master_Log_File"),
    "read_source_log_pos": ("Read_Source_Log_Pos", "Read_Master_Log_Pos"),
    "relay_log_file": ("Relay_Log_File",),
    "relay_log_pos": ("Relay_Log_Pos",),
    "relay_source_log_file": ("Relay_Source_Log_File", "Relay_Master_Log_File"),
    "io_running": ("Replica_IO_Running", "Slave_IO_Running"),
    "sql_running": ("Replica_SQL_Running", "Slave_SQL_Running"),
    "exec_source_log_pos": ("Exec_Source_Log_Pos", "Exec_Master_Log_Pos"),
    "relay_log_space": ("Relay_Log_Space",),
    "seconds_behind": ("Seconds_Behind_Source", "Seconds_Behind_Master"),
    "ssl_allowed": ("Source_SSL_Allowed", "Master_SSL_Allowed"),
    "ssl_ca": ("Source_SSL_CA_File", "Master_SSL_CA_File"),
    "ssl_cert": ("Source_SSL_Cert", "Master_SSL_Cert"),
    "ssl_key": ("Source_SSL_Key", "Master_SSL_Key"),
    "ssl_verify_server_cert": ("Source_SSL_Verify_Server_Cert", "Master_SSL_Verify_Server_Cert"),
    "last_io_errno": ("Last_IO_Errno",),
    "last_io_error": ("Last_IO_Error",),
    "last_sql_errno": ("Last_SQL_Errno",),
    "last_sql_error": ("Last_SQL_Error",),
    "source_server_id": ("Source_Server_Id", "Master_Server_Id"),
    "using_gtid": ("Using_Gtid",),
    "auto_position": ("Auto_Position",),
    "retrieved_gtid_set": ("Retrieved_Gtid_Set",),
    "executed_gtid_set": ("Executed_Gtid_Set",),
    "gtid_io_pos": ("Gtid_IO_Pos",),
    "sql_remaining_delay": ("SQL_Remaining_Delay",),
    "sql_running_state": ("Replica_SQL_Running_State", "Slave_SQL_Running_State"),
}

# CHANGE ... TO option names: normalised key -> (classic MASTER_ name, MySQL 8.0.23+ SOURCE_ name).
CHANGE_OPTIONS = {
    "host": ("MASTER_HOST", "SOURCE_HOST"),
    "port": ("MASTER_PORT", "SOURCE_PORT"),
    "user": ("MASTER_USER", "SOURCE_USER"),
    "password": ("MASTER_PASSWORD", "SOURCE_PASSWORD"),
    "log_file": ("MASTER_LOG_FILE", "SOURCE_LOG_FILE"),
    "log_pos": ("MASTER_LOG_POS", "SOURCE_LOG_POS"),
    "ssl": ("MASTER_SSL", "SOURCE_SSL"),
    "ssl_ca": ("MASTER_SSL_CA", "SOURCE_SSL_CA"),
    "ssl_cert": ("MASTER_SSL_CERT", "SOURCE_SSL_CERT"),
    "ssl_key": ("MASTER_SSL_KEY", "SOURCE_SSL_KEY"),
    "ssl_verify_server_cert": ("MASTER_SSL_VERIFY_SERVER_CERT", "SOURCE_SSL_VERIFY_SERVER_CERT"),
    "connect_retry": ("MASTER_CONNECT_RETRY", "SOURCE_CONNECT_RETRY"),
    "use_gtid": ("MASTER_USE_GTID", None),
    "auto_position": ("MASTER_AUTO_POSITION", "SOURCE_AUTO_POSITION"),
}


class Dialect:
    """SQL and option names for one server flavour and version."""

    def __init__(self, flavor, version):
        if flavor not in (MARIADB, MYSQL):
            raise DialectError(f"unknown flavor {flavor!r} (expected mariadb or mysql)")
        self.flavor = flavor
        self.version = tuple(version)

    @classmethod
    def from_version_string(cls, version, flavor="auto"):
        detected, numbers = parse_version(version)
        return cls(detected if flavor in (None, "auto") else flavor, numbers)

    def _mysql_at_least(self, *v):
        return self.flavor == MYSQL and self.version >= v

    def _mariadb_at_least(self, *v):
        return self.flavor == MARIADB and self.version >= v

    def __repr__(self):
        return f"Dialect({self.flavor}, {'.'.join(map(str, self.version))})"

    # -- replica statements ------------------------------------------------------------------
    @property
    def uses_source_keywords(self):
        """CHANGE REPLICATION SOURCE TO / SOURCE_* options: MySQL 8.0.23+ only."""
        return self._mysql_at_least(8, 0, 23)

    @property
    def change_source(self):
        return "CHANGE REPLICATION SOURCE TO" if self.uses_source_keywords else "CHANGE MASTER TO"

    def change_option(self, key):
        classic, new = CHANGE_OPTIONS[key]
        name = new if self.uses_source_keywords else classic
        if name is None:
            raise DialectError(f"{key} is not supported by {self!r}")
        return name

    @property
    def supports_use_gtid_option(self):
        return self._mariadb_at_least(10, 0, 0)

    def gtid_start_option(self, on):
        """The CHANGE option that makes the replica start from its GTID position (or stop doing so).

        MariaDB: MASTER_USE_GTID=slave_pos (the position is gtid_slave_pos, set before START);
        MySQL: MASTER_AUTO_POSITION=1 / SOURCE_AUTO_POSITION=1 (the position is gtid_executed).
        """
        if self.flavor == MARIADB:
            if not self.supports_use_gtid_option:
                raise DialectError(f"GTID replication needs MariaDB 10.0 or later, not {self!r}")
            return f"{self.change_option('use_gtid')}={'slave_pos' if on else 'no'}"
        return f"{self.change_option('auto_position')}={1 if on else 0}"

    @property
    def sets_gtid_slave_pos(self):
        """MariaDB takes the GTID start position from SET GLOBAL gtid_slave_pos; MySQL from the
        dump's SET @@GLOBAL.GTID_PURGED (nothing to set on the replica)."""
        return self.flavor == MARIADB

    @property
    def uses_replica_keyword(self):
        """START/STOP/RESET REPLICA and SHOW REPLICA STATUS: MySQL 8.0.22+, MariaDB 10.5.1+."""
        return self._mysql_at_least(8, 0, 22) or self._mariadb_at_least(10, 5, 1)

    @property
    def start_replica(self):
        return "START REPLICA" if self.uses_replica_keyword else "START SLAVE"

    @property
    def stop_replica(self):
        return "STOP REPLICA" if self.uses_replica_keyword else "STOP SLAVE"

    @property
    def reset_replica_all(self):
        return "RESET REPLICA ALL" if self.uses_replica_keyword else "RESET SLAVE ALL"

    @property
    def show_replica_status(self):
        return "SHOW REPLICA STATUS" if self.uses_replica_keyword else "SHOW SLAVE STATUS"

    @property
    def show_binlog_status(self):
        if self._mysql_at_least(8, 2, 0):
            return "SHOW BINARY LOG STATUS"
        if self._mariadb_at_least(10, 5, 2):
            return "SHOW BINLOG STATUS"
        return "SHOW MASTER STATUS"

    @property
    def pos_wait_function(self):
        return "SOURCE_POS_WAIT" if self._mysql_at_least(8, 0, 26) else "MASTER_POS_WAIT"

    # -- variables ---------------------------------------------------------------------------
    @property
    def retention_variable(self):
        """The binlog retention variable to read and to configure."""
        if self._mysql_at_least(8, 0, 0) or self._mariadb_at_least(10, 6, 0):
            return "binlog_expire_logs_seconds"
        return "expire_logs_days"

    @property
    def log_replica_updates_variable(self):
        return "log_replica_updates" if self._mysql_at_least(8, 0, 26) else "log_slave_updates"

    @property
    def gtid_position_variable(self):
        """Where the server keeps its GTID position, '' when none is meaningful."""
        return "gtid_binlog_pos" if self.flavor == MARIADB else "gtid_executed"

    def retention_seconds(self, values):
        """Binlog retention in seconds from {variable: value}; 0 means forever (never purged).

        binlog_expire_logs_seconds wins where the dialect has it and it is set; else expire_logs_days
        (MariaDB < 10.6, MySQL 5.7; removed in MySQL 8.2). MariaDB >= 10.6 keeps the two in sync.
        """

        def number(name):
            try:
                return float(values.get(name) or 0)
            except (TypeError, ValueError):
                return 0.0

        seconds = (
            number("binlog_expire_logs_seconds")
            if self.retention_variable == "binlog_expire_logs_seconds"
            else 0.0
        )
        if not seconds:
            seconds = number("expire_logs_days") * 86400
        return int(seconds)

    # -- dump client -------------------------------------------------------------------------
    def dump_coordinates_option(self, level=2):
        """--source-data from mysqldump 8.0.26 (MySQL); MariaDB's dump client keeps --master-data.

        Called on the dialect of the dump CLIENT (parse_client_version), not of the server.
        """
        name = "--source-data" if self._mysql_at_least(8, 0, 26) else "--master-data"
        return f"{name}={int(level)}"
