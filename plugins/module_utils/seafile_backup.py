"""Core of the Seafile real-time backup server tooling (pure Python, no AnsibleModule).

What lives here, each used by a thin module in library/ and unit-tested directly:

- ``parse_status``: the output of ``seaf-backup-cmd.sh status`` into counts and library lists.
- ``validate_sync_token`` / ``generate_sync_token``: the 40-hex secret shared by both sides.
- ``validate_url`` / ``validate_library_id(s)``: operator input checked before anything changes.
- ``edit_backup_section``: rewrite only the ``[backup]`` section of seafile.conf, keeping every
  other byte of the file as it was.
- ``run_syncs``: ``seaf-backup-cmd.sh sync [--force] <id>`` per library through an injected runner.
- ``plan_token_deletion``: parameterised SQL that unsyncs clients of given libraries on failover.
- ``render_metrics``: Prometheus textfile-collector exposition of status and replication health.

Every error is a ``SeafileBackupError`` whose message is meant for the operator.
"""
import hashlib
import math
import os
import re
from urllib.parse import urlsplit

from ansible.module_utils.backup_metrics import render_family, render_text


class SeafileBackupError(Exception):
    """Anything wrong with input, output of the tools, or the configuration file."""


# --------------------------------------------------------------------------------------------
# Status output of seaf-backup-cmd.sh
# --------------------------------------------------------------------------------------------
COUNT_LINES = (
    ("total", "Total number of libraries"),
    ("synchronized", "Number of synchronized libraries"),
    ("waiting", "Number of libraries waiting for sync"),
    ("syncing", "Number of libraries syncing"),
    ("failed", "Number of libraries failed to sync"),
)
LIST_HEADERS = (
    ("syncing_libraries", "List of syncing libraries:"),
    ("failed_libraries", "List of libraries failed to sync:"),
)
STATES = tuple(key for key, _ in COUNT_LINES)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{40}$")


def parse_status(text):
    """Parse the documented ``status`` output.

    Returns a dict with the five counts (``total``, ``synchronized``, ``waiting``, ``syncing``,
    ``failed``), the two lists (``syncing_libraries``, ``failed_libraries``) and ``warnings``
    (counts that disagree with their list: reported, not fatal). Anything else in the output,
    a missing line, a count that is not a number or a list entry that is not a library id is a
    ``SeafileBackupError``: a monitoring check must never read garbage as "all fine".
    """
    result = {"syncing_libraries": [], "failed_libraries": [], "warnings": []}
    labels = dict((label, key) for key, label in COUNT_LINES)
    headers = dict((header, key) for key, header in LIST_HEADERS)
    current_list = None
    seen_headers = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line in headers:
            current_list = headers[line]
            if current_list in seen_headers:
                raise SeafileBackupError(f"status output line {number}: {line!r} appears twice")
            seen_headers.append(current_list)
            continue
        label, sep, value = line.partition(":")
        if sep and label.strip() in labels:
            key = labels[label.strip()]
            if current_list is not None:
                raise SeafileBackupError(
                    f"status output line {number}: count {label.strip()!r} after the lists")
            if key in result:
                raise SeafileBackupError(f"status output line {number}: {label.strip()!r} appears twice")
            value = value.strip()
            if not value.isdigit():
                raise SeafileBackupError(
                    f"status output line {number}: {label.strip()!r} is not a number: {value!r}")
            result[key] = int(value)
            continue
        if current_list is not None:
            library_id = line.lower()
            if not UUID_RE.match(library_id):
                raise SeafileBackupError(
                    f"status output line {number}: {line!r} under {current_list} is not a library id")
            result[current_list].append(library_id)
            continue
        raise SeafileBackupError(f"status output line {number}: unexpected text {line!r}")
    missing = [label for key, label in COUNT_LINES if key not in result]
    missing += [header for key, header in LIST_HEADERS if key not in seen_headers]
    if missing:
        raise SeafileBackupError("status output is missing: " + "; ".join(missing)
                                 + " (is this seaf-backup-cmd.sh of Seafile Pro >= 5.1?)")
    for key, list_key in (("syncing", "syncing_libraries"), ("failed", "failed_libraries")):
        if result[key] != len(result[list_key]):
            result["warnings"].append(
                f"{key} count {result[key]} differs from the {len(result[list_key])} ids listed")
    if sum(result[key] for key in STATES[1:]) != result["total"]:
        result["warnings"].append("synchronized + waiting + syncing + failed != total")
    return result


# --------------------------------------------------------------------------------------------
# Operator input
# --------------------------------------------------------------------------------------------
def validate_sync_token(token):
    """Return the token if it is 40 lowercase hex characters (a SHA1), else raise.

    The message never contains the token itself.
    """
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        length = len(token) if isinstance(token, str) else 0
        raise SeafileBackupError(
            "sync_token must be 40 lowercase hex characters (a SHA1, e.g. `uuidgen | openssl sha1`);"
            f" the given value has {length} characters and is rejected (value not shown)")
    return token


def generate_sync_token(random_bytes=None):
    """A new token as the procedure makes it: SHA1 of a random value."""
    return hashlib.sha1(random_bytes if random_bytes is not None else os.urandom(32)).hexdigest()  # noqa: S324


def token_fingerprint(token):
    """Short fingerprint to tell tokens apart in logs and diffs without disclosing them."""
    if not token:
        return None
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def validate_url(url, name="url"):
    """An http(s) URL with a host, no whitespace; returned unchanged."""
    if not isinstance(url, str) or not url:
        raise SeafileBackupError(f"{name} is required (an http:// or https:// URL)")
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", url)
            or parts.query or parts.fragment):
        raise SeafileBackupError(f"{name} {url!r} is not an http:// or https:// URL of a server")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise SeafileBackupError(f"{name} {url!r} has an invalid port") from exc
    return url


def validate_library_id(library_id):
    """A Seafile library id is a UUID in canonical form; returned lowercase."""
    if not isinstance(library_id, str) or not UUID_RE.match(library_id.strip().lower()):
        raise SeafileBackupError(
            f"library id {library_id!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return library_id.strip().lower()


def validate_library_ids(library_ids):
    """Validate all ids before any is used; duplicates dropped, order kept."""
    if isinstance(library_ids, str):
        raise SeafileBackupError("library ids must be a list, not a string")
    bad = []
    seen = []
    for library_id in library_ids or []:
        try:
            normalised = validate_library_id(library_id)
        except SeafileBackupError:
            bad.append(library_id)
            continue
        if normalised not in seen:
            seen.append(normalised)
    if bad:
        raise SeafileBackupError(f"not library ids (UUIDs expected), nothing done: {bad!r}")
    return seen


def validate_poll_interval(hours):
    try:
        value = int(hours)
    except (TypeError, ValueError):
        raise SeafileBackupError(
            f"sync_poll_interval must be a whole number of hours, got {hours!r}") from None
    if value < 1 or str(hours).strip() != str(value):
        raise SeafileBackupError(f"sync_poll_interval must be a whole number of hours >= 1, got {hours!r}")
    return value


# --------------------------------------------------------------------------------------------
# seafile.conf [backup] section
# --------------------------------------------------------------------------------------------
SECTION = "backup"
PRIMARY_KEYS = ("backup_url", "sync_token")
BACKUP_KEYS = ("primary_url", "sync_token", "sync_poll_interval")
MANAGED_KEYS = ("backup_url", "primary_url", "sync_token", "sync_poll_interval")
_HEADER_RE = re.compile(r"^\s*\[([^\]]*)\]\s*$")
_KEY_RE = re.compile(r"^\s*([^=#;\[\s][^=]*?)\s*=(.*)$")


def desired_settings(role, backup_url=None, primary_url=None, sync_token=None, sync_poll_interval=None):
    """The [backup] keys one node must have, validated. ``role`` is ``primary`` or ``backup``."""
    if role == "primary":
        return {
            "backup_url": validate_url(backup_url, "backup_url"),
            "sync_token": validate_sync_token(sync_token),
        }
    if role == "backup":
        return {
            "primary_url": validate_url(primary_url, "primary_url"),
            "sync_token": validate_sync_token(sync_token),
            "sync_poll_interval": str(validate_poll_interval(
                1 if sync_poll_interval is None else sync_poll_interval)),
        }
    raise SeafileBackupError(f"role must be primary or backup, got {role!r}")


def _split_sections(lines):
    """Yield (name or None, start, end) for the preamble and every section, by line index."""
    bounds = []
    name, start = None, 0
    for index, line in enumerate(lines):
        match = _HEADER_RE.match(line)
        if match:
            bounds.append((name, start, index))
            name, start = match.group(1).strip(), index
    bounds.append((name, start, len(lines)))
    return bounds


def _newline_of(text):
    return "\r\n" if "\r\n" in text else "\n"


def has_backup_section(text):
    return any(name == SECTION for name, _, _ in _split_sections(text.splitlines(True)))


def read_backup_section(text):
    """The key/value pairs of [backup] (last value wins, as GLib's key file does); {} if none."""
    lines = text.splitlines(True)
    sections = [b for b in _split_sections(lines) if b[0] == SECTION]
    if len(sections) > 1:
        raise SeafileBackupError("seafile.conf has more than one [backup] section: merge them by hand first")
    values = {}
    if sections:
        _, start, end = sections[0]
        for line in lines[start + 1:end]:
            match = _KEY_RE.match(line)
            if match:
                values[match.group(1)] = match.group(2).strip()
    return values


def edit_backup_section(text, settings, remove_keys=(), state="present"):
    """Return ``text`` with the [backup] section holding ``settings``.

    Only lines inside [backup] change: a managed key is rewritten in place (a later duplicate is
    dropped, since it would override the first), a missing one appended after the section's last
    key, keys in ``remove_keys`` deleted, comments and unmanaged keys kept. A missing section is
    appended at the end. Everything outside the section is returned byte for byte.
    ``state="absent"`` removes the whole section (header and body).
    """
    newline = _newline_of(text)
    lines = text.splitlines(True)
    sections = [b for b in _split_sections(lines) if b[0] == SECTION]
    if len(sections) > 1:
        raise SeafileBackupError("seafile.conf has more than one [backup] section: merge them by hand first")
    if state == "absent":
        if not sections:
            return text
        _, start, end = sections[0]
        return "".join(lines[:start] + lines[end:])
    if state != "present":
        raise SeafileBackupError(f"state must be present or absent, got {state!r}")

    if not sections:
        prefix = text
        if prefix and not prefix.endswith(("\n", "\r")):
            prefix += newline
        if prefix and prefix.strip():
            prefix += newline
        body = "".join(f"{key} = {value}{newline}" for key, value in settings.items())
        return f"{prefix}[{SECTION}]{newline}{body}"

    _, start, end = sections[0]
    body = lines[start + 1:end]
    out = []
    done = set()
    last_key_index = -1
    for line in body:
        match = _KEY_RE.match(line)
        if match:
            key = match.group(1)
            if key in remove_keys and key not in settings:
                continue
            if key in settings:
                if key in done:
                    continue
                done.add(key)
                ending = line[len(line.rstrip("\r\n")):] or newline
                current = match.group(2).strip()
                if current == settings[key]:
                    out.append(line)
                else:
                    out.append(f"{key} = {settings[key]}{ending}")
            else:
                out.append(line)
            last_key_index = len(out) - 1
        else:
            out.append(line)
    missing = [f"{key} = {value}{newline}" for key, value in settings.items() if key not in done]
    if missing:
        insert_at = last_key_index + 1
        if last_key_index == -1:
            # no key yet: directly after the header and any comments that follow it
            insert_at = 0
            while insert_at < len(out) and out[insert_at].strip().startswith(("#", ";")):
                insert_at += 1
        if insert_at > 0 and not out[insert_at - 1].endswith(("\n", "\r")):
            out[insert_at - 1] += newline
        header = lines[start]
        if not header.endswith(("\n", "\r")):
            header += newline
        lines[start] = header
        out[insert_at:insert_at] = missing
    return "".join(lines[:start + 1] + out + lines[end:])


# A key holds a secret when its name ends in one of these words, or contains "password" or
# "secret" anywhere (case-insensitive): password, db_password, passwd, sync_token, key, sse_c_key,
# jwt_private_key, secret_key, credentials... A name such as web_token_expire_time or key_id
# does not end in one and is shown. A false positive only hides a value from a diff.
SECRET_KEY_RE = re.compile(
    r"(?:password|passwd|pwd|passphrase|secret|token|key|credentials?)$|password|secret", re.I
)
_OPTION_LINE_RE = re.compile(
    # optional comment mark (a commented-out password is still a password), name, = or :, value
    r"(?m)^([ \t]*(?:[#;][ \t]*)?)([^\s=:#;\[][^=:\r\n]*?)([ \t]*[=:][ \t]*)([^\r\n]*)"
)


def is_secret_key(name):
    return bool(SECRET_KEY_RE.search(name.strip()))


def mask_secrets(text):
    """The file text with the value of every secret-bearing key masked (for diffs and results).

    sync_token becomes ``<secret sha256:...>`` (its fingerprint: a random 160-bit token cannot be
    guessed back from it, and nodes can be compared); every other secret becomes ``<secret>``
    (a fingerprint of a password would allow a dictionary attack). Any section, any line.
    """
    def repl(match):
        lead, name, sep, value = match.groups()
        if not value.strip() or not is_secret_key(name):
            return match.group(0)
        if name.strip().lower() == "sync_token":
            return f"{lead}{name}{sep}<secret {token_fingerprint(value.strip())}>"
        return f"{lead}{name}{sep}<secret>"
    return _OPTION_LINE_RE.sub(repl, text)


# --------------------------------------------------------------------------------------------
# Manual sync
# --------------------------------------------------------------------------------------------
def sync_command(script, library_id, force=False):
    """Argument list for one library: ``seaf-backup-cmd.sh sync [--force] <id>``."""
    return [script, "sync"] + (["--force"] if force else []) + [validate_library_id(library_id)]


def run_syncs(runner, script, library_ids, force=False):
    """Sync libraries one after another (each call blocks until that library is backed up).

    ``runner(argv) -> (rc, stdout, stderr)``. Every id is validated before the first command.
    A failing library does not stop the others; the caller decides from the outcomes.
    """
    ids = validate_library_ids(library_ids)
    outcomes = []
    for library_id in ids:
        argv = sync_command(script, library_id, force)
        rc, out, err = runner(argv)
        outcomes.append({
            "library_id": library_id,
            "result": "ok" if rc == 0 else "failed",
            "forced": bool(force),
            "rc": rc,
            "stdout": (out or "").strip(),
            "stderr": (err or "").strip(),
            "cmd": argv,
        })
    return outcomes


# --------------------------------------------------------------------------------------------
# Failover: unsync clients of libraries that failed to back up
# --------------------------------------------------------------------------------------------
_IDENT_RE = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")


def quote_identifier(name):
    if not isinstance(name, str) or not _IDENT_RE.match(name):
        raise SeafileBackupError(f"{name!r} is not a plain database or table name")
    return f"`{name}`"


def plan_token_deletion(database, library_ids, table="RepoUserToken"):
    """SELECT (preview) and DELETE statements with one placeholder per library id.

    Returns a dict with ``ids``, ``select`` and ``delete`` as (sql, params) pairs; ids are
    validated as UUIDs and never pasted into the SQL text.
    """
    ids = validate_library_ids(library_ids)
    target = f"{quote_identifier(database)}.{quote_identifier(table)}"
    if not ids:
        return {"ids": [], "select": None, "delete": None}
    marks = ", ".join(["%s"] * len(ids))
    return {
        "ids": ids,
        "select": (f"SELECT repo_id, email FROM {target} WHERE repo_id IN ({marks})"
                   " ORDER BY repo_id, email", list(ids)),
        "delete": (f"DELETE FROM {target} WHERE repo_id IN ({marks})", list(ids)),
    }


# --------------------------------------------------------------------------------------------
# Prometheus textfile-collector metrics
# --------------------------------------------------------------------------------------------
METRIC_PREFIX = "seafile_backup"
_LAST_SUCCESS_RE = re.compile(r"^seafile_backup_last_success_timestamp_seconds\s+(\S+)\s*$", re.M)


def previous_last_success(text):
    """The last-success timestamp carried in an earlier metrics file, or None."""
    match = _LAST_SUCCESS_RE.search(text or "")
    if not match:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _running(value):
    """Thread state as reported (True, "Yes", "Connecting", "No", None) as a boolean."""
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "true", "1")
    return bool(value)


def render_metrics(now, check_ok, status=None, replication=None, previous_text=None):
    """Exposition text for node_exporter's textfile collector (written by the shared writer of
    plugins/module_utils/backup_metrics.py: HELP/TYPE lines, escaping, value format).

    ``status`` is a ``parse_status`` result (or None when the status command failed),
    ``replication`` the health facts (healthy, io_running, sql_running, seconds_behind) or None.
    ``check_ok`` says whether the whole check succeeded (status read, replication healthy,
    no failed library); the last-success timestamp advances only then and is otherwise carried
    over from ``previous_text`` (the file written by the previous run).
    """
    last_success = now if check_ok else previous_last_success(previous_text)
    families = []

    def metric(name, help_text, samples):
        families.append(render_family(f"{METRIC_PREFIX}_{name}", help_text, samples))

    metric("check_success",
           "1 if the last check read the status, replication was healthy and no library failed.",
           [((), bool(check_ok))])
    metric("status_up", "1 if seaf-backup-cmd.sh status could be run and parsed.", [((), status is not None)])
    if status is not None:
        metric("libraries", "Libraries per backup state, from seaf-backup-cmd.sh status.",
               [((("state", state),), status[state]) for state in STATES])
    metric("replication_up", "1 if the replication health could be read.", [((), replication is not None)])
    if replication is not None:
        metric("replication_healthy", "1 if the database replication to the backup server is healthy.",
               [((), _running(replication.get("healthy")))])
        metric("replication_io_running", "1 if the replica IO thread runs.",
               [((), _running(replication.get("io_running")))])
        metric("replication_sql_running", "1 if the replica SQL thread runs.",
               [((), _running(replication.get("sql_running")))])
        lag = replication.get("seconds_behind")
        metric("replication_lag_seconds", "Seconds_Behind_Master of the backup server (NaN when unknown).",
               [((), None if lag in (None, "") else float(lag))])
    metric("last_check_timestamp_seconds", "Unix time of the last check.", [((), float(now))])
    if last_success is not None:
        metric("last_success_timestamp_seconds",
               "Unix time of the last successful check; alert on time() minus this.",
               [((), float(last_success))])
    metric("seconds_since_last_success",
           "Seconds from the last successful check to the last check (NaN if never).",
           [((), None if last_success is None else float(now) - float(last_success))])
    return render_text(families)
