#!/usr/bin/python
"""Manage the [backup] section of seafile.conf, keeping the rest of the file byte for byte."""

DOCUMENTATION = r"""
---
module: seafile_conf_backup
short_description: Manage the [backup] section of seafile.conf (real-time backup server)
description:
  - On a primary Seafile node sets C(backup_url) and C(sync_token); on the backup server sets
    C(primary_url), C(sync_token) and C(sync_poll_interval). Keys of the other side are removed
    from the section.
  - Only the C([backup]) section is edited; every other byte of the file (other sections,
    comments, blank lines, line endings) is kept. Comments and unknown keys inside the section stay.
  - Reports C(changed) only when the file content changes; supports check mode and diff.
  - The diff is the whole file with every secret-bearing value masked, in every section (commented
    lines too), so neither C(--diff) output nor the registered result carries a secret. A key is
    secret-bearing when its name ends in C(password), C(passwd), C(pwd), C(passphrase), C(secret),
    C(token), C(key), C(credential) or C(credentials), or contains C(password) or C(secret), case-insensitive
    (C([database] password), C([commit_object_backend] key), C(jwt_private_key)). C(sync_token)
    shows as C(<secret sha256:...>), a fingerprint to compare nodes; any other secret as
    C(<secret>).
  - C(state=query) reads the section without changing anything (the result holds the token,
    so use C(no_log) on that task).
  - The file is written to a temporary 0600 file in the same directory and renamed into place.
options:
  path:
    description: Path of seafile.conf.
    type: path
    default: /opt/seafile/conf/seafile.conf
  role:
    description: Which side this node is. Required unless C(state=query) or C(state=absent).
    type: str
    choices: [primary, backup]
  backup_url:
    description: URL of the backup server (http or https). Required for C(role=primary).
    type: str
  primary_url:
    description: URL of the primary server (http or https). Required for C(role=backup).
    type: str
  sync_token:
    description: The shared secret, 40 lowercase hex characters. Required with C(state=present).
    type: str
  sync_poll_interval:
    description: Hours between full polls of the primary by the backup server (C(role=backup)).
    type: int
    default: 1
  state:
    description: C(present) writes the section, C(absent) removes it, C(query) only reads it.
    type: str
    choices: [present, absent, query]
    default: present
  create:
    description:
      - Create the file if it does not exist (otherwise a missing file is an error).
      - A created file is 0600 from its creation (it holds the token), owned by the user the module
        runs as; give O(owner) and O(group) (e.g. C(seafile)), or O(mode), for Seafile's processes.
        An existing file keeps its mode and owner unless O(mode), O(owner) or O(group) are given,
        except that with C(state=present) (the file holds the token) an existing file readable by
        others loses the permissions of others (C(o-rwx)) unless O(mode) is given.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.files
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Point a primary node at the backup server
  seafile_conf_backup:
    path: /opt/seafile/conf/seafile.conf
    role: primary
    backup_url: https://backup.example.org
    sync_token: "{{ vault_seafile_sync_token }}"
  no_log: true

- name: Configure the backup server
  seafile_conf_backup:
    role: backup
    primary_url: https://seafile.example.org
    sync_token: "{{ vault_seafile_sync_token }}"
    sync_poll_interval: 3
  no_log: true
"""

RETURN = r"""
settings:
  description: The managed keys now in the section (after the change, or as read), token excluded.
  returned: always
  type: dict
  sample: {backup_url: "https://backup.example.org"}
sync_token:
  description: The token found in the file, "" when none (C(state=query) only; hide the task with no_log).
  returned: when state=query
  type: str
sync_token_fingerprint:
  description: A short fingerprint of the token in the file, to compare nodes without disclosing it.
  returned: always
  type: str
section_present:
  description: Whether the file has a [backup] section (before the change).
  returned: always
  type: bool
error:
  description:
    - With C(state=query), why the section could not be read. The task does not fail, so that a
      no_log task can still report it.
  returned: when state=query and the section cannot be read
  type: str
exists:
  description: Whether the file exists.
  returned: always
  type: bool
"""

import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.seafile_backup import (
    BACKUP_KEYS,
    MANAGED_KEYS,
    PRIMARY_KEYS,
    SeafileBackupError,
    desired_settings,
    edit_backup_section,
    has_backup_section,
    mask_secrets,
    read_backup_section,
    token_fingerprint,
)


def read_text(path):
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return handle.read()


def write_atomically(module, path, text):
    """Write a temporary 0600 file in the same directory and rename it over path.

    An existing file keeps its mode, owner and SELinux context (atomic_move copies them). A new
    file keeps the temporary file's 0600 from its creation to the rename: atomic_move would widen
    a file it creates to 0666 & ~umask after the rename, so a new file is renamed here instead.
    The file arguments (mode, owner, group) are applied afterwards by the caller.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".seafile.conf.", dir=directory)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(path):
            module.atomic_move(tmp, path)
        else:
            os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def public_settings(values):
    return {key: value for key, value in values.items() if key in MANAGED_KEYS and key != "sync_token"}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/opt/seafile/conf/seafile.conf"),
            role=dict(type="str", choices=["primary", "backup"]),
            backup_url=dict(type="str"),
            primary_url=dict(type="str"),
            sync_token=dict(type="str", no_log=True),
            sync_poll_interval=dict(type="int", default=1),
            state=dict(type="str", choices=["present", "absent", "query"], default="present"),
            create=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("role", "sync_token"))],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    exists = os.path.exists(path)
    try:
        # input first: a bad value is an error before the file is even read
        if p["state"] == "present":
            settings = desired_settings(p["role"], p["backup_url"], p["primary_url"], p["sync_token"],
                                        p["sync_poll_interval"])
        if exists:
            before = read_text(path)
        elif p["state"] == "present" and not p["create"]:
            module.fail_json(msg=f"{path} does not exist (is Seafile installed? create=true creates it)")
        else:
            before = ""
        current = read_backup_section(before)
    except SeafileBackupError as exc:
        if p["state"] != "query":
            module.fail_json(msg=str(exc))
        # query runs under no_log (its result holds the token): report the problem in a key
        # the playbook can show instead of a hidden failure
        module.exit_json(changed=False, exists=exists, error=str(exc), sync_token="", settings={},
                         section_present=True, sync_token_fingerprint=None)
    except OSError as exc:
        module.fail_json(msg=f"cannot read {path}: {exc}")

    section_present = has_backup_section(before)
    result = dict(changed=False, exists=exists, section_present=section_present,
                  settings=public_settings(current),
                  sync_token_fingerprint=token_fingerprint(current.get("sync_token")))
    if p["state"] == "query":
        result["sync_token"] = current.get("sync_token", "")
        module.exit_json(**result)

    try:
        if p["state"] == "present":
            keep = PRIMARY_KEYS if p["role"] == "primary" else BACKUP_KEYS
            remove = [k for k in MANAGED_KEYS if k not in keep]
            after = edit_backup_section(before, settings, remove_keys=remove)
        else:
            after = edit_backup_section(before, {}, state="absent")
    except SeafileBackupError as exc:
        module.fail_json(msg=str(exc))

    changed = after != before
    if changed:
        result["diff"] = dict(before=mask_secrets(before), after=mask_secrets(after),
                              before_header=path, after_header=path)
        if not module.check_mode:
            write_atomically(module, path, after)
    new_values = read_backup_section(after)
    result["settings"] = public_settings(new_values)
    result["sync_token_fingerprint"] = token_fingerprint(new_values.get("sync_token"))
    if os.path.exists(path):
        file_args = module.load_file_common_arguments(p)
        if p["state"] == "present" and file_args.get("mode") is None:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o007:  # the token is a secret: not for other users, whatever the file was
                file_args["mode"] = mode & ~0o007
        changed = module.set_fs_attributes_if_different(file_args, changed)
    result["changed"] = changed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
