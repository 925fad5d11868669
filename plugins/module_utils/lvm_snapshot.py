"""LVM snapshots for backups: read `lvs`/`vgs`, size and plan snapshots, create/remove them, watch fill.

Pure Python, no AnsibleModule. Every command goes through an injected ``runner(args) -> (rc, out, err)``
(an argument list, never a shell string). Errors are raised as LvmError with an operator-facing message.

The procedure (eXo Platform): check the VG's free space, ``lvcreate -s -L <size> -n <name> <vg>/<lv>``
(thin LVs take no size), mount read-only, copy while production runs watching the snapshot's Data%,
unmount and remove. A classic snapshot whose copy-on-write space fills up is invalidated by LVM: it
must never be reported as a good backup.
"""

import json
import math
import re
import threading
import time

LV_FIELDS = (
    "lv_name",
    "vg_name",
    "lv_attr",
    "lv_size",
    "origin",
    "data_percent",
    "pool_lv",
    "lv_path",
    "segtype",
    "lv_snapshot_invalid",
)
VG_FIELDS = ("vg_name", "vg_size", "vg_free", "vg_extent_size", "vg_extent_count", "vg_free_count")
DEFAULT_SUFFIX = "-backup-snap"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bBkKmMgGtT]?)(?:i?[bB])?\s*$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class LvmError(Exception):
    """An LVM step failed or was refused; the message says what and why."""


# -- parsing -------------------------------------------------------------------------------------
def parse_report(text, kind):
    """Rows of `lvs`/`vgs` output as dicts of strings.

    Accepts ``--reportformat json`` output (kind 'lv' or 'vg' selects the report) and the classic
    ``--noheadings --separator '|' -o <fields>`` form, whose fields are LV_FIELDS / VG_FIELDS in order.
    """
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LvmError(f"cannot parse {kind}s JSON report: {exc}") from exc
        rows = []
        for report in data.get("report", []):
            rows.extend(report.get(kind, []))
        return [{k: (v or "").strip() for k, v in row.items()} for row in rows]
    fields = LV_FIELDS if kind == "lv" else VG_FIELDS
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.strip().split("|")]
        if len(values) < len(fields):
            values += [""] * (len(fields) - len(values))
        rows.append(dict(zip(fields, values)))
    return rows


def to_bytes(value):
    """'314572800' or '314572800B' (lvs --units b) -> int; '' -> 0."""
    text = str(value or "").strip().rstrip("bB")
    if not text:
        return 0
    return int(float(text))


def to_percent(value):
    """'5.05' -> 5.05; '' -> None (not a snapshot or not active)."""
    text = str(value or "").strip()
    return float(text) if text else None


def parse_size(spec):
    """A snapshot size: '200M', '1G', '512k', '1073741824' -> ('bytes', n); '20%' -> ('percent', 20.0).

    Units are binary (as lvcreate -L): k/m/g/t; 'MiB' and 'MB' are read the same way.
    """
    text = str(spec).strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError as exc:
            raise LvmError(f"invalid snapshot size {spec!r}: expected e.g. 20% or 200M") from exc
        if not 0 < pct <= 100:
            raise LvmError(f"invalid snapshot size {spec!r}: a percentage must be in (0, 100]")
        return "percent", pct
    m = _SIZE_RE.match(text)
    if not m:
        raise LvmError(
            f"invalid snapshot size {spec!r}: expected a size like 200M or 1G, or a percentage like 20%"
        )
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise LvmError(f"invalid snapshot size {spec!r}: must be more than 0")
    return "bytes", n


def human(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


def is_snapshot(lv):
    return (lv.get("lv_attr") or " ")[0] in ("s", "S") or bool(lv.get("origin"))


def is_thin(lv):
    return lv.get("segtype") == "thin" or (lv.get("lv_attr") or " ")[0] == "V"


def is_invalid(lv):
    """True when LVM has invalidated the snapshot (copy-on-write space exhausted) or it vanished."""
    if lv is None:
        return True
    attr = lv.get("lv_attr") or ""
    if len(attr) > 4 and attr[4] == "I":
        return True
    if "invalid" in (lv.get("lv_snapshot_invalid") or "") and lv.get("lv_snapshot_invalid") != "unknown":
        return True
    pct = to_percent(lv.get("data_percent"))
    return (not is_thin(lv)) and is_snapshot(lv) and pct is not None and pct >= 100.0


# -- reading the current state --------------------------------------------------------------------
def _run(runner, args, what):
    rc, out, err = runner(args)
    if rc != 0:
        raise LvmError(f"{what} failed ({' '.join(args)}): {(err or out or '').strip()}")
    return out


def read_lvs(runner, vg=None):
    args = ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-a", "-o", ",".join(LV_FIELDS)]
    if vg:
        args.append(vg)
    return parse_report(_run(runner, args, "reading logical volumes"), "lv")


def read_vgs(runner):
    args = ["vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", ",".join(VG_FIELDS)]
    return parse_report(_run(runner, args, "reading volume groups"), "vg")


def find_lv(lvs, vg, name):
    for lv in lvs:
        if lv.get("vg_name") == vg and lv.get("lv_name") == name:
            return lv
    return None


# -- planning --------------------------------------------------------------------------------------
def snapshot_name(origin, suffix=DEFAULT_SUFFIX):
    return f"{origin}{suffix}"


def extents_for(size_bytes, extent_size):
    """Whole extents holding size_bytes (rounded up, as lvcreate does)."""
    return max(1, math.ceil(size_bytes / extent_size))


def plan_snapshots(requests, lvs, vgs, suffix=DEFAULT_SUFFIX):
    """Check the requested snapshots against the current LVs and VGs and size them.

    requests: [{'vg': 'vgdata', 'lv': 'mysql', 'size': '20%' | '200M' | None, 'name': optional}].
    Returns one dict per snapshot: vg, origin, name, thin, size_bytes, extents, origin_size_bytes,
    origin_path, path. Raises LvmError (nothing changed) on an unknown VG/LV, an origin that is itself
    a snapshot, a snapshot name that already exists (a stale snapshot of a crashed run: clean it up
    first), a missing size for a classic LV, or more space than the VG has free (all snapshots of one
    VG together).
    """
    if not requests:
        raise LvmError("no snapshot requested: give at least one {vg, lv}")
    vg_by_name = {vg["vg_name"]: vg for vg in vgs}
    plans, wanted = [], {}
    seen = set()
    for req in requests:
        vg_name, lv_name = req.get("vg"), req.get("lv")
        if not vg_name or not lv_name:
            raise LvmError(f"snapshot request {req!r} needs both vg and lv")
        if vg_name not in vg_by_name:
            known = ", ".join(sorted(vg_by_name)) or "none"
            raise LvmError(f"volume group {vg_name!r} not found (volume groups on this host: {known})")
        origin = find_lv(lvs, vg_name, lv_name)
        if origin is None:
            known = ", ".join(sorted(lv["lv_name"] for lv in lvs if lv.get("vg_name") == vg_name)) or "none"
            raise LvmError(f"logical volume {vg_name}/{lv_name} not found (LVs in {vg_name}: {known})")
        if is_snapshot(origin) and not is_thin(origin):
            raise LvmError(f"{vg_name}/{lv_name} is itself a snapshot; give the origin LV")
        if (vg_name, lv_name) in seen:
            raise LvmError(f"{vg_name}/{lv_name} requested twice")
        seen.add((vg_name, lv_name))
        name = req.get("name") or snapshot_name(lv_name, suffix)
        if find_lv(lvs, vg_name, name) is not None:
            raise LvmError(
                f"snapshot {vg_name}/{name} already exists (left by an earlier run?): "
                "run the cleanup step (lvm_snapshot_cleanup) or remove it with lvremove"
            )
        vg = vg_by_name[vg_name]
        extent = to_bytes(vg["vg_extent_size"]) or 4 * 1024 * 1024
        origin_size = to_bytes(origin["lv_size"])
        plan = dict(
            vg=vg_name,
            origin=lv_name,
            name=name,
            thin=is_thin(origin),
            origin_size_bytes=origin_size,
            origin_path=f"/dev/{vg_name}/{lv_name}",
            label=req.get("label") or lv_name,
            path=f"/dev/{vg_name}/{name}",
            size_bytes=0,
            extents=0,
        )
        if not plan["thin"]:
            if not req.get("size"):
                raise LvmError(
                    f"{vg_name}/{lv_name} is a classic (non-thin) LV: its snapshot needs a size "
                    "(e.g. 20% of the origin or 200M) to reserve copy-on-write space"
                )
            kind, value = parse_size(req["size"])
            wanted_bytes = origin_size * value / 100.0 if kind == "percent" else value
            # a snapshot never needs more than its origin (plus a little metadata): cap there
            wanted_bytes = min(wanted_bytes, origin_size + extent)
            plan["extents"] = extents_for(wanted_bytes, extent)
            plan["size_bytes"] = plan["extents"] * extent
            wanted[vg_name] = wanted.get(vg_name, 0) + plan["extents"]
        plans.append(plan)
    for vg_name, extents in wanted.items():
        vg = vg_by_name[vg_name]
        free_extents = int(vg.get("vg_free_count") or 0)
        extent = to_bytes(vg["vg_extent_size"]) or 4 * 1024 * 1024
        if not free_extents and to_bytes(vg.get("vg_free")):
            free_extents = to_bytes(vg["vg_free"]) // extent
        if extents > free_extents:
            names = ", ".join(f"{p['origin']} {human(p['size_bytes'])}" for p in plans if p["vg"] == vg_name)
            raise LvmError(
                f"snapshot space needed in volume group {vg_name} ({human(extents * extent)}: "
                f"{names}) is more than its free space ({human(free_extents * extent)}); lower "
                "the snapshot size or free space in the VG"
            )
    return plans


def lvcreate_args(plan):
    if plan["thin"]:
        # thin snapshots carry the activation-skip flag by default: -kn so they are usable at once
        return ["lvcreate", "-y", "-s", "-kn", "-n", plan["name"], f"{plan['vg']}/{plan['origin']}"]
    return [
        "lvcreate",
        "-y",
        "-s",
        "-l",
        str(plan["extents"]),
        "-n",
        plan["name"],
        f"{plan['vg']}/{plan['origin']}",
    ]


def create_snapshots(runner, plans, clock=time.monotonic, stopped=lambda: False, cleanup=None):
    """Create every planned snapshot; on a failure remove those already created and the one being
    created (an lvcreate interrupted half way can leave it), then raise. stopped(): True once the
    caller wants no further lvcreate (the read-lock watchdog fired). cleanup(plans): called with those
    instead of removing them here (the caller removes them later, e.g. once the application runs
    again: an lvremove waits on the same LVM lock a hung lvcreate waited on). A planned name never
    exists before (plan_snapshots refuses it), so what is removed was made by this run."""
    created = []
    t0 = clock()
    current = None
    try:
        for plan in plans:
            if stopped():
                raise LvmError(f"creating snapshot {plan['vg']}/{plan['name']} not started: stopped")
            current = plan
            _run(runner, lvcreate_args(plan), f"creating snapshot {plan['vg']}/{plan['name']}")
            created.append(plan)
            current = None
    except LvmError:
        made = created + ([current] if current else [])
        if cleanup is not None:
            cleanup(made)
        else:
            remove_snapshots(runner, made)
        raise
    return created, clock() - t0


def remove_snapshots(runner, plans):
    """Remove the snapshots of plans (absent ones are fine); returns the problems, [] when all are gone."""
    problems = []
    for plan in plans:
        try:
            remove_lv(runner, plan["vg"], plan["name"], retries=2, delay=1)
        except LvmError as exc:
            problems.append(str(exc))
    return problems


def remove_lv(runner, vg, name, retries=3, delay=2.0, sleep=time.sleep):
    """lvremove with retries (a just-unmounted LV can stay busy for a moment). Absent = done."""
    last = ""
    for attempt in range(retries + 1):
        rc, out, err = runner(["lvremove", "-y", f"{vg}/{name}"])
        if rc == 0:
            return True
        last = (err or out or "").strip()
        if "not found" in last.lower() or "failed to find" in last.lower():
            return False
        if attempt < retries:
            sleep(delay)
    raise LvmError(f"could not remove snapshot {vg}/{name} after {retries + 1} attempts: {last}")


# -- fill watching --------------------------------------------------------------------------------
def fill_decision(lv, vg, threshold, action, extend_percent, max_size_bytes=None):
    """What the watcher does for one poll of a classic snapshot.

    Returns ('ok', None), ('extend', extents_to_add) or ('abort', reason). Thin snapshots share their
    pool and are not watched here (the pool's own monitoring applies).
    """
    if is_invalid(lv):
        name = f"{lv.get('vg_name')}/{lv.get('lv_name')}" if lv else "snapshot"
        return "abort", f"snapshot {name} is invalid (its copy-on-write space filled up or it vanished)"
    if is_thin(lv):
        return "ok", None
    pct = to_percent(lv.get("data_percent")) or 0.0
    if pct < threshold:
        return "ok", None
    where = f"{lv['vg_name']}/{lv['lv_name']}"
    if action != "extend":
        return "abort", f"snapshot {where} is {pct:.1f}% full (threshold {threshold}%): copy aborted"
    extent = to_bytes(vg.get("vg_extent_size")) or 4 * 1024 * 1024
    size = to_bytes(lv.get("lv_size"))
    add = extents_for(size * extend_percent / 100.0, extent)
    free = int(vg.get("vg_free_count") or 0)
    if max_size_bytes and size + add * extent > max_size_bytes:
        add = max(0, (max_size_bytes - size) // extent)
    add = min(add, free)
    if add <= 0:
        return "abort", (
            f"snapshot {where} is {pct:.1f}% full (threshold {threshold}%) and cannot grow "
            f"(VG free: {human(free * extent)}): copy aborted"
        )
    return "extend", add


class FillWatcher(threading.Thread):
    """Polls the snapshots' Data% while a copy runs; extends them or aborts (calls on_abort(reason)).

    ``failure`` holds the reason once the backup must be considered failed; ``events`` a log of what
    was seen and done (polls with the highest fill, extensions).
    """

    def __init__(
        self,
        runner,
        snapshots,
        threshold=80.0,
        action="extend",
        extend_percent=20.0,
        interval=2.0,
        max_size_bytes=None,
        on_abort=None,
    ):
        super().__init__(daemon=True)
        self.runner = runner
        self.snapshots = [(s["vg"], s["name"]) for s in snapshots if not s.get("thin")]
        self.threshold = threshold
        self.action = action
        self.extend_percent = extend_percent
        self.interval = interval
        self.max_size_bytes = max_size_bytes
        self.on_abort = on_abort
        self.failure = None
        self.events = []
        self.max_percent = {}
        self._halt = threading.Event()

    def poll_once(self):
        """One round over every watched snapshot; returns False once the backup failed."""
        if not self.snapshots:
            return True
        lvs = read_lvs(self.runner)
        vgs = {vg["vg_name"]: vg for vg in read_vgs(self.runner)}
        for vg_name, name in self.snapshots:
            lv = find_lv(lvs, vg_name, name)
            if lv is None:
                self.fail(f"snapshot {vg_name}/{name} vanished during the copy")
                return False
            key = f"{vg_name}/{name}"
            pct = to_percent(lv.get("data_percent")) or 0.0
            self.max_percent[key] = max(self.max_percent.get(key, 0.0), pct)
            decision, value = fill_decision(
                lv,
                vgs.get(vg_name, {}),
                self.threshold,
                self.action,
                self.extend_percent,
                self.max_size_bytes,
            )
            if decision == "extend":
                rc, out, err = self.runner(["lvextend", "-y", "-l", f"+{value}", f"{vg_name}/{name}"])
                if rc != 0:
                    decision = "abort"
                    value = f"extending snapshot {vg_name}/{name} failed: {(err or out).strip()}"
                else:
                    self.events.append(f"extended {vg_name}/{name} by {value} extents at {pct:.1f}%")
            if decision == "abort":
                self.fail(value)
                return False
        return True

    def fail(self, reason):
        if self.failure is None:
            self.failure = reason
            self.events.append(reason)
            if self.on_abort:
                self.on_abort(reason)

    def run(self):
        while not self._halt.is_set():
            try:
                if not self.poll_once():
                    return
            except LvmError as exc:
                self.fail(f"watching the snapshot fill failed: {exc}")
                return
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(timeout=30)


# -- the application around the snapshot ---------------------------------------------------------
class ServiceError(LvmError):
    """An application service could not be stopped or started again."""


def run_with_services_stopped(runner, services, action, clock=time.monotonic):
    """Stop services (in order), run action(), start them again (reverse order) even when it fails.

    Returns (action's result, seconds the application was down: first stop to last start). A
    service that does not stop is started again and the action is not run; one that does not start
    raises ServiceError after every service was tried.
    """
    stopped = []
    t0 = clock()
    failure = None
    result = None
    try:
        for name in services:
            rc, out, err = runner(["systemctl", "stop", name])
            if rc != 0:
                raise ServiceError(f"stopping the application service {name} failed: {(err or out).strip()}")
            stopped.append(name)
        result = action()
    except BaseException as exc:  # started again below, then re-raised
        failure = exc
    finally:
        problems = []
        for name in reversed(stopped):
            rc, out, err = runner(["systemctl", "start", name])
            if rc != 0:
                problems.append(f"{name}: {(err or out).strip()}")
        downtime = clock() - t0 if services else 0.0
    if failure is not None:
        if problems:
            raise ServiceError(
                f"{failure}; and the application did not start again: {'; '.join(problems)}"
            ) from failure
        raise failure
    if problems:
        raise ServiceError(
            "the snapshots were taken but the application did not start again: " + "; ".join(problems)
        )
    return result, downtime
