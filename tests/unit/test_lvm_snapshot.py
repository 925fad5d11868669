# ruff: noqa: E501  (verbatim lvm2 output lines)
"""Unit tests of the LVM snapshot core: report parsing, sizing, the plan, the fill decisions.

The JSON and separated samples below are verbatim output of lvm2 2.03.16 in the lab VM
(scripts/lab/lvm-vm.sh); the real commands are exercised by the molecule scenario `lvm`.
"""

import pytest
from ansible.module_utils import lvm_snapshot as L

LVS_JSON = """  {
      "report": [
          {
              "lv": [
                  {"lv_name":"app", "vg_name":"vgdata", "lv_attr":"-wi-a-----", "lv_size":"104857600", "origin":"", "data_percent":"", "pool_lv":"", "lv_path":"/dev/vgdata/app", "segtype":"linear", "lv_snapshot_invalid":"unknown"},
                  {"lv_name":"mysql", "vg_name":"vgdata", "lv_attr":"owi-a-s---", "lv_size":"314572800", "origin":"", "data_percent":"", "pool_lv":"", "lv_path":"/dev/vgdata/mysql", "segtype":"linear", "lv_snapshot_invalid":"unknown"},
                  {"lv_name":"mysql-snap", "vg_name":"vgdata", "lv_attr":"swi-a-s---", "lv_size":"104857600", "origin":"mysql", "data_percent":"0.00", "pool_lv":"", "lv_path":"/dev/vgdata/mysql-snap", "segtype":"linear", "lv_snapshot_invalid":""},
                  {"lv_name":"pool", "vg_name":"vgdata", "lv_attr":"twi-aotz--", "lv_size":"524288000", "origin":"", "data_percent":"0.00", "pool_lv":"", "lv_path":"", "segtype":"thin-pool", "lv_snapshot_invalid":"unknown"},
                  {"lv_name":"thinapp", "vg_name":"vgdata", "lv_attr":"Vwi-a-tz--", "lv_size":"209715200", "origin":"", "data_percent":"0.00", "pool_lv":"pool", "lv_path":"/dev/vgdata/thinapp", "segtype":"thin", "lv_snapshot_invalid":"unknown"},
                  {"lv_name":"small", "vg_name":"vgdata", "lv_attr":"swi-I-s---", "lv_size":"8388608", "origin":"mysql", "data_percent":"100.00", "pool_lv":"", "lv_path":"/dev/vgdata/small", "segtype":"linear", "lv_snapshot_invalid":"snapshot invalid"}
              ]
          }
      ]
  }
"""
VGS_JSON = """{"report": [{"vg": [{"vg_name":"vgdata", "vg_size":"6438256640", "vg_free":"5381292032",
 "vg_extent_size":"4194304", "vg_extent_count":"1535", "vg_free_count":"1283"}]}]}"""
LVS_SEPARATED = """  app|vgdata|-wi-a-----|104857600|||||linear|unknown
  mysql-snap|vgdata|swi-a-s---|104857600|mysql|5.05|||linear|
"""


def lvs():
    return [lv for lv in L.parse_report(LVS_JSON, "lv") if lv["lv_name"] != "small"]


def vgs(free_count=1283):
    vg = L.parse_report(VGS_JSON, "vg")[0]
    vg["vg_free_count"] = str(free_count)
    return [vg]


def test_parse_json_report():
    rows = L.parse_report(LVS_JSON, "lv")
    assert [r["lv_name"] for r in rows] == ["app", "mysql", "mysql-snap", "pool", "thinapp", "small"]
    snap = L.find_lv(rows, "vgdata", "mysql-snap")
    assert L.is_snapshot(snap) and not L.is_thin(snap) and not L.is_invalid(snap)
    assert L.to_bytes(snap["lv_size"]) == 100 * 1024 * 1024
    assert L.to_percent(snap["data_percent"]) == 0.0
    assert L.is_thin(L.find_lv(rows, "vgdata", "thinapp"))
    assert not L.is_snapshot(L.find_lv(rows, "vgdata", "mysql"))


def test_parse_separated_report():
    rows = L.parse_report(LVS_SEPARATED, "lv")
    assert rows[1]["origin"] == "mysql" and L.to_percent(rows[1]["data_percent"]) == 5.05
    assert rows[0]["segtype"] == "linear"


def test_invalid_snapshot_detected_from_attr_flag_and_fill():
    small = L.find_lv(L.parse_report(LVS_JSON, "lv"), "vgdata", "small")
    assert L.is_invalid(small)
    assert L.is_invalid(None)  # vanished
    full = {"lv_name": "s", "vg_name": "v", "lv_attr": "swi-a-s---", "origin": "o", "data_percent": "100.00"}
    assert L.is_invalid(full)


def test_bad_json_is_a_clear_error():
    with pytest.raises(L.LvmError, match="cannot parse"):
        L.parse_report("{not json", "lv")


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("200M", ("bytes", 200 * 1024**2)),
        ("1G", ("bytes", 1024**3)),
        ("512k", ("bytes", 512 * 1024)),
        ("1.5g", ("bytes", int(1.5 * 1024**3))),
        ("1048576", ("bytes", 1048576)),
        ("20%", ("percent", 20.0)),
        ("256MiB", ("bytes", 256 * 1024**2)),
    ],
)
def test_parse_size(spec, expected):
    assert L.parse_size(spec) == expected


@pytest.mark.parametrize("spec", ["", "abc", "0", "150%", "0%", "-5M", "12X"])
def test_parse_size_rejects(spec):
    with pytest.raises(L.LvmError, match="invalid snapshot size"):
        L.parse_size(spec)


def test_plan_rounds_up_to_whole_extents():
    plan = L.plan_snapshots([{"vg": "vgdata", "lv": "mysql", "size": "10M"}], lvs(), vgs())[0]
    assert plan["extents"] == 3 and plan["size_bytes"] == 3 * 4 * 1024 * 1024  # 10 MiB -> 12 MiB
    assert plan["name"] == "mysql-backup-snap" and plan["path"] == "/dev/vgdata/mysql-backup-snap"
    assert L.lvcreate_args(plan) == [
        "lvcreate",
        "-y",
        "-s",
        "-l",
        "3",
        "-n",
        "mysql-backup-snap",
        "vgdata/mysql",
    ]


def test_plan_percentage_of_origin():
    plan = L.plan_snapshots([{"vg": "vgdata", "lv": "mysql", "size": "20%"}], lvs(), vgs())[0]
    # 20% of 300 MiB = 60 MiB = 15 extents exactly
    assert plan["extents"] == 15 and plan["size_bytes"] == 60 * 1024 * 1024


def test_plan_caps_at_origin_size():
    plan = L.plan_snapshots([{"vg": "vgdata", "lv": "app", "size": "5G"}], lvs(), vgs())[0]
    assert plan["extents"] == 26  # 100 MiB origin = 25 extents, + 1 for metadata


def test_plan_thin_takes_no_size():
    plan = L.plan_snapshots([{"vg": "vgdata", "lv": "thinapp"}], lvs(), vgs(free_count=0))[0]
    assert plan["thin"] and plan["size_bytes"] == 0
    assert L.lvcreate_args(plan) == [
        "lvcreate",
        "-y",
        "-s",
        "-kn",
        "-n",
        "thinapp-backup-snap",
        "vgdata/thinapp",
    ]


def test_plan_refuses_more_than_vg_free_for_all_snapshots_together():
    requests = [{"vg": "vgdata", "lv": "mysql", "size": "40M"}, {"vg": "vgdata", "lv": "app", "size": "40M"}]
    assert len(L.plan_snapshots(requests, lvs(), vgs(free_count=20))) == 2  # 10 + 10 extents fit in 20
    with pytest.raises(L.LvmError, match=r"more than its free space \(76.00 MiB\)"):
        L.plan_snapshots(requests, lvs(), vgs(free_count=19))


@pytest.mark.parametrize(
    "request_,message",
    [
        (
            {"vg": "nope", "lv": "mysql", "size": "1G"},
            r"volume group 'nope' not found \(volume groups on this host: vgdata\)",
        ),
        (
            {"vg": "vgdata", "lv": "nope", "size": "1G"},
            r"logical volume vgdata/nope not found \(LVs in vgdata: app, ",
        ),
        ({"vg": "vgdata", "lv": "mysql-snap", "size": "1G"}, "is itself a snapshot"),
        ({"vg": "vgdata", "lv": "mysql"}, "needs a size"),
        ({"vg": "vgdata", "lv": "mysql", "size": "1G", "name": "app"}, "already exists"),
    ],
)
def test_plan_refusals(request_, message):
    with pytest.raises(L.LvmError, match=message):
        L.plan_snapshots([request_], lvs(), vgs())


def test_plan_refuses_stale_snapshot_of_earlier_run():
    rows = lvs() + [
        {
            "lv_name": "mysql-backup-snap",
            "vg_name": "vgdata",
            "lv_attr": "swi-a-s---",
            "origin": "mysql",
            "lv_size": "4194304",
            "data_percent": "3.00",
            "segtype": "linear",
        }
    ]
    with pytest.raises(L.LvmError, match="lvm_snapshot_cleanup"):
        L.plan_snapshots([{"vg": "vgdata", "lv": "mysql", "size": "10%"}], rows, vgs())


def _snap(pct, size=100 * 1024 * 1024, attr="swi-a-s---"):
    return {
        "lv_name": "mysql-backup-snap",
        "vg_name": "vgdata",
        "lv_attr": attr,
        "origin": "mysql",
        "lv_size": str(size),
        "data_percent": f"{pct:.2f}",
        "segtype": "linear",
    }


def test_fill_decision():
    vg = vgs()[0]
    assert L.fill_decision(_snap(10), vg, 80, "extend", 20) == ("ok", None)
    assert L.fill_decision(_snap(85), vg, 80, "extend", 20) == ("extend", 5)  # 20% of 25 extents
    action, reason = L.fill_decision(_snap(85), vg, 80, "abort", 20)
    assert action == "abort" and "85.0% full" in reason
    vg_full = vgs(free_count=0)[0]
    action, reason = L.fill_decision(_snap(85), vg_full, 80, "extend", 20)
    assert action == "abort" and "cannot grow" in reason
    assert L.fill_decision(_snap(85), vgs(free_count=2)[0], 80, "extend", 20) == ("extend", 2)
    action, reason = L.fill_decision(_snap(100, attr="swi-I-s---"), vg, 80, "extend", 20)
    assert action == "abort" and "invalid" in reason


class ScriptedLvm:
    """Answers lvs/vgs from a list of successive fills and records lvextend calls (no LVM involved)."""

    def __init__(self, fills, free_count=1283, lvextend_rc=0):
        self.fills = list(fills)
        self.free_count = free_count
        self.lvextend_rc = lvextend_rc
        self.calls = []

    def __call__(self, args):
        self.calls.append(args)
        if args[0] == "lvs":
            pct = self.fills.pop(0) if len(self.fills) > 1 else self.fills[0]
            snap = _snap(pct, attr="swi-I-s---" if pct >= 100 else "swi-a-s---")
            import json

            return 0, json.dumps({"report": [{"lv": [snap]}]}), ""
        if args[0] == "vgs":
            return 0, VGS_JSON.replace('"1283"', f'"{self.free_count}"'), ""
        if args[0] == "lvextend":
            return self.lvextend_rc, "", "Insufficient free space" if self.lvextend_rc else ""
        return 1, "", "unexpected"


PLANNED = [{"vg": "vgdata", "name": "mysql-backup-snap", "thin": False}]


def test_watcher_extends_then_continues():
    lvm = ScriptedLvm([50, 90, 60])
    w = L.FillWatcher(lvm, PLANNED, threshold=80, action="extend", extend_percent=20)
    assert w.poll_once() and w.poll_once() and w.poll_once()
    assert ["lvextend", "-y", "-l", "+5", "vgdata/mysql-backup-snap"] in lvm.calls
    assert w.failure is None and w.max_percent["vgdata/mysql-backup-snap"] == 90


def test_watcher_aborts_and_calls_back():
    aborted = []
    lvm = ScriptedLvm([50, 95])
    w = L.FillWatcher(lvm, PLANNED, threshold=80, action="abort", on_abort=aborted.append)
    assert w.poll_once() and not w.poll_once()
    assert aborted and "95.0% full" in w.failure
    assert not [c for c in lvm.calls if c[0] == "lvextend"]


def test_watcher_aborts_when_extension_fails_or_snapshot_invalid():
    w = L.FillWatcher(ScriptedLvm([90], lvextend_rc=5), PLANNED, threshold=80, action="extend")
    assert not w.poll_once() and "extending snapshot vgdata/mysql-backup-snap failed" in w.failure
    w = L.FillWatcher(ScriptedLvm([100]), PLANNED, threshold=80, action="extend")
    assert not w.poll_once() and "invalid" in w.failure


def test_watcher_thread_stops_on_failure():
    aborted = []
    w = L.FillWatcher(ScriptedLvm([10, 20, 100]), PLANNED, interval=0.01, on_abort=aborted.append)
    w.start()
    w.join(5)
    assert not w.is_alive() and aborted


def test_create_snapshots_rolls_back_on_failure():
    calls = []

    def runner(args):
        calls.append(args)
        if args[0] == "lvcreate" and "app-backup-snap" in args:
            return 5, "", "  Insufficient free space"
        return 0, "", ""

    plans = L.plan_snapshots(
        [{"vg": "vgdata", "lv": "mysql", "size": "8M"}, {"vg": "vgdata", "lv": "app", "size": "8M"}],
        lvs(),
        vgs(),
    )
    with pytest.raises(L.LvmError, match="Insufficient free space"):
        L.create_snapshots(runner, plans)
    assert ["lvremove", "-y", "vgdata/mysql-backup-snap"] in calls


def test_remove_lv_retries_then_reports():
    answers = [(5, "", "Logical volume in use"), (0, "", "")]
    slept = []
    assert L.remove_lv(lambda a: answers.pop(0), "vg", "s", retries=3, delay=1, sleep=slept.append)
    assert slept == [1]
    with pytest.raises(L.LvmError, match="after 3 attempts: busy"):
        L.remove_lv(lambda a: (5, "", "busy"), "vg", "s", retries=2, delay=0, sleep=lambda s: None)
    assert L.remove_lv(lambda a: (5, "", 'Failed to find logical volume "vg/s"'), "vg", "s") is False


class Systemctl:
    def __init__(self, failing=()):
        self.calls = []
        self.failing = set(failing)

    def __call__(self, args):
        self.calls.append(" ".join(args[1:]))
        return (1, "", f"Job for {args[2]} failed") if " ".join(args[1:]) in self.failing else (0, "", "")


def test_services_stopped_around_the_action_and_started_in_reverse():
    systemctl = Systemctl()
    result, downtime = L.run_with_services_stopped(systemctl, ["web", "worker"], lambda: "snapped")
    assert result == "snapped" and downtime >= 0
    assert systemctl.calls == ["stop web", "stop worker", "start worker", "start web"]
    assert L.run_with_services_stopped(systemctl, [], lambda: 1) == (1, 0.0)


def test_services_started_again_when_the_action_fails():
    systemctl = Systemctl()

    def action():
        raise L.LvmError("lvcreate failed")

    with pytest.raises(L.LvmError, match="lvcreate failed"):
        L.run_with_services_stopped(systemctl, ["web"], action)
    assert systemctl.calls == ["stop web", "start web"]


def test_a_service_that_does_not_stop_is_restarted_and_nothing_runs():
    systemctl = Systemctl(failing={"stop worker"})
    ran = []
    with pytest.raises(L.ServiceError, match="stopping the application service worker failed"):
        L.run_with_services_stopped(systemctl, ["web", "worker"], lambda: ran.append(1))
    assert not ran and systemctl.calls == ["stop web", "stop worker", "start web"]


def test_a_service_that_does_not_start_again_is_an_error():
    systemctl = Systemctl(failing={"start web"})
    with pytest.raises(L.ServiceError, match="did not start again: web"):
        L.run_with_services_stopped(systemctl, ["web", "worker"], lambda: "snapped")
    assert systemctl.calls[-2:] == ["start worker", "start web"]
