"""What the btw modules (library/btw_*.py) share: the errors they turn into a clean failure, the
database connection options, and the ``backup_run`` a backup module publishes (the entry the
playbooks put into ``backup_runs``), on success and on failure.

No AnsibleModule in here: the module object is passed in (anything with ``exit_json`` and
``fail_json``), so each module keeps only its argument_spec and the call into its core.
"""

import time

from ansible.module_utils.btw_fs import BtwError
from ansible.module_utils.btw_s3 import BtwS3Error

# What a btw core raises for the operator (BtwError and its subclasses, BtwS3Error, including a
# corrupt sync journal read by retention or listing) and what the file system raises.
ERRORS = (BtwError, BtwS3Error, OSError)

# Database connection options of btw_db_backup and btw_restore.
CONNECTION_SPEC = dict(
    login_host=dict(type="str"),
    login_port=dict(type="int"),
    login_user=dict(type="str"),
    login_password=dict(type="str", no_log=True),
    login_unix_socket=dict(type="path"),
    credentials_file=dict(type="path"),
    pg_bin_dir=dict(type="path"),
)


def connection_from(params):
    """The cores' connection dict from the CONNECTION_SPEC options (and the dump type)."""
    conn = {
        "host": params["login_host"],
        "port": params["login_port"],
        "user": params["login_user"],
        "password": params["login_password"],
        "socket": params["login_unix_socket"],
    }
    if params["credentials_file"]:
        conn["defaults_file" if params["type"] == "mysqldump" else "passfile"] = params["credentials_file"]
    return conn


class ModuleRun:
    """One run of a btw module.

    ``call`` runs the core and fails the module cleanly (``fail_prefix`` + the error) on a btw
    error. With ``run`` (a dict starting with strategy and set), the module publishes it as
    ``backup_run``: on failure with result failed, size 0, the time spent and the error as
    details; on success with what ``ok`` / ``exit_stored`` record.
    """

    def __init__(self, module, fail_prefix="", run=None, clock=time.time):
        self.module = module
        self.fail_prefix = fail_prefix
        self.run = run
        self.clock = clock
        self.started = clock()

    def call(self, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ERRORS as exc:
            self.fail(exc)

    def fail(self, exc, details=None, **extra):
        if self.run is not None:
            self.run.setdefault("location", None)
            self.run.update(
                result="failed",
                size_bytes=0,
                duration_seconds=round(self.clock() - self.started, 3),
                details=str(exc) if details is None else details,
            )
            extra["backup_run"] = self.run
        self.module.fail_json(msg=f"{self.fail_prefix}{exc}", **extra)

    def ok(self, size_bytes, duration_seconds, details, **fields):
        self.run.update(
            result="ok", size_bytes=size_bytes, duration_seconds=duration_seconds, details=details, **fields
        )
        return self.run

    def exit_suspect(self, result, message):
        """The backup was stored but the shrink guard found it suspect: publish the run with result
        suspect (its location and size, the message as details) and fail the module with the message."""
        self.ok(result["size_bytes"], result["duration_seconds"], message, location=result["location"])
        self.run["result"] = "suspect"
        self.module.fail_json(msg=f"{self.fail_prefix}{message}", backup_run=self.run, **result)

    def exit_stored(self, result):
        """exit_json for a backup core's result (stored, reason, location, size_bytes, duration)."""
        self.ok(
            result["size_bytes"],
            result["duration_seconds"],
            ("stored: " if result["stored"] else "not stored: ") + result["reason"],
            location=result["location"],
        )
        self.module.exit_json(backup_run=self.run, **result)
