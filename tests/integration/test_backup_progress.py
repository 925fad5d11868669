"""Progress on long steps: a real async module, polled by roles/backup_progress/tasks/poll.yml, and
cancelled by roles/backup_progress/tasks/cancel.yml."""
import json
import os
import re
import subprocess
import sys
import time

from ansible.module_utils.progress import read_progress

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
    return play(tmp_path, "play.yml", PLAYBOOK,
                ["-e", f"ansible_python_interpreter={sys.executable}", "-e", f"work={tmp_path}", *extra], 120)


def play(tmp_path, name, text, args, timeout):
    """ansible-playbook on localhost with the project's library, roles and the test's own modules,
    its async jobs under tmp_path: the finished process."""
    (tmp_path / name).write_text(text)
    library = [os.path.join(TOP, "library"), os.path.join(TOP, "tests", "integration", "progress_library")]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LIBRARY=os.pathsep.join(library),
               ANSIBLE_ROLES_PATH=os.path.join(TOP, "roles"), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
               # a job killed by the cancel tests leaves its AnsiballZ payload directory: in tmp_path
               TMPDIR=str(tmp_path),
               PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / name),
         *args],
        cwd=TOP, env=env, text=True, capture_output=True, check=False, timeout=timeout)


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
    assert os.listdir(tmp_path / "async") == []  # the failed job's result file was cleaned up too


CANCEL_PLAYBOOK = """
- name: A long step cancelled from the play (as a rescue section does)
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start the long copy (about a minute)
      progress_demo:
        dest: "{{ work }}/out.bin"
        size: 10485760
        chunk: 16384
        pause: 0.1
        progress_file: "{{ progress | default(omit) }}"
        ignore_sigterm: "{{ ignore_sigterm | default(false) }}"
        child: "{{ child | default(false) }}"
      async: 600
      poll: 0
      register: copy_job

    - name: Wait until it writes
      ansible.builtin.wait_for:
        path: "{{ work }}/out.bin.part"
        timeout: 60

    - name: Cancel in check mode
      backup_progress:
        state: cancelled
        results_file: "{{ copy_job.results_file }}"
        path: "{{ progress | default(omit) }}"
      check_mode: true
      register: preview

    - name: Report the preview
      ansible.builtin.debug:
        msg: "preview: {{ preview.msg }}; changed={{ preview.changed }}"

    - name: Cancel
      ansible.builtin.include_role:
        name: backup_progress
        tasks_from: cancel
      vars:
        backup_progress_job: "{{ copy_job }}"
        backup_progress_file: "{{ progress | default('') }}"
        backup_progress_label: demo copy
        backup_progress_cancel_grace: "{{ grace | default(30) }}"

    - name: Report the cancel
      ansible.builtin.debug:
        msg: >-
          cancel: changed={{ backup_progress_cancel.changed }}
          signals={{ backup_progress_cancel.signals | join(',') }}

    - name: Cancel again
      ansible.builtin.include_role:
        name: backup_progress
        tasks_from: cancel
      vars:
        backup_progress_job: "{{ copy_job }}"
        backup_progress_file: "{{ progress | default('') }}"
        backup_progress_label: demo copy

    - name: Report the second cancel
      ansible.builtin.debug:
        msg: "again: changed={{ backup_progress_cancel.changed }}"
"""


def run_cancel(tmp_path, **extra):
    extra = dict(extra, ansible_python_interpreter=sys.executable, work=str(tmp_path))
    proc = play(tmp_path, "cancel.yml", CANCEL_PLAYBOOK, ["-e", json.dumps(extra)], 300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_cancel_with_a_progress_file_runs_the_job_cleanup_and_is_idempotent(tmp_path):
    out = run_cancel(tmp_path, progress=str(tmp_path / "copy.progress"), child=True)
    assert re.search(r"preview: would send SIGTERM to demo copy \(pid \d+\), then SIGKILL after 30 s; "
                     r"changed=True", out), out
    pid = re.search(r"cancelled demo copy \(pid (\d+)\): SIGTERM, exited after [\d.]+ s, its cleanup ran; "
                    r"killed 1 process\(es\) it had left running; the job says: demo copy cancelled at \d+ "
                    r"bytes, partial file removed", out)
    assert pid, out
    assert "cancel: changed=True signals=SIGTERM" in out
    assert "nothing to cancel: demo copy has already ended (failed)" in out and "again: changed=False" in out
    assert not (tmp_path / "out.bin.part").exists() and not (tmp_path / "out.bin").exists()
    child = int((tmp_path / "out.bin.child").read_text())
    assert not os.path.exists(f"/proc/{child}") or b"600" not in open(f"/proc/{child}/cmdline", "rb").read()
    assert read_progress(str(tmp_path / "copy.progress"))["state"] == "failed"
    assert os.listdir(tmp_path / "async") == []  # the async job file was cleaned up


def test_cancel_without_a_progress_file_finds_the_async_job_process(tmp_path):
    out = run_cancel(tmp_path)
    assert re.search(r"preview: would send SIGTERM to the job \(pid \d+\)", out), out
    assert re.search(r"cancelled the job \(pid \d+\): SIGTERM, exited after [\d.]+ s; the job says: "
                     r"demo copy cancelled at \d+ bytes, partial file removed", out), out
    assert "again: changed=False" in out and "nothing to cancel: no running job found for" in out
    assert not (tmp_path / "out.bin.part").exists()


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_and_the_play_says_its_cleanup_did_not_run(tmp_path):
    out = run_cancel(tmp_path, progress=str(tmp_path / "copy.progress"), ignore_sigterm=True, grace=1)
    assert re.search(r"cancelled demo copy \(pid \d+\): no exit within 1 s of SIGTERM, SIGKILL sent: its "
                     r"cleanup did NOT run", out), out
    assert "cancel: changed=True signals=SIGTERM,SIGKILL" in out
    assert (tmp_path / "out.bin.part").exists()  # what SIGKILL leaves behind, and why cores handle SIGTERM
    assert "again: changed=False" in out




KILLED_PLAYBOOK = """
- name: A job whose async wrapper is killed with -9
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The copy fails, its message kept
      block:
        - name: Start the long copy (about a minute)
          progress_demo:
            dest: "{{ work }}/out.bin"
            size: 10485760
            chunk: 16384
            pause: 0.1
            progress_file: "{{ work }}/copy.progress"
          async: 600
          poll: 0
          register: copy_job

        - name: Once it writes, kill -9 its async wrapper (the process that would write its result)
          ansible.builtin.shell: |
            set -e
            for i in $(seq 600); do [ -s {{ work }}/copy.progress ] && break; sleep 0.1; done
            module=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \\
              {{ work }}/copy.progress)
            kill -9 "$(ps -o ppid= -p "$module" | tr -d ' ')"
          changed_when: true

        - name: Follow the copy
          ansible.builtin.include_role:
            name: backup_progress
            tasks_from: poll
          vars:
            backup_progress_job: "{{ copy_job }}"
            backup_progress_file: "{{ work }}/copy.progress"
            backup_progress_label: demo copy
            backup_progress_interval: 1
            backup_progress_timeout: 500
      rescue:
        - name: Report the failure
          ansible.builtin.debug:
            msg: "FAILED: {{ ansible_failed_result.msg }}"

        - name: Stop the copy if it still runs
          ansible.builtin.include_role:
            name: backup_progress
            tasks_from: cancel
          vars:
            backup_progress_job: "{{ copy_job }}"
            backup_progress_file: "{{ work }}/copy.progress"
            backup_progress_label: demo copy
"""


def test_a_job_whose_wrapper_is_killed_fails_the_poll_at_once_and_the_rescue_stops_the_orphan(tmp_path):
    """A real async_wrapper job whose wrapper is killed with -9: its job file stays finished: false
    forever while the module runs on, orphaned. The poll fails within a few rounds, not at its timeout
    (500 s here), with the poll's message (not "One or more items failed"); the rescue's cancel stops
    the orphan. (The module process killed with -9, and a job file that is not JSON: test_progress.py.)"""
    proc = play(tmp_path, "killed.yml", KILLED_PLAYBOOK,
                ["-e", json.dumps({"ansible_python_interpreter": sys.executable, "work": str(tmp_path)})],
                180)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    orphan = re.search(r"FAILED: demo copy: the job's process ended without a result: killed\? "
                       r"async job \S+: its job file still says finished: false and the async_wrapper "
                       r"process that would write its result runs no more .*its module process "
                       r"\(pid (\d+)\) still runs without its wrapper", out)
    assert orphan, out
    # at the first poll rounds, where the copy would last a minute and the poll's timeout is 500 rounds
    rounds = re.findall(r"^(?:ok: \[localhost\] => |failed: \[localhost\] )\(item=", out, re.M)
    assert 1 <= len(rounds) <= 3, out
    assert re.search(rf"cancelled demo copy \(pid {orphan.group(1)}\): SIGTERM", out), out
    assert ended(int(orphan.group(1))), f"the orphan (pid {orphan.group(1)}) still runs"
    assert read_progress(str(tmp_path / "copy.progress"))["state"] == "failed"
    assert os.listdir(tmp_path / "async") == []  # the job file was cleaned up


def ended(pid, wait=30):
    """The process has exited: gone, or a zombie its new parent has not reaped yet (an orphan's
    parent is PID 1, which on some hosts reaps late). Waits a little for a SIGTERM to take effect."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False
