"""The secret canary's check (tests/lib/canary.py) on files it must and must not flag."""
import os

from tests.lib import canary

SECRET = canary.canary("unit-check-pw")


def write(path, text, mode):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_canary_in_the_playbook_output_is_a_leak_whatever_the_log_mode(tmp_path):
    log = write(tmp_path / "ansible-output.log", f"ok: [localhost] => msg: {SECRET}\n", 0o600)
    leaks = canary.find_leaks([tmp_path], [log])
    assert len(leaks) == 1 and "the playbook output" in leaks[0] and SECRET in leaks[0]


def test_a_file_readable_by_others_holding_a_canary_is_a_leak(tmp_path):
    (tmp_path / "sub").mkdir()
    opened = write(tmp_path / "sub" / "seafile.conf", f"password = {SECRET}\n", 0o644)
    assert [leak.split(":")[0] for leak in canary.find_leaks([tmp_path])] == [str(opened)]
    os.chmod(opened, 0o640)  # group-readable only: the owner's business, not a leak
    assert canary.find_leaks([tmp_path]) == []
    os.chmod(opened, 0o644)
    os.chmod(tmp_path / "sub", 0o750)  # in a directory others cannot search: not reachable
    assert canary.find_leaks([tmp_path]) == []


def test_a_record_report_progress_or_metrics_file_holding_a_canary_is_a_leak_whatever_its_mode(tmp_path):
    for name in ("backup_report.txt", "db.progress.json", "backup_runs.json", "backup.prom"):
        write(tmp_path / name, f"x {SECRET} y", 0o600)
    assert len(canary.find_leaks([tmp_path])) == 4


def test_a_private_secret_file_and_files_without_a_canary_pass(tmp_path):
    canary.write_private(tmp_path / "my.cnf", f"[client]\npassword={SECRET}\n")
    assert oct(os.stat(tmp_path / "my.cnf").st_mode & 0o777) == "0o600"
    write(tmp_path / "notes.txt", "CANARY- alone is not a registered value", 0o644)
    os.symlink(tmp_path / "my.cnf", tmp_path / "link-to-secret")  # a symlink is not followed
    assert canary.find_leaks([tmp_path], [tmp_path / "missing.log"]) == []


def test_a_registered_value_is_found_as_registered():
    token = canary.register("0123456789abcdef0123456789abcdef01234567")
    assert token in canary.values() and SECRET in canary.values()


def test_a_molecule_log_is_checked_for_any_canary_and_the_registered_values(tmp_path):
    import subprocess
    import sys

    log = write(tmp_path / "molecule.log", "TASK [x]\nok: [lab-btw-host]\n" + "x" * (9 << 20) + "\n", 0o600)
    assert canary.scan_output(log) == []
    with open(log, "a") as f:  # past the 8 MiB a tree's file is read up to: a log is read whole
        f.write("msg: CANARY-molecule-unregistered-pw and lab-repl-password\n")
    leaks = canary.scan_output(log)
    assert sorted(leak.rsplit(" ", 1)[1] for leak in leaks) == ["'CANARY-molecule-unregistered-pw'",
                                                                "'lab-repl-password'"]
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-m", "tests.lib.canary", str(log)], cwd=top,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "CANARY-molecule-unregistered-pw" in run.stderr
