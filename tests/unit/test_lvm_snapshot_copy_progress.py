"""Progress of the copy from the snapshots (plugins/module_utils/lvm_snapshot_copy.py).

Real rsync and GNU tar copy real temporary trees. The only stand-in is LVM itself (no device-mapper
on this host): ``LvmStandIn`` answers lvs/vgs in lvm2 2.03.16's JSON form and "mounts" a snapshot by
putting a symlink to a directory on the mount point, so SnapshotCopy.run goes through its real
steps (measure, copy, checksums, rename, progress file). Real mounts of real snapshots: the VM
tests (tests/integration/test_lvm_runner.py, test_lvm_vm_faults.py, molecule lvm).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from ansible.module_utils import lvm_snapshot_copy as C
from ansible.module_utils.progress import read_progress

from tests.lib.progress import recording


def throttled(argv, **kw):
    """The real copy command, slowed down so that it lasts a few progress intervals."""
    if argv[0] == "rsync":
        argv = [argv[0], "--bwlimit=2048", *argv[1:]]  # KiB/s
    elif argv[0] == "tar":
        argv = [argv[0], "--checkpoint=64", "--checkpoint-action=sleep=1", *argv[1:]]  # 640 KiB
    return subprocess.Popen(argv, **kw)  # noqa: S603 - argument list, no shell


def make_tree(root, mib=4, seed=1):
    """Files of several sizes, nested and long names, a symlink with a long target, hard links."""
    root.mkdir(parents=True)
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (root / "empty").write_bytes(b"")
    (root / "odd").write_bytes(b"x" * 513)
    (deep / ("f" * 80)).write_bytes(os.urandom(70000))
    big = root / "data"
    big.mkdir()
    chunk = 256 * 1024
    for i in range(mib * 4):
        (big / f"part-{seed}-{i:03d}.bin").write_bytes(os.urandom(chunk))
    os.link(big / f"part-{seed}-000.bin", root / "hardlink.bin")
    os.symlink("../" + "t" * 120, root / "longlink")
    os.symlink("odd", root / "shortlink")
    return root


# -- what the copy will write, measured before it starts --------------------------------------------
def test_measure_source_matches_what_rsync_and_tar_write(tmp_path):
    src = make_tree(tmp_path / "src", mib=1)
    size = C.measure_source(str(src))
    out = tmp_path / "out"
    out.mkdir()
    for method in ("rsync", "tar"):
        argv, target = C.copy_command(method, str(src), str(out), method)
        subprocess.run(argv, check=True, capture_output=True)  # noqa: S603
        if method == "rsync":
            assert C.du_bytes(target) == size["bytes"] == C.tree_bytes(target)
        else:
            # exact: headers, long names and link targets, hard link stored once, end blocks, records
            assert os.path.getsize(target) == size["tar_bytes"]
    assert size["files"] == 4 * 1 + 4  # parts, empty, odd, the deep file, the hard link's second name
    assert size["bytes"] == 4 * 256 * 1024 + 513 + 70000 + 256 * 1024


def test_measure_source_of_an_unreadable_tree_is_a_clear_error(tmp_path):
    with pytest.raises(C.CopyError, match="cannot read .* to measure the copy"):
        C.measure_source(str(tmp_path / "missing"))


def test_target_meter_walks_a_large_tree_only_now_and_then(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    ticks = iter(range(0, 1000))
    meter = C.TargetMeter(str(tmp_path), clock=lambda: next(ticks), spacing=10.0)
    assert meter.measure() == 100  # walk from tick 0 to 1: the next walk not before tick 1 + 10 * 1
    (tmp_path / "b").write_bytes(b"y" * 50)
    readings = [meter.measure() for _ in range(10)]  # ticks 2 .. 11
    assert readings == [100] * 9 + [150]


# -- one copy child, watched ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rsync", "tar"])
def test_run_copy_reports_growing_bytes_up_to_the_total(tmp_path, method):
    src = make_tree(tmp_path / "src", mib=3)
    total = C.measure_source(str(src))["tar_bytes" if method == "tar" else "bytes"]
    out = tmp_path / "out"
    out.mkdir()
    log = []
    progress = C.PhaseProgress(str(tmp_path / "p"), recording(log))
    progress.phase(C.COPY_STEP, 1000 + total)
    argv, target = C.copy_command(method, str(src), str(out), "vol")
    rc, err, timed_out = C.run_copy(argv, target, popen=throttled, progress=progress, base=1000,
                                    total=1000 + total, interval=0.2)
    assert rc == 0 and not timed_out, err
    done = [s["done_bytes"] for s in log if s["state"] == "running"]
    assert done == sorted(done), done
    inside = {d for d in done if 1000 < d < 1000 + total}
    assert len(inside) >= 3, done  # bytes seen arriving while the child ran
    assert max(done) <= 1000 + total
    assert {s["total_bytes"] for s in log} == {1000 + total}
    assert log[-1]["rate_bytes_per_second"] and log[-1]["step"] == C.COPY_STEP


def test_run_copy_stops_the_child_at_the_deadline(tmp_path):
    src = make_tree(tmp_path / "src", mib=8)
    out = tmp_path / "out"
    out.mkdir()
    argv, target = C.copy_command("rsync", str(src), str(out), "vol")
    rc, _err, timed_out = C.run_copy(argv, target, popen=throttled, interval=0.2,
                                     deadline=time.monotonic() + 1)
    assert timed_out and rc != 0
    # stopped half way (8 MiB at 2 MiB/s), and the child is gone
    assert C.tree_bytes(target) < C.measure_source(str(src))["bytes"]
    assert subprocess.run(["pgrep", "-f", str(out)], capture_output=True).returncode == 1


# -- the whole run, LVM stood in --------------------------------------------------------------------
class LvmStandIn:
    """lvs/vgs answers for the snapshots (as lvm2 2.03.16 prints them) and symlink "mounts"."""

    def __init__(self, sources):
        self.sources = sources  # device path -> directory standing in for the snapshot's filesystem
        self.calls = []

    def __call__(self, args):
        self.calls.append(list(args))
        if args[0] == "lvs":
            rows = [
                {"lv_name": f"{name}-backup-snap", "vg_name": "vgdata", "lv_attr": "swi-a-s---",
                 "lv_size": "104857600", "origin": name, "data_percent": "1.00", "pool_lv": "",
                 "lv_path": f"/dev/vgdata/{name}-backup-snap", "segtype": "linear",
                 "lv_snapshot_invalid": ""}
                for name in ("mysql", "app")
            ]
            return 0, json.dumps({"report": [{"lv": rows}]}), ""
        if args[0] == "vgs":
            vg = {"vg_name": "vgdata", "vg_size": "6438256640", "vg_free": "5381292032",
                  "vg_extent_size": "4194304", "vg_extent_count": "1535", "vg_free_count": "1283"}
            return 0, json.dumps({"report": [{"vg": [vg]}]}), ""
        if args[0] == "mount":
            device, mountpoint = args[-2], args[-1]
            os.rmdir(mountpoint)
            os.symlink(self.sources[device], mountpoint)
            return 0, "", ""
        if args[0] == "umount":
            os.unlink(args[1])
            os.mkdir(args[1])
            return 0, "", ""
        return 1, "", f"unexpected {args}"


def snapshots():
    return [
        {"vg": "vgdata", "name": f"{name}-backup-snap", "path": f"/dev/vgdata/{name}-backup-snap",
         "label": name, "origin_path": f"/dev/vgdata/{name}", "thin": False, "fstype": "ext4"}
        for name in ("mysql", "app")
    ]


@pytest.fixture
def lab(tmp_path):
    sources = {
        "/dev/vgdata/mysql-backup-snap": str(make_tree(tmp_path / "mysql", mib=2, seed=1)),
        "/dev/vgdata/app-backup-snap": str(make_tree(tmp_path / "app", mib=1, seed=2)),
    }
    (tmp_path / "work").mkdir()
    return {"runner": LvmStandIn(sources), "sources": sources, "dest": tmp_path / "backups",
            "mounts": tmp_path / "mnt", "progress": str(tmp_path / "work" / "copy.progress"),
            "work": tmp_path / "work"}


def copier(lab, log, **kw):
    return C.SnapshotCopy(lab["runner"], snapshots(), str(lab["dest"]), mount_root=str(lab["mounts"]),
                          poll_interval=0.2, progress_file=lab["progress"],
                          progress_factory=recording(log), progress_interval=0.2, popen=throttled, **kw)


def leftovers(lab):
    mounts = os.listdir(lab["mounts"]) if lab["mounts"].exists() else []
    names = os.listdir(lab["dest"]) if lab["dest"].exists() else []
    partials = [n for n in names if n.startswith(".partial-")]
    return mounts, partials


def test_run_reports_copy_verification_checksums_then_done(lab):
    log = []
    verified = []

    def verify(partial, _recount):
        verified.append(partial)
        return {"tables_checked": 0}

    result = copier(lab, log, verify=verify).run()
    expected = sum(C.measure_source(s)["bytes"] for s in lab["sources"].values())
    steps = [s["step"] for s in log]
    assert steps[0] == C.COPY_STEP + " (preparing)"
    order = [C.COPY_STEP, C.VERIFY_STEP, C.MANIFEST_STEP]
    assert [s for i, s in enumerate(steps) if s in order and (i == 0 or steps[i - 1] != s)] == order
    copy = [s for s in log if s["step"] == C.COPY_STEP]
    assert {s["total_bytes"] for s in copy} == {expected}
    done = [s["done_bytes"] for s in copy]
    assert done == sorted(done) and done[0] == 0 and done[-1] == expected
    assert len({d for d in done if 0 < d < expected}) >= 3, done  # while the two copies ran
    # the first volume's bytes stay counted while the second one is copied
    mysql = C.measure_source(lab["sources"]["/dev/vgdata/mysql-backup-snap"])["bytes"]
    assert mysql in done or any(mysql < d < expected for d in done)
    sums = [s for s in log if s["step"] == C.MANIFEST_STEP]
    assert sums[-1]["done_bytes"] == sums[-1]["total_bytes"] == result["size_bytes"] == expected
    assert log[-1]["state"] == "done" and [s["state"] for s in log].count("done") == 1
    assert "failed" not in [s["state"] for s in log]
    assert read_progress(lab["progress"])["state"] == "done"
    assert os.listdir(lab["work"]) == ["copy.progress"]  # no temporary file left beside it
    assert verified and os.path.isdir(result["path"]) and leftovers(lab) == ([], [])
    assert subprocess.run(["sha256sum", "-c", "--quiet", C.MANIFEST], cwd=result["path"]).returncode == 0


def test_tar_run_total_is_the_archive_size(lab):
    log = []
    result = copier(lab, log, method="tar").run()
    archives = [os.path.join(result["path"], f"{n}.tar") for n in ("mysql", "app")]
    copy = [s for s in log if s["step"] == C.COPY_STEP]
    assert {s["total_bytes"] for s in copy} == {sum(os.path.getsize(a) for a in archives)}
    assert copy[-1]["done_bytes"] == copy[-1]["total_bytes"]
    assert log[-1]["state"] == "done"


def test_failure_is_written_to_the_progress_file_and_nothing_is_left(lab):
    def bad_copy(partial, *_):
        raise C.CopyError("CHECK TABLE app.events: corrupt")

    log = []
    with pytest.raises(C.CopyError, match="corrupt"):
        copier(lab, log, verify=bad_copy).run()
    state = read_progress(lab["progress"])
    assert state["state"] == "failed" and state["step"] == C.VERIFY_STEP
    assert state["message"] == "backup NOT published: CHECK TABLE app.events: corrupt"
    assert [s["state"] for s in log].count("failed") == 1
    assert leftovers(lab) == ([], []) and os.listdir(lab["dest"]) == []


def test_timeout_stops_the_copy_cleanly(lab):
    log = []
    with pytest.raises(C.CopyError, match=r"did not finish within the time limit of 1 s \(timeout\)"):
        copier(lab, log, timeout=1).run()
    state = read_progress(lab["progress"])
    assert state["state"] == "failed" and "time limit" in state["message"]
    assert state["step"] == C.COPY_STEP and state["done_bytes"] < state["total_bytes"]
    assert leftovers(lab) == ([], []) and os.listdir(lab["dest"]) == []
    # no rsync left: neither the child nor the receiver and generator it forked
    assert subprocess.run(["pgrep", "-f", str(lab["dest"])], capture_output=True).returncode == 1


def test_progress_file_in_a_missing_directory_fails_before_anything(lab):
    lab["progress"] = str(lab["work"] / "gone" / "copy.progress")
    with pytest.raises(C.CopyError, match="cannot write the progress file"):
        copier(lab, []).run()
    assert not lab["dest"].exists() and not lab["mounts"].exists()
    assert lab["runner"].calls == []


def test_without_a_progress_file_nothing_is_written(lab):
    job = C.SnapshotCopy(lab["runner"], snapshots(), str(lab["dest"]), mount_root=str(lab["mounts"]),
                         poll_interval=0.2)
    result = job.run()
    assert os.listdir(lab["work"]) == [] and os.path.isdir(result["path"])


CANCELLED_CHILD = """
import json, os, sys
top, lab = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, top)
import ansible.module_utils
ansible.module_utils.__path__.append(os.path.join(top, "plugins", "module_utils"))
from ansible.module_utils import lvm_snapshot_copy as C
from tests.unit.test_lvm_snapshot_copy_progress import LvmStandIn, snapshots, throttled
job = C.SnapshotCopy(LvmStandIn(lab["sources"]), snapshots(), lab["dest"], mount_root=lab["mounts"],
                     poll_interval=0.2, progress_file=lab["progress"], progress_interval=0.2, popen=throttled)
try:
    job.run()
except C.CopyError as exc:
    print("CopyError:", exc)
    sys.exit(3)
"""


def test_sigterm_stops_the_copy_cleanly(lab):
    """A cancelled async job (roles/backup_progress sends SIGTERM to the module process): the copy
    child is stopped, the snapshots unmounted, the partial copy removed, the progress file says so."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = {k: str(lab[k]) for k in ("dest", "mounts", "progress")}
    args["sources"] = lab["sources"]
    child = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", CANCELLED_CHILD, top, json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = read_progress(lab["progress"]) if os.path.exists(lab["progress"]) else None
            if state and state["step"] == C.COPY_STEP and state["done_bytes"] > 0:
                break
            assert child.poll() is None, child.stdout.read()
            time.sleep(0.1)
        else:
            raise AssertionError("the copy never reported progress")
        child.send_signal(signal.SIGTERM)
        out = child.communicate(timeout=60)[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 3 and "copy cancelled (received SIGTERM" in out, out
    state = read_progress(lab["progress"])
    assert state["state"] == "failed" and "copy cancelled" in state["message"]
    assert leftovers(lab) == ([], []) and os.listdir(lab["dest"]) == []
    # no rsync left: neither the child nor the receiver and generator it forked
    assert subprocess.run(["pgrep", "-f", str(lab["dest"])], capture_output=True).returncode == 1


class OverflowingLvm(LvmStandIn):
    """The mysql snapshot overflows (LVM marks it invalid) as soon as the copy has started."""

    def __init__(self, sources):
        super().__init__(sources)
        self.overflowed = False

    def __call__(self, args):
        rc, out, err = super().__call__(args)
        if args[0] == "lvs" and self.overflowed:
            report = json.loads(out)
            for row in report["report"][0]["lv"]:
                if row["lv_name"] == "mysql-backup-snap":
                    row.update(lv_attr="swi-I-s---", data_percent="100.00", lv_snapshot_invalid="invalid")
            out = json.dumps(report)
        return rc, out, err


def test_a_copy_failing_on_an_overflowed_snapshot_names_the_snapshot(lab):
    """The copy fails fast on unreadable files (rsync exit 23) before the fill watcher polls again:
    the error names the overflowed snapshot as the cause, not the copy (seen in the lab VM)."""
    runner = OverflowingLvm(lab["sources"])

    def failing_copy(argv, **kw):
        runner.overflowed = True
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", "import sys; sys.stderr.write('failed verification -- update "
             "discarded\\n'); sys.exit(23)"], **kw)

    job = C.SnapshotCopy(runner, snapshots(), str(lab["dest"]), mount_root=str(lab["mounts"]),
                         poll_interval=3600, popen=failing_copy)
    with pytest.raises(C.CopyError) as failure:
        job.run()
    message = str(failure.value)
    assert message.startswith("snapshot vgdata/mysql-backup-snap became invalid during the copy"), message
    assert "exit code 23" in message and "failed verification" in message
    assert leftovers(lab) == ([], []) and os.listdir(lab["dest"]) == []


def test_a_copy_failing_on_valid_snapshots_blames_the_copy(lab):
    def failing_copy(argv, **kw):
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(12)"], **kw)  # noqa: S603

    job = C.SnapshotCopy(lab["runner"], snapshots(), str(lab["dest"]), mount_root=str(lab["mounts"]),
                         poll_interval=3600, popen=failing_copy)
    with pytest.raises(C.CopyError, match=r"rsync of .* stopped with exit code 12 \(killed or failed\)"):
        job.run()
    assert leftovers(lab) == ([], [])
