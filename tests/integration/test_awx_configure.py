"""playbooks/awx_configure.yml without a live AWX: every strategy gets a job template through
run_backup.yml, and a job template naming an unknown strategy is refused before AWX is called."""
import os
import subprocess
import sys

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def load(path):
    with open(os.path.join(TOP, path)) as handle:
        return yaml.safe_load(handle)


def test_one_job_template_per_strategy_with_a_schedule_and_survey():
    strategies = load("playbooks/vars/run_backup_strategies.yml")["run_backup_strategies"]
    config = load("playbooks/vars/awx_configure.yml")
    templates = {entry["strategy"]: entry for entry in config["awx_configure_strategies"]}
    assert set(templates) == set(strategies)
    for entry in templates.values():
        assert entry["rrule"].startswith("DTSTART:") and "RRULE:FREQ=" in entry["rrule"]
        assert set(entry["credentials"]) <= {"mysql", "s3"}
        for question in entry["survey"] + config["awx_configure_common_survey"]:
            assert {"question_name", "variable", "type"} <= set(question)


def test_unknown_strategy_refused_before_awx_is_contacted(tmp_path):
    extra = tmp_path / "site.yml"
    extra.write_text(yaml.safe_dump({"awx_configure_strategies": [
        {"strategy": "tape_backup", "inventory": "x", "credentials": [], "rrule": "x", "survey": []}]}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               CONTROLLER_HOST="https://127.0.0.1:9", PATH=BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,",
                           "playbooks/awx_configure.yml", "-e", f"@{extra}",
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          cwd=TOP, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode != 0
    assert "unknown strategies in awx_configure_strategies: ['tape_backup']" in proc.stdout
    assert "Create the organization" not in proc.stdout
