"""Restore an LVM snapshot backup (lvm_snapshot_copy's layout) of a MySQL/MariaDB data directory.

Pure Python. Two ways, both starting from a backup checked against its MANIFEST.sha256:

scratch   the backup's datadir is copied into a new scratch directory (owned by an unprivileged user),
          the binlog index re-pointed inside the copy, a throwaway mariadbd started on it with
          --no-defaults (own socket, no network, no binlog, grants skipped), CHECK TABLE on every
          table, the rows of every table counted and compared with the counts the backup recorded,
          the server stopped. The scratch directory is removed, or kept with a server running on its
          own socket (and TCP port when one is given) for the operator. The live server is not
          touched.

in place  the datadir may be a mount point (the role's default layout), so the contents are swapped,
          never the directory: the copy is staged inside the datadir (same filesystem), the server
          is stopped by the play, every entry of the datadir is moved into <datadir>/.pre-restore-<run>
          and the staged entries into the datadir (renames on one filesystem). A rollback is judged
          by what is on disk: what sits in the datadir goes to .failed-restore-<run>, what was set
          aside comes back.

    <datadir>/.restore-staging-<run>/   the copy being made (removed on any failure)
    <datadir>/.pre-restore-<run>/        the live data set aside (kept until the operator removes it)
    <datadir>/.failed-restore-<run>/     what a failed restore left in place, kept for a look
MariaDB lists these directories as databases named #mysql50#.pre-restore-... (as it lists an ext4
lost+found); they hold no tables.
"""

import os
import re
import shutil
import socket
import subprocess
import time

from ansible.module_utils.fs_sync import fsync_dir
from ansible.module_utils.lvm_snapshot_copy import (
    MANIFEST,
    backup_status,
    read_metadata,
    sha256_file,
)
from ansible.module_utils.mysql_datadir_verify import VerifyError, verify_datadir
from ansible.module_utils.retention_policy import GOOD

BACKUP_NAME = re.compile(r"^\d{8}T\d{6}Z$")
RUN_NAME = re.compile(r"^\d{8}T\d{6}Z$")
OWN_ENTRY = re.compile(r"^\.(pre-restore|restore-staging|failed-restore)-\d{8}T\d{6}Z(\.unpack)?$")
MOVING_IN = ".restore-moving-in"  # in the set-aside directory once the restored entries start moving in
KEPT_IN_PLACE = ("lost+found",)
# files of the live server's run that do not belong in a restored copy
STALE_FILES = ("mysql.sock", "mysqld.sock", "mysqld.pid", "mysql.pid")
SOCKET_PATH_MAX = 107
ROOM_MARGIN = 1.05
# the scratch server's InnoDB buffer pool: CHECK TABLE reads every page, then COUNT(*) reads them
# again; a rehearsal on the restore host can afford more than the backup-time verification (64M)
SCRATCH_BUFFER_POOL = "256M"


class RestoreError(Exception):
    """The restore was refused or failed; the message says what state things are in."""


# -- choosing and checking the backup ------------------------------------------------------------


def backups(dest):
    if not os.path.isdir(dest):
        raise RestoreError(f"no backup to restore: the backup directory {dest} does not exist")
    return sorted(n for n in os.listdir(dest)
                  if BACKUP_NAME.match(n) and os.path.isdir(os.path.join(dest, n)))


def choose(dest, name="latest"):
    """The backup directory to restore: the newest good one (a suspect backup, kept by the shrink
    guard, is never latest), or the one named (suspect or not: an operator's explicit choice)."""
    names = backups(dest)
    if not names:
        raise RestoreError(f"no backup to restore in {dest}")
    if name == "latest":
        good = [n for n in names if backup_status(read_metadata(os.path.join(dest, n))) == GOOD]
        if not good:
            raise RestoreError(f"no good backup to restore in {dest}: every one is suspect "
                               f"({', '.join(names)}); name one to restore it anyway")
        return os.path.join(dest, good[-1])
    if name not in names:
        raise RestoreError(f"backup {name} not found in {dest} (available: {', '.join(names)})")
    return os.path.join(dest, name)


def source_of(backup, label, subdir="."):
    """('tree', <dir holding the datadir>) or ('tar', <archive>, <subdir inside it>)."""
    tree = os.path.normpath(os.path.join(backup, label, subdir))
    if os.path.isdir(os.path.join(backup, label)):
        if not os.path.isdir(tree):
            raise RestoreError(f"backup {backup} has no {label}/{subdir} directory to restore")
        return ("tree", tree, ".")
    archive = os.path.join(backup, label + ".tar")
    if os.path.isfile(archive):
        return ("tar", archive, os.path.normpath(subdir))
    raise RestoreError(f"backup {backup} holds no volume labelled {label} (neither {label}/ nor {label}.tar)")


def check_backup(backup, label):
    """The files of the volume to restore (label/... or label.tar) against MANIFEST.sha256; raises
    naming the first problems."""
    manifest = os.path.join(backup, MANIFEST)
    if not os.path.isfile(manifest):
        raise RestoreError(f"backup {backup} has no {MANIFEST}: not a complete backup; nothing was changed")
    problems, checked = [], 0
    with open(manifest) as f:
        for line in f:
            digest, _, rel = line.rstrip("\n").partition("  ")
            if not (rel.startswith(label + "/") or rel == label + ".tar"):
                continue
            checked += 1
            path = os.path.join(backup, rel)
            if not os.path.isfile(path):
                problems.append(f"{rel} (missing)")
            elif sha256_file(path) != digest:
                problems.append(f"{rel} (checksum differs)")
    if problems:
        raise RestoreError(f"backup {backup} fails its manifest ({len(problems)} file(s): "
                           f"{', '.join(problems[:5])}); nothing was changed")
    if not checked:
        raise RestoreError(f"backup {backup}: its manifest lists no file of volume {label}; "
                           "nothing was changed")
    return checked


def source_bytes(source):
    kind, path, _subdir = source
    if kind == "tar":
        return os.path.getsize(path)
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_room(where, needed, what):
    st = os.statvfs(existing_ancestor(where))
    free = st.f_bavail * st.f_frsize
    if free < needed * ROOM_MARGIN:
        raise RestoreError(
            f"no room for {what} on the filesystem of {where}: {free // 2**20} MiB free, "
            f"{int(needed * ROOM_MARGIN) // 2**20} MiB needed; nothing was changed"
        )
    return free


def inside(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def check_port_free(port):
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RestoreError(f"scratch port {port} is in use ({exc.strerror}): name a free one; "
                               "nothing was changed") from exc


def servers_on(datadir):
    """PIDs of processes whose working directory is datadir (mariadbd chdirs into its datadir)."""
    real = os.path.realpath(datadir)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.path.realpath(os.readlink(f"/proc/{pid}/cwd")) == real:
                found.append(int(pid))
        except OSError:
            continue
    return found


# -- making the copy -----------------------------------------------------------------------------


def copy_datadir(source, target, uid, gid):
    """Copy the backup's datadir into target (a new directory), owned by uid:gid, modes kept."""
    kind, path, subdir = source
    if kind == "tree":
        # cp -a: owners by number, modes, times, hard links; copy_file_range does the copy in the
        # kernel (a quarter of rsync's time for a 275 MB datadir in the page cache, measured)
        os.makedirs(target, mode=0o700)
        _run(["cp", "-a", "--", path.rstrip("/") + "/.", target], "copying the backup")
    else:
        unpack = target + ".unpack"
        os.makedirs(unpack, mode=0o700)
        try:
            _run(["tar", "-x", "--numeric-owner", "-p", "-f", path, "-C", unpack], "unpacking the backup")
            inner = os.path.normpath(os.path.join(unpack, subdir))
            if not os.path.isdir(inner):
                raise RestoreError(f"archive {path} has no {subdir} directory")
            os.rename(inner, target)
        finally:
            shutil.rmtree(unpack, ignore_errors=True)
    for name in STALE_FILES:
        if os.path.lexists(os.path.join(target, name)):
            os.unlink(os.path.join(target, name))
    _run(["chown", "-R", "-h", f"{uid}:{gid}", target], "setting the owner of the copy")
    os.chmod(target, os.stat(target).st_mode & 0o7777 | 0o700)


def copy_checked(backup, label, source, target, uid, gid):
    """copy_datadir while the volume's files are checked against the manifest (a thread hashing
    beside the cp/tar process: the two read the same files, on two cores). A backup that fails
    its manifest raises RestoreError once the copy ends; the caller removes the copy, which nothing
    has used yet. Returns the number of files checked."""
    import threading

    outcome = {}

    def check():
        try:
            outcome["checked"] = check_backup(backup, label)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    checker = threading.Thread(target=check, name="manifest-check", daemon=True)
    checker.start()
    try:
        copy_datadir(source, target, uid, gid)
    finally:
        checker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["checked"]


def _run(cmd, what):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RestoreError(f"{what} failed ({cmd[0]} exit {proc.returncode}): "
                           f"{proc.stdout.decode('utf-8', 'replace').strip()[-600:]}")


def repoint_binlog_index(datadir, final_datadir=None):
    """Make every binlog index in datadir name the binlogs inside final_datadir (default datadir):
    a copied index holds absolute paths into the live datadir, which a server started on the copy
    with the binlog on would follow. Entries whose file is not in the copy are dropped.
    Returns {index name: entries kept}."""
    final_datadir = final_datadir or datadir
    done = {}
    for name in sorted(os.listdir(datadir)):
        path = os.path.join(datadir, name)
        if not name.endswith(".index") or not os.path.isfile(path) or name.startswith("."):
            continue
        with open(path) as f:
            entries = [line.strip() for line in f if line.strip()]
        if not entries or not all(re.search(r"\.\d{6}$", e) for e in entries):
            continue  # not a binlog/relay log index
        kept = [os.path.join(final_datadir, os.path.basename(e)) for e in entries
                if os.path.isfile(os.path.join(datadir, os.path.basename(e)))]
        st = os.stat(path)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(k + "\n" for k in kept))
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.rename(tmp, path)
        done[name] = len(kept)
    return done


def compare_counts(recorded, restored):
    """Tables whose restored row count differs from the count the backup recorded."""
    return [f"{t}: backup recorded {n}, restored {restored.get(t)}"
            for t, n in sorted((recorded or {}).items()) if restored.get(t) != n]


# -- scratch restore -----------------------------------------------------------------------------


class Scratch:
    """A scratch directory: data/ (the copy), and when kept, a server's socket, pid, log, client.cnf."""

    def __init__(self, directory, user="mysql", port=0):
        self.directory = os.path.abspath(directory)
        self.datadir = os.path.join(self.directory, "data")
        self.socket = os.path.join(self.directory, "mysqld.sock")
        self.pidfile = os.path.join(self.directory, "mysqld.pid")
        self.errlog = os.path.join(self.directory, "error.log")
        self.defaults_file = os.path.join(self.directory, "client.cnf")
        self.user = user
        self.port = int(port or 0)
        self.existed = None
        self.pid = None

    def check_new(self, live_datadir, dest):
        if len(self.socket.encode()) > SOCKET_PATH_MAX:
            raise RestoreError(f"scratch directory {self.directory} is too long a path for a Unix socket "
                               f"({len(self.socket.encode())} bytes, at most {SOCKET_PATH_MAX}); "
                               "nothing was changed")
        for other, what in ((live_datadir, "the live datadir"), (dest, "the backup directory")):
            if other and (inside(self.directory, other) or inside(other, self.directory)):
                raise RestoreError(
                    f"scratch directory {self.directory} is {what} {other} or overlaps it: a scratch restore "
                    "never writes there (an in-place restore is lvm_snapshot_restore.yml with its "
                    "confirmation); nothing was changed")
        if os.path.exists(self.directory) and (
            not os.path.isdir(self.directory) or os.listdir(self.directory)
        ):
            raise RestoreError(f"scratch directory {self.directory} exists and is not empty: name a new one; "
                               "nothing was changed")
        self.existed = os.path.isdir(self.directory)

    def ids(self):
        import pwd

        try:
            entry = pwd.getpwnam(self.user)
        except KeyError as exc:
            raise RestoreError(f"scratch user {self.user} does not exist on this host; "
                               "nothing was changed") from exc
        return entry.pw_uid, entry.pw_gid

    def create_dir(self):
        uid, gid = self.ids()
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        os.chown(self.directory, uid, gid)
        os.chmod(self.directory, 0o750)

    def start(self, wait=300):
        from ansible.module_utils.mysql_datadir_verify import server_binary

        argv = [server_binary(), "--no-defaults", f"--user={self.user}", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--pid-file={self.pidfile}", f"--log-error={self.errlog}",
                "--skip-log-bin", "--skip-slave-start", "--innodb-buffer-pool-size=128M", "--server-id=999"]
        argv += [f"--port={self.port}", "--bind-address=127.0.0.1"] if self.port else ["--skip-networking"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.pid = proc.pid
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RestoreError(f"the scratch server did not start: {self.tail()}")
            if os.path.exists(self.socket) and (not self.port or _listening(self.port)):
                with open(self.defaults_file, "w", opener=lambda p, fl: os.open(p, fl, 0o600)) as f:
                    f.write(f"[client]\nuser=root\nsocket={self.socket}\n")
                return
            time.sleep(0.2)
        raise RestoreError(f"the scratch server was not ready in {wait}s: {self.tail()}")

    def tail(self):
        try:
            with open(self.errlog) as f:
                return " | ".join(line.strip() for line in f.readlines()[-8:])
        except OSError:
            return "(no error log)"

    def remove(self):
        """Remove what this restore made, never anything else: the directory, or its content when the
        (empty) directory was there before."""
        if self.existed is None:
            return
        if not self.existed:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        for name in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
            path = os.path.join(self.directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _listening(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def scratch_restore(dest, name, label, subdir, scratch_dir, live_datadir=None, user="mysql", port=0,
                    keep=False, check_mode=False, start_timeout=300, verify=verify_datadir):
    """Restore the chosen backup into scratch_dir and prove it. Returns the result facts."""
    t0 = time.monotonic()
    backup = choose(dest, name)
    source = source_of(backup, label, subdir)
    scratch = Scratch(scratch_dir, user, port)
    scratch.check_new(live_datadir, dest)
    uid, gid = scratch.ids()
    check_port_free(scratch.port if keep else 0)
    needed = source_bytes(source)
    free = check_room(scratch.directory, needed, f"a copy of {os.path.basename(backup)}")
    result = dict(backup=backup, name=os.path.basename(backup), scratch_dir=scratch.directory,
                  bytes=needed, free_bytes=free, kept=bool(keep))
    if check_mode:
        return result
    metadata = read_metadata(backup)
    try:
        scratch.create_dir()
        t_copy = time.monotonic()
        result["files_checked"] = copy_checked(backup, label, source, scratch.datadir, uid, gid)
        result["copy_seconds"] = round(time.monotonic() - t_copy, 3)
        result["binlog_indexes"] = repoint_binlog_index(scratch.datadir)
        try:
            checked = verify(scratch.datadir, count_all=True, start_timeout=start_timeout,
                             buffer_pool=SCRATCH_BUFFER_POOL)
        except VerifyError as exc:
            raise RestoreError(f"the restored copy of {os.path.basename(backup)} does not prove good: "
                               f"{exc}") from exc
        recorded = ((metadata.get("verification") or {}).get("row_counts")) or {}
        differ = compare_counts(recorded, checked["row_counts"])
        if differ:
            raise RestoreError(f"the restored copy of {os.path.basename(backup)} differs from what the "
                               f"backup recorded: {'; '.join(differ[:10])}")
        result.update(tables_checked=checked["tables_checked"], row_counts=checked["row_counts"],
                      row_counts_compared=sorted(recorded), verify_seconds=checked["server_seconds"])
        if keep:
            scratch.start(start_timeout)
            result.update(socket=scratch.socket, port=scratch.port, pid=scratch.pid,
                          defaults_file=scratch.defaults_file, error_log=scratch.errlog)
    except BaseException:
        if scratch.pid:
            _terminate(scratch.pid)
        scratch.remove()
        raise
    if not keep:
        scratch.remove()
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def _terminate(pid, timeout=60):
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGKILL)


# -- in-place restore ----------------------------------------------------------------------------


def own_names(run):
    if not RUN_NAME.match(run or ""):
        raise RestoreError(f"run {run!r} is not a UTC timestamp like 20261203T041500Z")
    return dict(staging=f".restore-staging-{run}", aside=f".pre-restore-{run}",
                failed=f".failed-restore-{run}")


def data_entries(datadir):
    """The datadir's entries that are the server's data (not our own directories, not lost+found)."""
    return sorted(n for n in os.listdir(datadir) if not OWN_ENTRY.match(n) and n not in KEPT_IN_PLACE)


def check_datadir(datadir):
    if not os.path.isabs(datadir) or os.path.realpath(datadir) in ("/", "/var", "/srv", "/var/lib", "/home"):
        raise RestoreError(f"datadir {datadir!r} is not a data directory this restore replaces; "
                           "nothing was changed")
    if not os.path.isdir(datadir):
        raise RestoreError(f"datadir {datadir} does not exist; nothing was changed")
    if data_entries(datadir) and not os.path.isdir(os.path.join(datadir, "mysql")):
        raise RestoreError(f"{datadir} does not look like a MySQL data directory (no mysql/ schema); "
                           "nothing was changed")


def prepare_in_place(dest, name, label, subdir, datadir, run, check_mode=False):
    """Check the backup and stage its copy inside the datadir (same filesystem), owned like the datadir."""
    names = own_names(run)
    check_datadir(datadir)
    backup = choose(dest, name)
    source = source_of(backup, label, subdir)
    if inside(datadir, backup) or inside(backup, datadir):
        raise RestoreError(f"backup {backup} and datadir {datadir} overlap; nothing was changed")
    staging = os.path.join(datadir, names["staging"])
    if os.path.lexists(staging):
        raise RestoreError(f"{staging} exists already (another restore of run {run}?); nothing was changed")
    needed = source_bytes(source)
    free = check_room(datadir, needed, f"the staged copy of {os.path.basename(backup)}")
    result = dict(backup=backup, name=os.path.basename(backup), datadir=datadir, staging=staging,
                  aside=os.path.join(datadir, names["aside"]), bytes=needed, free_bytes=free)
    if check_mode:
        return result
    st = os.stat(datadir)
    t0 = time.monotonic()
    try:
        result["files_checked"] = copy_checked(backup, label, source, staging, st.st_uid, st.st_gid)
        os.chmod(staging, st.st_mode & 0o7777)
        result["binlog_indexes"] = repoint_binlog_index(staging, datadir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result["copy_seconds"] = round(time.monotonic() - t0, 3)
    return result


def swap_in_place(datadir, run):
    """Set the live entries aside and move the staged ones in. The server must be stopped."""
    names = own_names(run)
    staging = os.path.join(datadir, names["staging"])
    aside = os.path.join(datadir, names["aside"])
    if not os.path.isdir(staging):
        raise RestoreError(f"nothing staged at {staging}: run the prepare step first; nothing was changed")
    running = servers_on(datadir)
    if running:
        raise RestoreError(f"a process still runs in {datadir} (pid {', '.join(map(str, running))}): "
                           "stop the server first; nothing was changed")
    if os.path.lexists(aside):
        raise RestoreError(f"{aside} exists already; nothing was changed")
    os.mkdir(aside, 0o700)
    moved_aside = 0
    for entry in data_entries(datadir):
        os.rename(os.path.join(datadir, entry), os.path.join(aside, entry))
        moved_aside += 1
    # from here on, what is in the datadir is the restored copy (the rollback reads this marker)
    with open(os.path.join(aside, MOVING_IN), "w") as f:
        os.fsync(f.fileno())
    _sync(aside)
    moved_in = 0
    for entry in sorted(os.listdir(staging)):
        os.rename(os.path.join(staging, entry), os.path.join(datadir, entry))
        moved_in += 1
    os.rmdir(staging)
    _sync(datadir)
    return dict(aside=aside, moved_aside=moved_aside, moved_in=moved_in)


def rollback_in_place(datadir, run):
    """Put the set-aside data back, judged by what is on disk; says what state things are in."""
    names = own_names(run)
    aside = os.path.join(datadir, names["aside"])
    staging = os.path.join(datadir, names["staging"])
    if not os.path.isdir(aside):
        shutil.rmtree(staging, ignore_errors=True)
        return dict(state="untouched", msg=f"the live data in {datadir} was never moved: it is as it was")
    running = servers_on(datadir)
    if running:
        pids = ", ".join(map(str, running))
        raise RestoreError(f"a process still runs in {datadir} (pid {pids}): stop it, "
                           f"then roll back; the previous data is in {aside}")
    failed = os.path.join(datadir, names["failed"])
    # Entries in the datadir are the restored copy once the marker is there; before it, they are
    # live entries the set-aside step had not reached yet, and they stay.
    moving_in = os.path.join(aside, MOVING_IN)
    in_place = data_entries(datadir) if os.path.exists(moving_in) else []
    if in_place:
        os.makedirs(failed, 0o700, exist_ok=True)
        for entry in in_place:
            os.rename(os.path.join(datadir, entry), os.path.join(failed, entry))
    if os.path.exists(moving_in):
        os.unlink(moving_in)
    back = 0
    for entry in sorted(os.listdir(aside)):
        os.rename(os.path.join(aside, entry), os.path.join(datadir, entry))
        back += 1
    os.rmdir(aside)
    shutil.rmtree(staging, ignore_errors=True)
    _sync(datadir)
    msg = f"the previous data is back in {datadir} ({back} entries)"
    if in_place:
        msg += f"; what the failed restore left there is in {failed}"
    return dict(state="rolled_back", restored_entries=back, failed_dir=failed if in_place else None, msg=msg)


def finish_in_place(datadir, run, keep_previous=True):
    """After a good restore: remove a leftover staging directory, and the set-aside data unless kept."""
    names = own_names(run)
    staging = os.path.join(datadir, names["staging"])
    aside = os.path.join(datadir, names["aside"])
    changed = False
    if os.path.isdir(staging):
        shutil.rmtree(staging)
        changed = True
    if not keep_previous and os.path.isdir(aside):
        shutil.rmtree(aside)
        changed = True
    return dict(changed=changed, previous=aside if os.path.isdir(aside) else None)


def _sync(path):
    fsync_dir(path)
    os.sync()
