"""Copy mounted LVM snapshots into a timestamped backup directory: watched, checksummed, renamed when done.

Pure Python. Short commands (mount, umount, blkid, lvs) go through an injected ``runner(args)``; the
long copy runs as a child process (argument list, no shell) so the fill watcher can stop it.

Layout of a destination:
    <dest>/.partial-<ts>/        being written; never taken for a backup (cleanup removes stale ones)
    <dest>/<ts>/<label>/...      rsync method: a tree per snapshot (label: e.g. mysql, app)
    <dest>/<ts>/<label>.tar      tar method: one archive per snapshot
    <dest>/<ts>/MANIFEST.sha256  `sha256sum -c` compatible, relative paths
    <dest>/<ts>/metadata.json    coordinates, lock time, sizes, durations, snapshot fill

With a progress file (``progress_file``), the run reports for roles/backup_progress to poll while
the module runs as an async job: ``copy from the snapshots`` (done: bytes in the new backup so
far, measured on the destination every second or less often on large trees; total: the bytes to
copy, measured on the mounted snapshots before the copy starts: regular files for rsync, the
archive size GNU tar will write for tar), then ``verification of the copy`` (no bytes) and
``checksums of the copy`` (bytes hashed / bytes in the backup), then done or failed with the
error. A ``timeout`` stops the copy cleanly (child stopped, unmounted, partial copy removed), and
so does SIGTERM (roles/backup_progress cancelling the job): CopyError "copy cancelled".

Durability: before the rename that publishes a backup (and so before retention removes an older one)
every file of the copy is on disk (fs_sync.sync_tree: one syncfs(2) of the destination's filesystem
for a copy of more than 128 files and directories, the data rsync or tar wrote through the page
cache, the directories, manifest and metadata; one fsync each for a smaller one), then the
directories holding the renamed entry are fsynced.

Shrink guard and retention (plugins/module_utils/retention_policy.py, the rule every strategy
shares): each backup records its size figures in metadata.json (``bytes``: the whole copy; with a
verification, ``tables``: tables checked, and ``rows:<db>.<table>``: the exact row counts of the
biggest tables, of the tables the last good backup counted, and of verify_count_tables). A backup
whose figures fell below the last good backup's by more than the threshold is published but
``suspect``: never the ``latest`` a restore or drill picks, not counted as good by retention, and
the run fails naming the figure (SuspectBackupError; ``accept_shrink`` accepts the drop for one
run). Retention keeps the newest ``keep`` good backups and never fewer than ``min_good``.
"""

import datetime
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from ansible.module_utils import fs_sync
from ansible.module_utils.fs_sync import fsync_dir
from ansible.module_utils.lvm_snapshot import FillWatcher, LvmError, find_lv, is_invalid, read_lvs
from ansible.module_utils.lvm_snapshot_mounts import MountRootError, check_mount_root, snapshot_mountpoint
from ansible.module_utils.progress import (
    NO_PROGRESS,
    PhaseProgress,
    ProgressError,
    ProgressFile,
    Terminated,
    terminable,
)
from ansible.module_utils.retention_policy import (
    DEFAULT_MIN_GOOD,
    DEFAULT_SHRINK_THRESHOLD,
    GOOD,
    SUSPECT,
    RetentionPolicyError,
    check_min_good,
    check_threshold,
    judge,
    plan_retention,
)

BACKUP_NAME_RE = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_PREFIX = ".partial-"
MANIFEST = "MANIFEST.sha256"
METADATA = "metadata.json"


class CopyError(Exception):
    """The copy failed or the snapshot became invalid; no backup was published."""


class SuspectBackupError(CopyError):
    """The backup was published but is suspect (shrink guard); .result is the run's result."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


COPY_STEP = "copy from the snapshots"
VERIFY_STEP = "verification of the copy"
MANIFEST_STEP = "checksums of the copy"
TAR_BLOCK = 512
TAR_RECORD = 10240


def _tar_round(size):
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def _tar_long_name(length):
    """Extra bytes GNU tar writes for a name (or link target) longer than the 100-byte header field."""
    return TAR_BLOCK + _tar_round(length + 1) if length > 100 else 0


def measure_source(path):
    """What copying the tree at path will write, measured with one metadata walk (no data read).

    Returns {'files', 'bytes', 'tar_bytes'}: regular files and the sum of their sizes (what rsync
    writes; a hard-linked file counts once per name, as du_bytes counts the copy), and the size of
    the archive GNU tar writes for ``tar -C path -cf - .`` (a header per entry, data in 512-byte
    blocks, long names, hard links stored once, end blocks, padding to 10 KiB records)."""
    files = size = 0
    tar = TAR_BLOCK  # "./"
    seen = set()
    stack = [(path, ".")]
    while stack:
        directory, rel = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise CopyError(f"cannot read {directory} to measure the copy: {exc}") from exc
        for entry in entries:
            name = f"{rel}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            tar += TAR_BLOCK
            if entry.is_dir(follow_symlinks=False):
                tar += _tar_long_name(len(name) + 1)
                stack.append((entry.path, name))
                continue
            tar += _tar_long_name(len(name))
            if entry.is_symlink():
                tar += _tar_long_name(len(os.readlink(entry.path)))
            elif entry.is_file(follow_symlinks=False):
                files += 1
                size += st.st_size
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue  # stored as a link to the first name
                    seen.add(key)
                tar += _tar_round(st.st_size)
    tar = -(-(tar + 2 * TAR_BLOCK) // TAR_RECORD) * TAR_RECORD
    return {"files": files, "bytes": size, "tar_bytes": tar}


def tree_bytes(path):
    """Bytes of the regular files under path (rsync's temporary files included), one lstat each."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed while we looked (rsync renames its temporary files)
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class TargetMeter:
    """Bytes written so far into a copy's target (a tree for rsync, an archive for tar).

    Walking a large tree costs time: a new walk starts only when ``spacing`` times the last walk's
    duration has passed (the reading stays a cheap fraction of the copy), otherwise the last
    reading is returned."""

    def __init__(self, target, clock=time.monotonic, spacing=10.0):
        self.target = target
        self.clock = clock
        self.spacing = spacing
        self.value = 0
        self._next = None

    def measure(self):
        now = self.clock()
        if self._next is not None and now < self._next:
            return self.value
        if os.path.isdir(self.target):
            self.value = tree_bytes(self.target)
        else:
            try:
                self.value = os.path.getsize(self.target)
            except OSError:
                self.value = 0
        end = self.clock()
        self._next = end + self.spacing * (end - now)
        return self.value


def run_copy(argv, target, popen=subprocess.Popen, progress=NO_PROGRESS, base=0, total=None,
             interval=1.0, deadline=None, clock=time.monotonic, on_start=None):
    """Run one copy child (argv, no shell) to its end, reporting base + the bytes in target every
    interval seconds, capped at total (tar's estimate is a few blocks off at worst).

    on_start(proc) is called once the child runs (the fill watcher stops it through the caller).
    Past deadline (a clock() value) the child is terminated. Returns (returncode, stderr text,
    timed_out)."""
    # a process group of its own, so that stopping it reaches the processes rsync forks
    group_kw = {"process_group": 0} if sys.version_info >= (3, 11) else {}
    proc = popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **group_kw)
    group = bool(group_kw) and _leads_group(proc)
    if on_start is not None:
        on_start(proc)
    meter = TargetMeter(target, clock=clock)
    timed_out = False
    try:
        while True:
            try:
                _out, err = proc.communicate(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and clock() >= deadline and not timed_out:
                    timed_out = True
                    signal_copy(proc, signal.SIGTERM, group)
                done = base + meter.measure()
                progress.update(min(done, total) if total is not None else done)
    finally:
        stop_child(proc, group=group)
    return proc.returncode, (err or b"").decode("utf-8", "replace"), timed_out


def _leads_group(proc):
    try:
        return os.getpgid(proc.pid) == proc.pid
    except (ProcessLookupError, PermissionError):
        return False


def signal_copy(proc, signum, group=None):
    """Send signum to a copy child and, when it runs in a process group of its own (run_copy starts
    it so), to every process of that group: rsync's receiver and generator too."""
    if proc is None:
        return
    group = _leads_group(proc) if group is None else group
    try:
        if group:
            os.killpg(proc.pid, signum)
        elif proc.poll() is None:
            proc.send_signal(signum)
    except ProcessLookupError:
        pass


def stop_child(proc, grace=10.0, group=None, sleep=time.sleep, clock=time.monotonic):
    """Stop a copy child that still runs, with the processes it forked (its process group): SIGTERM,
    then SIGKILL after grace s. Returns once none of them runs (they would otherwise go on writing
    into the partial copy that is about to be removed)."""
    if proc is None:
        return
    group = _leads_group(proc) if group is None else group

    def running():
        if proc.poll() is None:
            return True
        if not group:
            return False
        try:
            os.killpg(proc.pid, 0)  # a fork of the child still in its group
            return True
        except ProcessLookupError:
            return False

    if not running():
        return
    signal_copy(proc, signal.SIGTERM, group)
    deadline = clock() + grace
    while running() and clock() < deadline:
        sleep(0.05)
    if running():
        signal_copy(proc, signal.SIGKILL, group)
        proc.wait()
        deadline = clock() + grace
        while running() and clock() < deadline:
            sleep(0.05)


def timestamp(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def mount_options(fstype):
    """Read-only options that never replay a journal on the snapshot (eXo: ext4 noload, XFS norecovery)."""
    if fstype in ("ext4", "ext3", "ext2"):
        return "ro,noload" if fstype != "ext2" else "ro"
    if fstype == "xfs":
        return "ro,nouuid,norecovery"
    return "ro"


def detect_fstype(runner, device, attempts=5, sleep=time.sleep):
    """The filesystem type on a snapshot's device, probed on the device itself (blkid -p: not from
    blkid's cache, which knows nothing of a device made a moment ago). A snapshot just activated can
    answer nothing for an instant (seen once under TCG: blkid exit 0, no type): the probe is retried
    after udev has settled, up to `attempts` times a second apart, before it fails the run."""
    for attempt in range(attempts):
        rc, out, err = runner(["blkid", "-p", "-o", "value", "-s", "TYPE", device])
        fstype = (out or "").strip()
        if rc == 0 and fstype:
            return fstype
        if attempt + 1 < attempts:
            runner(["udevadm", "settle", "--timeout=5"])  # its failure only means no udev to wait for
            sleep(1)
    raise CopyError(f"cannot tell the filesystem on {device} after {attempts} probes "
                    f"(blkid -p: {(err or out or '').strip() or f'exit {rc}, no type'})")


def existing_parent(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_destination(dest, origin_devices):
    """Refuse a destination on one of the LVs being backed up (it would copy into its own snapshot's
    origin, filling the snapshot with the copy). origin_devices: device paths of the origin LVs."""
    if not os.path.isabs(dest):
        raise CopyError(f"backup destination {dest!r} must be an absolute path")
    dest_dev = os.stat(existing_parent(dest)).st_dev
    for device in origin_devices:
        try:
            rdev = os.stat(os.path.realpath(device)).st_rdev
        except OSError:
            continue
        if rdev and rdev == dest_dev:
            raise CopyError(
                f"backup destination {dest} is on {device}, one of the volumes being backed up; "
                "choose a destination on another filesystem"
            )


def copy_command(method, source, target_base, label):
    """The child process copying one mounted snapshot; returns (argv, target path)."""
    if method == "rsync":
        target = os.path.join(target_base, label)
        return [
            "rsync",
            "-a",
            "-H",
            "--numeric-ids",
            "--delete",
            source.rstrip("/") + "/",
            target + "/",
        ], target
    if method == "tar":
        target = os.path.join(target_base, f"{label}.tar")
        create_private_file(target)
        return ["tar", "--numeric-owner", "-C", source, "-cf", target, "."], target
    raise CopyError(f"unknown copy method {method!r} (rsync or tar)")


def create_private_file(path):
    """Create path, empty and 0600 (O_EXCL, never through a symlink), for a child to write into.

    tar opens its archive with O_TRUNC, keeping the mode of a file that exists; left to create it,
    tar would make it 0666 & ~umask (0644), readable through the 0711 directories by anyone who
    knows the (guessable) path while the archive of the whole datadir is written and after.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CopyError(f"cannot create the archive {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # 0600 whatever the umask
    finally:
        os.close(fd)


def sha256_file(path, bufsize=1024 * 1024, on_bytes=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(bufsize), b""):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def write_manifest(root, on_bytes=None):
    """sha256 of every regular file under root (but the manifest and metadata); returns (files, bytes).

    on_bytes(n) is called after every chunk hashed (progress; it may raise to stop the run)."""
    entries, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel in (MANIFEST, METADATA) or os.path.islink(path) or not os.path.isfile(path):
                continue
            total += os.path.getsize(path)
            entries.append(f"{sha256_file(path, on_bytes=on_bytes)}  {rel}\n")
    tmp = os.path.join(root, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(entries)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.rename(tmp, os.path.join(root, MANIFEST))
    return len(entries), total


def check_manifest(root):
    """Files whose checksum differs or that are missing: [(relpath, reason)]; [] when all match."""
    problems = []
    with open(os.path.join(root, MANIFEST)) as f:
        for line in f:
            digest, rel = line.rstrip("\n").split("  ", 1)
            path = os.path.join(root, rel)
            if not os.path.isfile(path):
                problems.append((rel, "missing"))
            elif sha256_file(path) != digest:
                problems.append((rel, "checksum differs"))
    return problems


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def sync_filesystem(path):
    """Write the filesystem holding path to disk, data and metadata, before anything relies on it.

    fs_sync.sync_tree: one syncfs(2) for many files (a batch: as fast as the disk allows whatever
    their number), an fsync each for a few (syncfs would also wait for whatever else is dirty on the
    filesystem). CopyError when the disk reports an error (the copy must then not be published)."""
    try:
        fs_sync.sync_tree(path)
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno, str(exc))
        raise CopyError(f"writing the copy in {path} to disk failed ({reason}); not published") from exc


def list_backups(dest):
    """Complete backups in dest, oldest first (names are UTC timestamps, so they sort by time)."""
    if not os.path.isdir(dest):
        return []
    return sorted(
        n for n in os.listdir(dest) if BACKUP_NAME_RE.match(n) and os.path.isdir(os.path.join(dest, n))
    )


def read_metadata(backup_dir):
    """A backup's metadata.json, {} when it cannot be read."""
    try:
        with open(os.path.join(backup_dir, METADATA)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def backup_status(meta):
    """good or suspect; a backup made before the shrink guard (no status) counts as good."""
    return SUSPECT if meta.get("status") == SUSPECT else GOOD


def backup_figures(meta):
    """The size figures a backup recorded; for one made before the shrink guard, the same figures
    taken from its size and verification."""
    if isinstance(meta.get("figures"), dict):
        return meta["figures"]
    figures = {}
    if meta.get("size_bytes") is not None:
        figures["bytes"] = meta["size_bytes"]
    verification = meta.get("verification") or {}
    if verification.get("tables_checked") is not None:
        figures["tables"] = verification["tables_checked"]
    for table, rows in (verification.get("row_counts") or {}).items():
        figures[f"rows:{table}"] = rows
    return figures


def last_good_backup(dest):
    """(name, metadata) of the newest good backup in dest, (None, {}) when there is none."""
    for name in reversed(list_backups(dest)):
        meta = read_metadata(os.path.join(dest, name))
        if backup_status(meta) == GOOD:
            return name, meta
    return None, {}


def counted_tables(figures):
    """The tables whose rows a set of figures holds ('db.t')."""
    return [k.split(":", 1)[1] for k in figures if k.startswith("rows:")]


def apply_retention(dest, keep, check_mode=False, min_good=DEFAULT_MIN_GOOD, protect=None):
    """Keep the newest `keep` good backups (0 keeps all) by the rule every strategy shares
    (retention_policy): suspect backups are not counted as good, the newest good one and at least
    min_good good backups are always kept, and so is protect (the run's own backup). Returns the
    names of the backups removed (or that would be, in check mode), oldest first."""
    if keep is None or keep <= 0:
        return []
    backups = [{"name": n, "status": backup_status(read_metadata(os.path.join(dest, n)))}
               for n in list_backups(dest)]
    _keep, delete = plan_retention(backups, keep_count=keep, min_good=min_good)
    doomed = [b for b in delete if b["name"] != protect]
    if not check_mode:
        for backup in doomed:
            # hidden first: a run killed while deleting leaves a .partial-* (removed by the next
            # run's cleanup), never a half-deleted directory that still looks like a backup
            hidden = os.path.join(dest, f"{PARTIAL_PREFIX}delete-{backup['name']}")
            os.rename(os.path.join(dest, backup["name"]), hidden)
            shutil.rmtree(hidden)
    return [b["name"] for b in doomed]


def stale_partials(dest):
    if not os.path.isdir(dest):
        return []
    return sorted(n for n in os.listdir(dest) if n.startswith(PARTIAL_PREFIX))


def du_bytes(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


class SnapshotCopy:
    """One backup run: mount each snapshot read-only, copy it, watch fill, verify, publish or discard.

    snapshots: [{'vg', 'name', 'path', 'label', 'origin_path', 'thin', optional 'fstype'}]
    verify: optional callable(partial_dir, count_tables) -> dict ({'tables_checked', 'row_counts',
    optional 'datadir_bytes'}), raising CopyError when the copy is not usable; count_tables are the
    tables ('db.t') whose rows the last good backup recorded, to be counted again.
    shrink_threshold, min_good, accept_shrink: the shrink guard and retention (module docstring).
    progress_file: optional path of the progress file (see the module docstring); progress_factory
    makes its writer (ProgressFile). timeout: seconds for the whole run (0/None: no limit); past it
    the copy is stopped and the run fails cleanly.
    """

    def __init__(
        self,
        runner,
        snapshots,
        dest,
        method="rsync",
        mount_root="/run/lvm-snapshot-backup",
        fill_threshold=80.0,
        fill_action="extend",
        extend_percent=20.0,
        poll_interval=2.0,
        keep=None,
        metadata=None,
        verify=None,
        now=None,
        clock=time.monotonic,
        popen=subprocess.Popen,
        progress_file=None,
        progress_factory=ProgressFile,
        progress_interval=1.0,
        timeout=None,
        sync=sync_filesystem,
        shrink_threshold=DEFAULT_SHRINK_THRESHOLD,
        min_good=DEFAULT_MIN_GOOD,
        accept_shrink=False,
    ):
        self.runner = runner
        self.snapshots = snapshots
        self.dest = dest
        self.method = method
        self.mount_root = mount_root
        self.watch = dict(
            threshold=fill_threshold,
            action=fill_action,
            extend_percent=extend_percent,
            interval=poll_interval,
        )
        self.keep = keep
        self.metadata = dict(metadata or {})
        self.verify = verify
        self.name = timestamp(now)
        self.clock = clock
        self.popen = popen
        self.progress_file = progress_file
        self.progress_factory = progress_factory
        self.progress_interval = progress_interval
        self.timeout = timeout or None
        self.sync = sync
        self.shrink_threshold = shrink_threshold
        self.min_good = min_good
        self.accept_shrink = bool(accept_shrink)
        self.deadline = None
        self.current = None
        self.mounted = []

    # -- steps -------------------------------------------------------------------------------
    def preflight(self):
        if self.method not in ("rsync", "tar"):
            raise CopyError(f"unknown copy method {self.method!r} (rsync or tar)")
        if self.timeout is not None and self.timeout < 0:
            raise CopyError(f"timeout must be 0 (no limit) or a number of seconds, not {self.timeout}")
        try:
            self.shrink_threshold = check_threshold(self.shrink_threshold)
            self.min_good = check_min_good(self.min_good)
        except RetentionPolicyError as exc:
            raise CopyError(str(exc)) from None
        try:
            check_mount_root(self.mount_root)
        except MountRootError as exc:
            raise CopyError(str(exc)) from exc
        labels = [s["label"] for s in self.snapshots]
        if len(set(labels)) != len(labels) or any(not re.match(r"^[A-Za-z0-9_.-]+$", x) for x in labels):
            raise CopyError(f"snapshot labels must be unique simple names: {labels}")
        check_destination(self.dest, [s["origin_path"] for s in self.snapshots if s.get("origin_path")])
        lvs = read_lvs(self.runner)
        for snap in self.snapshots:
            lv = find_lv(lvs, snap["vg"], snap["name"])
            if lv is None:
                raise CopyError(f"snapshot {snap['vg']}/{snap['name']} does not exist")
            if is_invalid(lv):
                raise CopyError(f"snapshot {snap['vg']}/{snap['name']} is invalid before the copy started")
        if os.path.exists(os.path.join(self.dest, self.name)):
            raise CopyError(f"a backup named {self.name} already exists in {self.dest}")

    def _mount(self, snap):
        fstype = snap.get("fstype") or detect_fstype(self.runner, snap["path"])
        mountpoint = snapshot_mountpoint(self.mount_root, snap["vg"], snap["name"])
        os.makedirs(mountpoint, mode=0o700, exist_ok=True)
        rc, out, err = self.runner(
            ["mount", "-t", fstype, "-o", mount_options(fstype), snap["path"], mountpoint]
        )
        if rc != 0:
            raise CopyError(
                f"mounting {snap['path']} read-only on {mountpoint} failed: {(err or out).strip()}"
            )
        self.mounted.append(mountpoint)
        return mountpoint, fstype

    def _umount_all(self):
        problems = []
        for mountpoint in reversed(self.mounted):
            for attempt in range(4):
                rc, out, err = self.runner(["umount", mountpoint])
                if rc == 0:
                    break
                time.sleep(1 + attempt)
            else:
                problems.append(f"{mountpoint}: {(err or out).strip()}")
                continue
            try:
                os.rmdir(mountpoint)
            except OSError:
                pass
        self.mounted = []
        if problems:
            raise CopyError("could not unmount " + "; ".join(problems))

    def _abort_copy(self, _reason):
        signal_copy(self.current, signal.SIGTERM)

    def _timeout_error(self, what):
        return CopyError(
            f"{what} did not finish within the time limit of {self.timeout:g} s (timeout); stopped"
        )

    def _check_deadline(self, what):
        if self.deadline is not None and self.clock() >= self.deadline:
            raise self._timeout_error(what)

    def _copy_one(self, source, partial, label, watcher, progress=NO_PROGRESS, base=0, total=None):
        argv, target = copy_command(self.method, source, partial, label)

        def started(proc):
            self.current = proc

        try:
            rc, err, timed_out = run_copy(
                argv, target, popen=self.popen, progress=progress, base=base, total=total,
                interval=self.progress_interval, deadline=self.deadline, clock=self.clock,
                on_start=started,
            )
        finally:
            self.current = None
        if watcher.failure:
            raise CopyError(watcher.failure)
        if timed_out:
            raise self._timeout_error(f"the {self.method} copy of {source}")
        if rc != 0:
            text = err.strip()[-500:]
            # A snapshot that overflows makes reads from it fail: the copy can notice before the
            # fill watcher's next poll. Ask LVM before blaming the copy.
            try:
                cause = self._invalid_snapshot()
            except LvmError:
                cause = None  # LVM cannot be asked: the copy's own error stands
            if cause:
                raise CopyError(
                    f"{cause}; the {self.method} copy of {source} failed because of it "
                    f"(exit code {rc}): {text}"
                )
            raise CopyError(
                f"{self.method} of {source} stopped with exit code {rc} (killed or failed): {text}"
            )
        return target

    def _invalid_snapshot(self):
        """Why a snapshot can no longer be read, as LVM tells it now; None when every snapshot is
        valid. LvmError when LVM cannot be asked."""
        lvs = read_lvs(self.runner)
        for snap in self.snapshots:
            if is_invalid(find_lv(lvs, snap["vg"], snap["name"])):
                return (
                    f"snapshot {snap['vg']}/{snap['name']} became invalid during the copy (its "
                    "copy-on-write space filled up or it vanished): make it larger "
                    "(lvm_snapshot_backup_volumes size) or let the watcher extend it"
                )
        return None

    def run(self):
        """The whole run; returns the metadata (with path and retention_removed). With a progress
        file, its last state is done, or failed with the error message. SIGTERM (a cancelled async
        job) stops it like any failure (copy stopped, unmounted, partial copy removed), then
        CopyError "copy cancelled"."""
        with terminable():  # SIGTERM raises Terminated in the main thread: _run's finally runs
            progress = PhaseProgress(self.progress_file, self.progress_factory)
            try:
                progress.start(f"{COPY_STEP} (preparing)")
            except ProgressError as exc:
                raise CopyError(f"cannot write the progress file: {exc}") from exc
            try:
                try:
                    result = self._run(progress)
                except Terminated as exc:
                    raise CopyError(
                        f"copy cancelled ({exc}); the copy was stopped, the snapshots unmounted and "
                        "the partial copy removed"
                    ) from exc
            except SuspectBackupError as exc:
                progress.finish(ok=False, message=f"backup kept as SUSPECT: {exc}")
                raise
            except BaseException as exc:
                message = str(exc) or type(exc).__name__
                progress.finish(ok=False, message=f"backup NOT published: {message}")
                raise
            progress.finish()
            return result

    def _run(self, progress):
        self.preflight()
        partial = os.path.join(self.dest, PARTIAL_PREFIX + self.name)
        final = os.path.join(self.dest, self.name)
        # traverse-only for others: the throwaway server verifying the copy runs as the datadir's owner
        # (mysql); the data files keep their own restrictive modes, manifest and metadata are 0600
        os.makedirs(self.dest, mode=0o711, exist_ok=True)
        os.makedirs(partial, mode=0o711)
        os.chmod(partial, 0o711)
        if self.verify:
            mode = os.stat(self.dest).st_mode & 0o7777
            if mode & 0o011 != 0o011:
                os.chmod(self.dest, mode | 0o011)
        watcher = FillWatcher(self.runner, self.snapshots, on_abort=self._abort_copy, **self.watch)
        published = False
        t_start = self.clock()
        if self.timeout:
            self.deadline = t_start + self.timeout
        copies = []
        try:
            watcher.start()
            # mount every snapshot first: the total to copy is known before the first byte moves
            mounts = []
            for snap in self.snapshots:
                mountpoint, fstype = self._mount(snap)
                size = measure_source(mountpoint)
                size = size["tar_bytes" if self.method == "tar" else "bytes"]
                mounts.append((snap, mountpoint, fstype, size))
            total = sum(m[3] for m in mounts)
            progress.phase(COPY_STEP, total)
            done = 0
            for snap, mountpoint, fstype, size in mounts:
                self._check_deadline("the copy")
                t0 = self.clock()
                target = self._copy_one(mountpoint, partial, snap["label"], watcher, progress, done, total)
                done += size
                progress.update(done)
                copies.append(
                    dict(
                        label=snap["label"],
                        snapshot=f"{snap['vg']}/{snap['name']}",
                        fstype=fstype,
                        target=os.path.basename(target),
                        seconds=round(self.clock() - t0, 3),
                        bytes=du_bytes(target) if os.path.isdir(target) else os.path.getsize(target),
                    )
                )
            watcher.stop()
            # the last word on validity comes after the copy, from LVM itself
            if not watcher.failure:
                watcher.poll_once()
            if watcher.failure:
                raise CopyError(watcher.failure)
            cause = self._invalid_snapshot()
            if cause:
                raise CopyError(cause)
            self._umount_all()
            copy_seconds = round(self.clock() - t_start, 3)
            good_name, good_meta = last_good_backup(self.dest)
            good_figures = backup_figures(good_meta) if good_name else {}
            verification = None
            if self.verify:
                self._check_deadline("the copy")
                progress.phase(VERIFY_STEP)
                t0 = self.clock()
                verification = self.verify(partial, counted_tables(good_figures))
                verification["seconds"] = round(self.clock() - t0, 3)
            self._check_deadline("the verification of the copy")
            t0 = self.clock()
            progress.phase(MANIFEST_STEP, du_bytes(partial))
            hashed = [0]

            def on_bytes(n):
                hashed[0] += n
                progress.update(hashed[0])
                self._check_deadline("the checksums of the copy")

            files, size = write_manifest(partial, on_bytes)
            figures = self._figures(size, verification)
            verdict = judge(good_figures, figures, self.shrink_threshold, self.accept_shrink,
                            what=f"LVM snapshot backup {self.name}", previous_name=good_name)
            metadata = dict(self.metadata)
            metadata.update(
                name=self.name,
                method=self.method,
                copies=copies,
                files=files,
                size_bytes=size,
                copy_seconds=copy_seconds,
                manifest_seconds=round(self.clock() - t0, 3),
                verification=verification,
                snapshot_max_fill_percent=watcher.max_percent,
                watcher_events=watcher.events,
                status=verdict["status"],
                figures=figures,
                shrink=verdict["drops"],
                shrink_accepted=verdict["accepted"],
                last_good=good_name,
            )
            write_json(os.path.join(partial, METADATA), metadata)
            # on disk before it is published and before retention removes an older backup: rsync
            # and tar write through the page cache, a crash after the rename would leave a
            # "complete" backup with empty or missing files
            self.sync(partial)
            fsync_dir(partial)
            os.rename(partial, final)
            fsync_dir(self.dest)
            published = True
        except LvmError as exc:
            raise CopyError(str(exc)) from exc
        finally:
            watcher.stop()
            stop_child(self.current)
            umount_error = None
            try:
                self._umount_all()
            except CopyError as exc:
                umount_error = exc
            if not published:
                shutil.rmtree(partial, ignore_errors=True)
            if umount_error and published:
                raise umount_error
        removed = apply_retention(self.dest, self.keep, min_good=self.min_good, protect=self.name)
        metadata["retention_removed"] = removed
        metadata["path"] = final
        metadata["result"] = "suspect" if verdict["status"] == SUSPECT else "ok"
        metadata["shrink_message"] = verdict["message"]
        latest, _meta = last_good_backup(self.dest)
        metadata["latest"] = latest
        if verdict["status"] == SUSPECT:
            raise SuspectBackupError(verdict["message"], metadata)
        return metadata

    @staticmethod
    def _figures(size, verification):
        """The size figures of the new backup (the shrink guard compares them)."""
        figures = {"bytes": size}
        if verification:
            if verification.get("datadir_bytes") is not None:
                figures["datadir_bytes"] = verification["datadir_bytes"]
            figures["tables"] = verification.get("tables_checked", 0)
            for table, rows in sorted((verification.get("row_counts") or {}).items()):
                figures[f"rows:{table}"] = rows
            for table in verification.get("tables_gone") or ():
                figures[f"rows:{table}"] = 0  # counted by the last good backup, gone now
        return figures
