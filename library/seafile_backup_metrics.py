#!/usr/bin/python
"""Write the Seafile backup status as Prometheus textfile-collector metrics."""

DOCUMENTATION = r"""
---
module: seafile_backup_metrics
short_description: Write Seafile backup status and replication health for node_exporter's textfile collector
description:
  - Renders library counts per state, replication health and lag, the time of this check and the
    time of the last successful check as Prometheus metrics, and writes them to a C(.prom) file.
  - The file is written through the project's one textfile writer (plugins/module_utils/backup_metrics.py,
    shared with M(backup_metrics)) to a temporary name in the same directory and renamed into place,
    so the collector never reads half a file.
  - The last-success timestamp advances only when C(check_ok) is true; otherwise it is carried
    over from the previous file, so C(time() - seafile_backup_last_success_timestamp_seconds)
    keeps growing while checks fail.
  - Always reports C(changed) outside check mode (the check time changes on every run).
options:
  path:
    description: The .prom file (in node_exporter's --collector.textfile.directory).
    type: path
    required: true
  status:
    description: The C(status) returned by M(seafile_backup_status); omit when it could not be read.
    type: dict
  replication:
    description:
      - Replication health facts (C(healthy), C(io_running), C(sql_running), C(seconds_behind)),
        as returned by mysql_replication_facts with mode=health; omit when they could not be read.
    type: dict
  check_ok:
    description: Whether the whole check succeeded.
    type: bool
    required: true
  now:
    description: Unix time of the check (default the module's clock); for tests.
    type: float
  mode:
    description: Permissions of the file, in octal (C(0644), or C("0644") quoted); symbolic modes are refused.
    type: raw
    default: "0644"
author:
  - Backup toolkit team
"""

EXAMPLES = r"""
- name: Publish the check for Prometheus
  seafile_backup_metrics:
    path: /var/lib/prometheus/node-exporter/seafile_backup.prom
    status: "{{ seafile_status.status }}"
    replication: "{{ seafile_replication }}"
    check_ok: true
"""

RETURN = r"""
metrics:
  description: The text written.
  returned: always
  type: str
"""

import os
import time

from ansible.module_utils.backup_metrics import write_textfile
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.seafile_backup import render_metrics


def octal_mode(value):
    """The file mode as an int: 0o644, 420 (YAML 0644 unquoted) or the string "0644"."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            return None
    return mode if 0 <= mode <= 0o7777 else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            status=dict(type="dict"),
            replication=dict(type="dict"),
            check_ok=dict(type="bool", required=True),
            now=dict(type="float"),
            mode=dict(type="raw", default="0644"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    mode = octal_mode(p["mode"])
    if mode is None:
        module.fail_json(msg=f"mode must be an octal file mode such as 0644, got {p['mode']!r}")
    previous = None
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                previous = handle.read()
        except OSError as exc:
            module.fail_json(msg=f"cannot read {path}: {exc}")
    status = p["status"] or None
    text = render_metrics(p["now"] if p["now"] is not None else time.time(), p["check_ok"], status,
                          p["replication"] or None, previous)
    if module.check_mode:
        module.exit_json(changed=True, metrics=text)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        module.fail_json(msg=f"directory {directory} does not exist (is the textfile collector set up?)")
    try:
        write_textfile(path, text, mode)
    except OSError as exc:
        module.fail_json(msg=f"cannot write {path}: {exc}")
    module.exit_json(changed=True, metrics=text)


if __name__ == "__main__":
    main()
