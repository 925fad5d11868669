"""backup_report: where the JSON goes without an explicit path (only a run on the controller decides)."""
import importlib.util
import os

from ansible.inventory.group import Group
from ansible.inventory.host import Host

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("backup_report_path_under_test",
                                              os.path.join(TOP, "plugins", "callback", "backup_report.py"))
br = importlib.util.module_from_spec(spec)
spec.loader.exec_module(br)


def test_a_remote_location_never_decides_a_directory_on_the_controller(tmp_path):
    (tmp_path / "scratch").mkdir()
    runs = [dict(host="lvmlab", location=str(tmp_path / "scratch" / "set"))]
    assert br.report_path(None, runs, now=0) is None  # the same path exists here, but it is the VM's
    runs.append(dict(host="localhost", location=str(tmp_path / "scratch" / "mine")))
    expected = str(tmp_path / "scratch" / "backup-report-19700101T000000Z.json")
    assert br.report_path(None, runs, now=0) == expected
    assert br.report_path(None, runs[:1], now=0, local_hosts={"lvmlab"}).startswith(str(tmp_path / "scratch"))


def test_an_explicit_path_wins(tmp_path):
    chosen = str(tmp_path / "r.json")
    assert br.report_path(chosen, [dict(host="x", location="/")]) == chosen
    assert br.report_path(str(tmp_path), [], now=0) == str(tmp_path / "backup-report-19700101T000000Z.json")


def test_local_hosts_by_name_or_local_connection():
    assert br.host_is_local(Host("localhost"))
    remote = Host("db1")
    remote.set_variable("ansible_connection", "ssh")
    assert not br.host_is_local(remote)
    lab = Host("site-a")
    group = Group("all")
    group.set_variable("ansible_connection", "local")
    group.add_host(lab)
    assert br.host_is_local(lab)
    container = Host("seafile-primary")
    pods = Group("mysql_primary")
    pods.set_variable("ansible_connection", "lab_podman")
    pods.add_host(container)
    assert not br.host_is_local(container)
