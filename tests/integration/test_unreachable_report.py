"""A real strategy playbook (fs_backup.yml) with one host that cannot be reached (ssh to a closed
loopback port) and one good local host: the report JSON holds a failed run for the lost host and
the good host's own run; the metrics mark the lost host and clear the mark once it is reached
(issue 15 item 19)."""
import json
import os
import subprocess
import sys

import yaml

from tests.lib import canary
from tests.lib.ports import free_port

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def host_vars(tmp_path, name, source, reachable):
    root = tmp_path / "root" / name
    root.mkdir(parents=True, exist_ok=True)
    if reachable:
        connection = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    else:  # nothing listens there: ssh gets "Connection refused" at once
        connection = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": free_port(),
                      "ansible_user": "nobody"}
    return dict(connection, ansible_become=False, btw_backup_root=str(root),
                btw_backup_sets=[{"name": f"data-{name}", "type": "tar", "source": source,
                                  "destination": "fs/data"}])


def run_fs_backup(tmp_path, lost_reachable):
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True, exist_ok=True)
    (source / "d" / "f.txt").write_text("one\n")
    inventory = tmp_path / "inventory.yml"
    canary.write_private(inventory, yaml.safe_dump({"all": {"children": {"backup_hosts": {"hosts": {
        "good": host_vars(tmp_path, "good", str(source), True),
        "lost": host_vars(tmp_path, "lost", str(source), lost_reachable)}}}}}))
    report, metrics = tmp_path / "report.json", tmp_path / "textfile"
    metrics.mkdir(exist_ok=True)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    env.pop("BACKUP_REPORT_PATH", None)
    env.pop("BACKUP_METRICS_DIR", None)
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inventory),
                           os.path.join(TOP, "playbooks", "fs_backup.yml"),
                           "-e", f"backup_report_path={report}", "-e", f"backup_metrics_dir={metrics}"],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    document = json.loads(report.read_text()) if report.exists() else None
    return proc.returncode, document, (metrics / "backup_toolkit.prom").read_text(), output


def test_unreachable_host_is_reported_failed_and_marked_in_the_metrics(tmp_path):
    rc, document, metrics, output = run_fs_backup(tmp_path, lost_reachable=False)
    assert rc == 4, output  # ansible-playbook: a host was unreachable
    assert document is not None, output
    by_host = {run["host"]: run for run in document["runs"]}
    assert set(by_host) == {"good", "lost"}, document
    assert by_host["good"]["result"] == "ok" and by_host["good"]["strategy"] == "fs_backup"
    lost = by_host["lost"]
    assert (lost["strategy"], lost["result"], lost["unreachable"]) == ("fs_backup", "failed", True)
    assert lost["details"].startswith("unreachable: ") and "Connection refused" in lost["details"]
    assert document["summary"] == {"runs": 2, "ok": 1, "failed": 1}
    assert "2 backup run(s): 1 ok, 1 failed" in output
    assert 'backup_last_unreachable{strategy="fs_backup",set="lost"} 1' in metrics
    assert 'backup_last_result{strategy="fs_backup",set="data-good"} 1' in metrics
    assert 'set="data-lost"' not in metrics  # the lost host's set never ran: no failed series to go stale

    # the host is back: its own run is published, the mark is cleared
    rc, document, metrics, output = run_fs_backup(tmp_path, lost_reachable=True)
    assert rc == 0, output
    assert {(run["host"], run["result"]) for run in document["runs"]} == {("good", "ok"), ("lost", "ok")}
    assert not any(run.get("unreachable") for run in document["runs"])
    assert 'backup_last_unreachable{strategy="fs_backup",set="lost"} 0' in metrics
    assert 'backup_last_result{strategy="fs_backup",set="data-lost"} 1' in metrics
