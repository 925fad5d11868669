"""Shared helpers of the Seafile integration tests: run the project's playbooks for real with
ansible-playbook against a throw-away inventory of local-connection hosts in tmp_path."""
import json
import os
import re
import subprocess
import sys

import yaml

from tests.lib import canary

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDIN = os.path.join(TOP, "tests", "standins", "seaf-backup-cmd.sh")
ID1 = "f690ea2c-fe4d-459a-ba1e-165cdc6df391"
ID2 = "e2df70b5-cd80-496f-98cf-c9f038cf1307"
ID3 = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"


def write_inventory(path, groups, host_vars=None, all_vars=None):
    """groups: {group: [hosts]}; every host uses the local connection and this Python."""
    host_vars = host_vars or {}
    inventory = {"all": {"vars": dict({"ansible_connection": "local",
                                       "ansible_python_interpreter": sys.executable}, **(all_vars or {})),
                         "children": {}}}
    for group, hosts in groups.items():
        inventory["all"]["children"][group] = {"hosts": {h: host_vars.get(h) or {} for h in hosts}}
    canary.write_private(path, yaml.safe_dump(inventory))
    return path


class Run:
    def __init__(self, proc, report_path):
        self.rc = proc.returncode
        self.stdout = proc.stdout  # alone: a JSON callback's document (stderr may carry warnings)
        self.out = proc.stdout + proc.stderr
        self.report = {}
        if os.path.exists(report_path):
            with open(report_path) as handle:
                self.report = json.load(handle)

    def recap(self):
        """{host: {ok, changed, failed, ...}} from the PLAY RECAP."""
        result = {}
        for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", self.out, re.M):
            result[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
        return result

    def changed(self):
        return sum(v.get("changed", 0) for v in self.recap().values())

    @property
    def backup_runs(self):
        """The backup_runs published with set_stats (via the project's backup_report callback)."""
        return self.report.get("runs", [])


def run_playbook(tmp_path, playbook, inventory, extra_vars=None, check=False, diff=False, verbose=False,
                 env=None):
    """Run playbooks/<playbook> from the project directory; returns a Run."""
    report_path = tmp_path / f"report-{os.urandom(4).hex()}.json"
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
            os.path.join(TOP, "playbooks", playbook)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbose:
        argv.append("-v")
    environment = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_CALLBACKS_ENABLED="backup_report", BACKUP_REPORT_PATH=str(report_path),
                       ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
                       ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote-tmp"),
                       ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    environment.pop("ANSIBLE_STDOUT_CALLBACK", None)
    environment.update(env or {})
    proc = subprocess.run(argv, cwd=TOP, capture_output=True, text=True, env=environment, timeout=600,
                          check=False)
    return Run(proc, report_path)


def write_state(path, **state):
    """State file of the seaf-backup-cmd.sh stand-in."""
    lines = []
    for key, value in state.items():
        if isinstance(value, (list, tuple)):
            value = '"' + " ".join(value) + '"'
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")
    return path
