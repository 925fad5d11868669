"""Progress on long steps: a real async module, polled by roles/backup_progress/tasks/poll.yml."""
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

PLAYBOOK = """
- name: A long step followed with progress
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start the long copy
      progress_demo:
        dest: "{{ work }}/out.bin"
        size: "{{ size }}"
        chunk: "{{ chunk | default(65536) }}"
        pause: "{{ pause | default(0.1) }}"
        progress_file: "{{ work }}/copy.progress"
        fail_at: "{{ fail_at | default(omit) }}"
      async: 600
      poll: 0
      register: copy_job

    - name: Follow the copy
      ansible.builtin.include_role:
        name: backup_progress
        tasks_from: poll
      vars:
        backup_progress_job: "{{ copy_job }}"
        backup_progress_file: "{{ work }}/copy.progress"
        backup_progress_label: demo copy
        backup_progress_interval: 1

    - name: Show the job result
      ansible.builtin.debug:
        msg: "copied {{ backup_progress_result.size }} bytes"
"""


def run(tmp_path, *extra):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    library = [os.path.join(TOP, "library"), os.path.join(TOP, "tests", "integration", "progress_library")]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LIBRARY=os.pathsep.join(library),
               ANSIBLE_ROLES_PATH=os.path.join(TOP, "roles"), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
               PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"work={tmp_path}", *extra],
        cwd=TOP, env=env, text=True, capture_output=True, check=False, timeout=120)


def test_progress_lines_at_a_steady_interval_then_the_result(tmp_path):
    # 48 chunks of 16 KiB, 0.2 s apart: about 10 s, so several 1 s polls even on a loaded machine
    proc = run(tmp_path, "-e", "size=786432", "-e", "chunk=16384", "-e", "pause=0.2")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = re.findall(r"\(item=(demo copy, .*?)\)$", out, re.M)
    assert lines, out
    running = [line for line in lines if "% " in line or "left" in line]
    assert len(running) >= 2, lines
    assert all(" / 768.0 KiB (" in line for line in lines[:-1]), lines
    assert any("/s" in line and "left" in line for line in running), lines
    assert lines[-1].endswith("done"), lines
    assert "copied 786432 bytes" in out
    assert os.path.getsize(tmp_path / "out.bin") == 786432


def test_failed_job_fails_the_play_with_its_message(tmp_path):
    proc = run(tmp_path, "-e", "size=786432", "-e", "fail_at=131072")
    out = proc.stdout
    assert proc.returncode != 0
    assert "failed: disk full (simulated)" in out
    assert "demo copy failed at 131072 bytes" in out
    assert "copied" not in out
