"""Restore side of the fcrepo backups: who must own the restored files, and proof that they can read them.

The ownership rule: restored files get the owner, group and mode of the live store's directory they
belong to (the LevelDB directory for the LevelDB, ``fcrepo.binary.directory`` for the binaries);
directories created by the restore get that directory's mode, files the same mode without its
execute bits (0750 -> 0640, 0700 -> 0600). Backups themselves are root-only (0700/0600); copied as
they are, fcrepo running as its own user could not read them.

The checks run in a child process that has become the store's owner (its uid, gid and supplementary
groups), so a restore is only reported good when that user really opened and read every restored
binary (SHA-1 compared with its name) and every LevelDB record (record count compared with the one
recorded at backup time).
"""
import codecs
import grp
import json
import os
import pwd
import shutil
import stat
import tempfile

from ansible.module_utils import fcrepo_binaries as fb
from ansible.module_utils import leveldb_backup as lb
from ansible.module_utils.fs_sync import fsync_dir


class FcrepoRestoreError(Exception):
    """Operator-facing failure of a restore."""


def ownership(uid, gid, mode):
    """The ownership a restore applies: uid, gid, directory mode, file mode (the mode without x bits)."""
    mode = stat.S_IMODE(mode)
    return {"uid": uid, "gid": gid, "dir_mode": mode, "file_mode": mode & 0o666}


def restore_argument_spec(**own):
    """The restore modules' arguments: where to restore and the live store's owner, group and mode,
    plus the module's own."""
    return dict(
        dest=dict(type="path", required=True),
        owner=dict(type="str", required=True),
        group=dict(type="str", required=True),
        mode=dict(type="str", default="0700"),
        **own,
    )


def ownership_from(owner, group, mode):
    """ownership() from names (or numbers) and an octal mode string ('0750')."""
    try:
        uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
        gid = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise FcrepoRestoreError(f"unknown owner or group for the restored files: {exc}") from exc
    try:
        value = int(str(mode), 8)
    except ValueError as exc:
        raise FcrepoRestoreError(f"mode {mode!r} is not an octal mode such as 0750") from exc
    if value & 0o700 != 0o700:
        raise FcrepoRestoreError(f"mode {mode!r} would not let the owner read and enter the directories")
    return ownership(uid, gid, value)


def apply_ownership(path, own, is_dir):
    os.chown(path, own["uid"], own["gid"], follow_symlinks=False)
    os.chmod(path, own["dir_mode"] if is_dir else own["file_mode"])


def run_as(own, function, *args):
    """Run function(*args) in a child process with the owner's uid, gid and groups; return its result
    (JSON-serialisable). Exceptions in the child come back as FcrepoRestoreError."""
    uid, gid = own["uid"], own["gid"]
    if os.geteuid() not in (0, uid):
        raise FcrepoRestoreError(
            f"checking the restore as uid {uid} needs root (become: true); running as uid {os.geteuid()}")
    for codec in ("ascii", "utf-8"):  # codecs and plyvel are loaded here: the owner's process cannot
        codecs.lookup(codec)  # import from the module's private (root, 0700) temporary directory
    lb._load_plyvel()  # noqa: SLF001
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become the owner, do the work, report on the pipe, never return
        status = 0
        try:
            os.close(read_fd)
            os.chdir("/")
            if os.geteuid() != uid:
                try:
                    name = pwd.getpwuid(uid).pw_name
                    groups = os.getgrouplist(name, gid)
                except KeyError:
                    groups = [gid]
                os.setgroups(groups)
                os.setgid(gid)
                os.setuid(uid)
            payload = {"result": function(*args)}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            payload = {"error": f"{type(exc).__name__}: {exc}"}
            status = 1
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps(payload).encode("utf-8"))
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        text = pipe.read().decode("utf-8")
    os.waitpid(pid, 0)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise FcrepoRestoreError(f"the check as uid {uid} died without an answer") from exc
    if "error" in payload:
        raise FcrepoRestoreError(f"the check as uid {uid} failed: {payload['error']}")
    return payload["result"]


# -- LevelDB ----------------------------------------------------------------------------------
def _verify_as_owner(dest, scratch):
    """In the owner's process: read every record of a throwaway hard-link copy of dest."""
    result = lb.verify_db_copy(dest, scratch)
    return {"ok": result["ok"], "records": result["records"], "error": result["error"]}


def restore_leveldb(backup_dir, dest, own, check_mode=False):
    """Copy a verified backup's data/ to dest (which must not exist), owned and moded by `own`, then
    have the owner read every record and compare the count with the backup's. A failed copy or
    check removes dest."""
    meta = lb.read_meta(backup_dir)
    data = os.path.join(backup_dir, "data")
    if meta is None or not os.path.isdir(data):
        raise FcrepoRestoreError(f"{backup_dir} is not a backup made by leveldb_backup (no data/, metadata)")
    parent = os.path.dirname(os.path.abspath(dest))
    report = {"dest": dest, "expected_records": meta.get("records"), "records": None, "files": 0,
              "bytes": 0, "uid": own["uid"], "gid": own["gid"], "dir_mode": oct(own["dir_mode"]),
              "file_mode": oct(own["file_mode"]), "changed": True}
    if check_mode:  # an in-place run moves the live LevelDB aside first, a scratch run creates the parent
        return report
    if os.path.lexists(dest):
        raise FcrepoRestoreError(f"{dest} exists: a LevelDB is restored into a new directory")
    if not os.path.isdir(parent):
        raise FcrepoRestoreError(f"parent directory {parent} of {dest} does not exist")
    try:
        os.mkdir(dest, 0o700)
        for name in sorted(os.listdir(data)):
            src = os.path.join(data, name)
            if not os.path.isfile(src) or os.path.islink(src):
                continue
            target = os.path.join(dest, name)
            lb.copy_file(src, target, fsync=True)
            apply_ownership(target, own, is_dir=False)
            report["files"] += 1
            report["bytes"] += os.path.getsize(target)
        apply_ownership(dest, own, is_dir=True)
        fsync_dir(dest)
        # A scratch directory the owner can write, beside dest (hard links need the same filesystem).
        scratch_parent = tempfile.mkdtemp(prefix=".restore-check-", dir=parent)
        try:
            os.chown(scratch_parent, own["uid"], own["gid"])
            check = run_as(own, _verify_as_owner, dest, os.path.join(scratch_parent, "db"))
        finally:
            shutil.rmtree(scratch_parent, ignore_errors=True)
        report["records"] = check["records"]
        if not check["ok"]:
            raise FcrepoRestoreError(f"the restored LevelDB {dest} cannot be read by uid {own['uid']}: "
                                     f"{check['error']}")
        if meta.get("records") is not None and check["records"] != meta["records"]:
            raise FcrepoRestoreError(f"the restored LevelDB {dest} holds {check['records']} records, the "
                                     f"backup {meta['records']}")
    except (OSError, FcrepoRestoreError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise FcrepoRestoreError(f"restoring the LevelDB into {dest} failed ({dest} removed): {exc}") from exc
    return report


# -- binaries ---------------------------------------------------------------------------------
def _read_binaries(root, names):
    """In the owner's process: open and read every binary, SHA-1 compared with its name."""
    unreadable, mismatches = [], []
    for rel in names:
        try:
            actual, _size = fb.sha1_file(os.path.join(root, rel))
        except OSError as exc:
            unreadable.append(f"{rel}: {exc.strerror}")
            continue
        if actual != os.path.basename(rel):
            mismatches.append({"file": rel, "where": "restored", "sha1": actual})
    return {"checked": len(names), "unreadable": unreadable, "mismatches": mismatches}


def restore_binaries(source, dest, own, check_mode=False):
    """Add the binaries of the backup `source` missing from `dest` (SHA-1 checked, owned and moded by
    `own`), then have the owner read every binary of the backup in dest and check its SHA-1."""
    if check_mode and not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        names, _misplaced, _unrecognised = fb.scan_store(source)  # a scratch target made by the run
        return {"binaries": len(names), "copied": len(names), "bytes_copied": sum(names.values()),
                "already_present": 0, "mismatches": [], "size_changed": [], "changed": bool(names)}
    report = fb.backup(source, dest, check_mode=check_mode, ownership=own)
    if check_mode:
        return report
    names, _misplaced, _unrecognised = fb.scan_store(source)
    report["owner_check"] = run_as(own, _read_binaries, dest, sorted(names))
    return report
