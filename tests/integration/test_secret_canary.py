"""The secret canary end to end: a playbook run by a test logs its output where the autouse fixture
(tests/integration/conftest.py) looks, and a canary printed there is found. ~3 s."""
import os
import subprocess
import sys

from tests.lib import canary

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(TOP, ".venv", "bin")
LEAKY = canary.canary("printed-by-a-debug-task")

PLAYBOOK = """- name: A play that prints a secret
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Print it
      ansible.builtin.debug:
        msg: "the password is {{ secret }}"
    - name: Write it readable by all
      ansible.builtin.copy:
        content: "{{ secret }}"
        dest: "{{ dest }}"
        mode: "0644"
"""


def test_a_canary_a_playbook_prints_or_writes_open_is_found(tmp_path, secret_canary):
    playbook = tmp_path / "leaky.yml"
    playbook.write_text(PLAYBOOK)
    dest = tmp_path / "out" / "secret.txt"
    dest.parent.mkdir()
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"))  # ANSIBLE_LOG_PATH inherited
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"secret={LEAKY}",
                           "-e", f"dest={dest}", str(playbook)],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert secret_canary == tmp_path / "ansible-output.log"
    leaks = canary.find_leaks([tmp_path], [secret_canary])
    assert sorted(leak.split(":")[0] for leak in leaks) == sorted([str(secret_canary), str(dest)]), leaks
    assert all(LEAKY in leak for leak in leaks)
    # the fixture's own check at teardown passes once both are gone
    secret_canary.write_text("")
    os.chmod(dest, 0o600)
