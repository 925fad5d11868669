"""Consistent, verified, incremental copies of a LevelDB directory (fcrepo's metadata store).

Procedure (fcrepo "LevelDB Backup" page, made safe to run unattended):

1. Checksum CURRENT and every MANIFEST-* of the source, copy CURRENT and the manifest first, then
   the other files, checksum again. LevelDB rewrites the manifest at the end of every compaction
   and memtable flush and deletes obsolete files only after that, so an unchanged manifest means
   the copy is a consistent state. Otherwise retry (bounded, default 10 attempts).
2. Incremental: table files (*.ldb / *.sst) never change once written. A table whose number, size
   and SHA-256 match one of the previous backup is hard-linked from it instead of copied, so each
   backup is a complete, independently restorable directory and deleting any backup (retention)
   never breaks another one.
3. Everything is written under ``<dest>/.tmp-<name>`` and renamed to ``<dest>/leveldb-<name>``
   only when the copy is consistent and verified; the previous backups stay untouched until then.
4. Verify the copy with plyvel: open it and iterate every record with ``verify_checksums=True``
   (opening with paranoid_checks alone misses bit flips in table blocks). On corruption, repair
   the copy (never the source) with ``plyvel.repair_db``, verify again and report the keys lost.
5. Optionally keep the exact, unmodified copy (``exact/``, hard links plus copies of the small
   mutable files) beside the verified one (``data/``), whose *.ldb files are renamed to *.sst
   (Infinispan reads only *.sst).

Pure Python; plyvel is imported lazily so the module can report a clear "missing library" error.
With a progress file, the copy reports bytes copied against the bytes to copy, then the full
verification the bytes of the records read (no total: the logical size is not known in advance),
for roles/backup_progress to poll while the module runs as an async job.
"""
import concurrent.futures
import errno
import hashlib
import json
import os
import re
import shutil
import time

from ansible.module_utils.fs_sync import SyncInBackground, copy_hashed, fsync_dir, sync_tree
from ansible.module_utils.leveldb_keys import ParseError, read_manifest, reference_keys
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

META_FILE = "backup.json"
BACKUP_PREFIX = "leveldb-"
TMP_PREFIX = ".tmp-"
TABLE_SUFFIXES = (".ldb", ".sst")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CHUNK = 1024 * 1024


class LevelDBBackupError(Exception):
    """Operator-facing failure of a LevelDB backup, verification or repair."""


class SuspectBackupError(LevelDBBackupError):
    """The backup was kept but is suspect (shrink guard): not latest, not counted as good.
    .report is the backup's report."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


# -- small helpers ----------------------------------------------------------------------------
def sha256_file(path):
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_file(src, dst, fsync=True):
    """Copy src to a new file dst (never overwrites: O_EXCL), reading it once: each chunk is hashed
    and written. Returns (sha256 of the bytes written, size)."""
    return copy_hashed(src, dst, hashlib.sha256(), fsync=fsync)


def is_table(name):
    return name.endswith(TABLE_SUFFIXES)


def table_number(name):
    return name.rsplit(".", 1)[0]


def _is_inside(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def _load_plyvel():
    try:
        import plyvel  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the host
        raise LevelDBBackupError(
            "python module plyvel is required for LevelDB verification (Debian: python3-plyvel)"
        ) from exc
    return plyvel


# -- source checks ----------------------------------------------------------------------------
def check_leveldb_dir(path):
    """Raise unless path is a LevelDB directory: CURRENT names an existing MANIFEST-*."""
    if not os.path.exists(path):
        raise LevelDBBackupError(f"LevelDB directory {path} does not exist")
    if not os.path.isdir(path):
        raise LevelDBBackupError(f"{path} is not a directory")
    current = os.path.join(path, "CURRENT")
    if not os.path.isfile(current):
        raise LevelDBBackupError(f"{path} is not a LevelDB directory (no CURRENT file)")
    with open(current, encoding="ascii", errors="replace") as handle:
        manifest = handle.read().strip()
    if not manifest.startswith("MANIFEST-") or "/" in manifest:
        raise LevelDBBackupError(f"{path}: CURRENT does not name a manifest ({manifest!r})")
    if not os.path.isfile(os.path.join(path, manifest)):
        raise LevelDBBackupError(f"{path}: CURRENT names {manifest}, which does not exist")
    return manifest


def manifest_fingerprint(path):
    """SHA-256 of CURRENT and of every MANIFEST-* (what LevelDB rewrites on each state change)."""
    fingerprint = {}
    for name in sorted(os.listdir(path)):
        if name == "CURRENT" or name.startswith("MANIFEST-"):
            try:
                fingerprint[name] = sha256_file(os.path.join(path, name))[0]
            except FileNotFoundError:
                fingerprint[name] = None  # removed while we looked: a change in itself
    return fingerprint


def tree_state(path):
    """(name, size, mtime_ns) of every file: used to decide that a directory is quiet."""
    state = []
    for name in sorted(os.listdir(path)):
        try:
            st = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue
        state.append((name, st.st_size, st.st_mtime_ns))
    return tuple(state)


def wait_until_quiet(path, quiet_seconds=5.0, timeout=300.0, interval=0.5, clock=time.monotonic,
                     sleep=time.sleep):
    """Wait until no file in path changed for quiet_seconds (writes paused, compaction done)."""
    check_leveldb_dir(path)
    start = clock()
    last = tree_state(path)
    quiet_since = start
    while True:
        now = clock()
        if now - quiet_since >= quiet_seconds:
            return now - start
        if now - start >= timeout:
            raise LevelDBBackupError(
                f"{path} did not stay quiet for {quiet_seconds}s within {timeout}s: writes are not paused "
                "or compaction is still running"
            )
        sleep(interval)
        state = tree_state(path)
        if state != last:
            last, quiet_since = state, clock()


def wait_for_quiet(path, quiet_seconds, timeout, progress_file=None, progress_factory=ProgressFile):
    """wait_until_quiet, reported in progress_file (step "waiting for a quiet LevelDB directory") and
    cancellable: SIGTERM ends the wait with a clear error (nothing was copied yet)."""
    step = "waiting for a quiet LevelDB directory"
    waiting = None
    if progress_file:
        try:
            waiting = progress_factory(progress_file, step)
        except (ProgressError, OSError) as exc:
            raise LevelDBBackupError(f"cannot write the progress file: {exc}") from exc
    try:
        with terminable():
            waited = wait_until_quiet(path, quiet_seconds, timeout)
    except (LevelDBBackupError, Terminated) as exc:
        message = str(exc) if isinstance(exc, LevelDBBackupError) else (
            f"backup cancelled while {step} (received SIGTERM: the job was cancelled); nothing was copied")
        if waiting is not None:
            try:
                waiting.finish(ok=False, message=message)
            except OSError:
                pass
        raise LevelDBBackupError(message) from None
    return waited


# -- destination ------------------------------------------------------------------------------
def read_meta(backup_dir):
    try:
        with open(os.path.join(backup_dir, META_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def list_backups(dest):
    """Complete backups (renamed into place, with their metadata), oldest first."""
    if not os.path.isdir(dest):
        return []
    found = []
    for name in sorted(os.listdir(dest)):
        full = os.path.join(dest, name)
        if name.startswith(BACKUP_PREFIX) and os.path.isdir(full) and not os.path.islink(full):
            meta = read_meta(full)
            if meta and meta.get("status") == "ok":
                found.append((meta.get("created_epoch", 0), name, full))
    return [full for _epoch, _name, full in sorted(found)]


def backup_status(backup_dir):
    """good or suspect, from the backup's metadata (backups made before the shrink guard are good)."""
    meta = read_meta(backup_dir) or {}
    return meta.get("result", GOOD)


def last_good_backup(dest):
    """The newest good (not suspect) complete backup, None when there is none."""
    for path in reversed(list_backups(dest)):
        if backup_status(path) == GOOD:
            return path
    return None


def check_destination(source, dest):
    if _is_inside(dest, source):
        raise LevelDBBackupError(f"destination {dest} is inside the source {source}: refusing")
    if _is_inside(source, dest):
        raise LevelDBBackupError(f"source {source} is inside the destination {dest}: refusing")
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise LevelDBBackupError(f"parent directory of the destination ({parent}) does not exist")
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise LevelDBBackupError(f"destination {dest} exists and is not a directory")


def remove_stale_temps(dest):
    """Remove leftovers of killed runs (hidden .tmp-* directories): they never count as backups."""
    removed = []
    if os.path.isdir(dest):
        for name in os.listdir(dest):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(dest, name), ignore_errors=True)
                removed.append(name)
    return sorted(removed)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# -- the consistent copy ----------------------------------------------------------------------
def _previous_tables(previous_dir):
    """table number -> (path in previous data/, size, sha256, verified, source identity) from the
    previous backup's metadata."""
    if not previous_dir:
        return {}
    meta = read_meta(previous_dir) or {}
    tables = {}
    for name, info in (meta.get("data_files") or {}).items():
        if is_table(name):
            path = os.path.join(previous_dir, "data", name)
            if os.path.isfile(path):
                tables[table_number(name)] = (path, info["size"], info["sha256"], info.get("verified", False),
                                              info.get("src"))
    return tables


class _Vanished(Exception):
    """A source file was deleted (by a compaction) while it was being copied."""


def _copy_one(source, target, name, previous, rehash):
    """Copy or link one file of the source; its record (size, sha256, linked, verified, src)."""
    src = os.path.join(source, name)
    dst = os.path.join(target, name)
    try:
        st = os.stat(src)
        identity = [st.st_ino, st.st_mtime_ns]
        if is_table(name) and table_number(name) in previous:
            prev_path, prev_size, prev_sha, prev_verified, prev_src = previous[table_number(name)]
            if st.st_size == prev_size:
                if not rehash and prev_src == identity:
                    sha, size = prev_sha, prev_size
                else:
                    sha, size = sha256_file(src)
                if sha == prev_sha:
                    os.link(prev_path, dst)
                    return {"size": size, "sha256": sha, "linked": True, "verified": prev_verified,
                            "src": identity}
        sha, size = copy_file(src, dst, fsync=False)
        return {"size": size, "sha256": sha, "linked": False, "verified": False, "src": identity}
    except FileNotFoundError:
        if not os.path.exists(src):
            raise _Vanished(name) from None
        raise


def copy_workers():
    """Files copied at once: reading, hashing and writing release the GIL, so two files are copied
    and hashed on two cores; more than four gains nothing on one disk."""
    return max(1, min(4, os.cpu_count() or 1))


def _copy_attempt(source, target, previous, rehash=False, progress=NO_PROGRESS, workers=None):
    """One copy of source into the empty directory target. Returns per-file records, or None when
    the source changed under us (a file vanished).

    CURRENT and the manifests are copied first, one after the other, then the other files by a few
    threads (copy_workers). A table is linked from the previous backup when its number, size and
    SHA-256 match. Tables are immutable, so when number, size, inode and mtime are those recorded
    for the previous backup's source file (rsync's quick check), its recorded SHA-256 is reused
    instead of reading it again (rehash=True always reads)."""
    files = {}
    names = [n for n in os.listdir(source)
             if n != "LOCK" and os.path.isfile(os.path.join(source, n))
             and not os.path.islink(os.path.join(source, n))]
    # LOCK is the live process's lock file; subdirectories (lost/) are not data
    first = [n for n in ["CURRENT"] + sorted(n for n in names if n.startswith("MANIFEST-")) if n in names]
    others = sorted(n for n in names if n not in first)

    def record(name, info):
        files[name] = info
        if not info["linked"]:
            progress.advance(info["size"])

    try:
        for name in first:
            record(name, _copy_one(source, target, name, previous, rehash))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers or copy_workers()) as pool:
            pending = {pool.submit(_copy_one, source, target, name, previous, rehash): name
                       for name in others}
            try:
                for future in concurrent.futures.as_completed(pending):
                    record(pending[future], future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    except _Vanished:
        return None  # deleted by a compaction during the copy
    return files


def consistent_copy(source, target, attempts=10, previous_dir=None, fsync=True, retry_delay=0.2,
                    sleep=time.sleep, rehash=False, progress=NO_PROGRESS):
    """Copy source into target (created here) until CURRENT and MANIFEST-* are unchanged across the
    copy. Returns (files, attempts_used, manifest_fingerprint). progress (a PhaseProgress) counts the
    bytes copied, from 0 again on each attempt."""
    previous = _previous_tables(previous_dir)
    for attempt in range(1, attempts + 1):
        if os.path.exists(target):
            shutil.rmtree(target)
        os.mkdir(target, 0o700)
        before = manifest_fingerprint(source)
        progress.update(0)
        files = _copy_attempt(source, target, previous, rehash, progress)
        after = manifest_fingerprint(source)
        copied_ok = (
            files is not None and before == after and None not in before.values()
            and all(files.get(n, {}).get("sha256") == h for n, h in before.items()
                    if n == "CURRENT" or n.startswith("MANIFEST-"))
        )
        if copied_ok:
            if fsync:  # after the check, so the copy window (and the chance of a compaction) stays short
                sync_tree(target)  # one syncfs for many files, an fsync each for a few (fs_sync)
            return files, attempt, before
        if attempt < attempts:
            sleep(retry_delay)
    shutil.rmtree(target, ignore_errors=True)
    raise LevelDBBackupError(
        f"the manifest of {source} changed during each of {attempts} copy attempts (compactions running): "
        "no consistent copy; retry later, pause writes (strategy pause) or stop the service "
        "(strategy shutdown)"
    )


def manifest_next_file_number(path):
    """The next file number recorded in the LevelDB's current manifest, None when unreadable.

    LevelDB gives every new file a number at or above it, also when it reuses the number of an
    orphan left by a crash or a copy taken mid-compaction, and opens such files with O_TRUNC."""
    try:  # leveldb_keys parses the manifest (the one parser of it); next_file only grows
        return read_manifest(path)["next_file"]
    except ParseError:
        return None


def hardlink_tree(src, dst):
    """dst gets hard links of src's live-numbered table files and copies of everything else.

    Only tables numbered below the manifest's next file number are linked: LevelDB opening dst may
    create a file under any higher number with O_TRUNC, which through a hard link would rewrite
    src's file (or a live store's compaction output) in place. Without a readable manifest,
    everything is copied."""
    os.mkdir(dst, 0o700)
    next_number = manifest_next_file_number(src)
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        number = table_number(name)
        if is_table(name) and next_number is not None and number.isdigit() and int(number) < next_number:
            os.link(path, os.path.join(dst, name))
        else:
            shutil.copy2(path, os.path.join(dst, name))


# -- verification and repair ------------------------------------------------------------------
def verify_db(path, count_keys=False, progress=NO_PROGRESS):
    """Open the LevelDB at path and read every record with checksum verification.

    Returns {"ok", "records", "error", "keys"(set, when count_keys)}. Opening replays the log and may
    write files: call it on copies only. progress (a PhaseProgress) gets the bytes of the records read."""
    plyvel = _load_plyvel()
    result = {"ok": False, "records": 0, "error": None}
    keys = set() if count_keys else None
    try:
        db = plyvel.DB(path, create_if_missing=False, paranoid_checks=True)
    except Exception as exc:  # plyvel raises several Error subclasses and IOError
        result["error"] = f"open failed: {exc}"
        return result
    try:
        records = read = 0
        for key in db.iterator(include_value=True, verify_checksums=True, fill_cache=False):
            records += 1
            if keys is not None:
                keys.add(key[0])
            if progress.current is not None:
                read += len(key[0]) + len(key[1])
                if not records & 1023:
                    progress.update(read)
        progress.update(read)
        result.update(ok=True, records=records)
    except Exception as exc:
        result["error"] = f"iteration failed after {records} records: {exc}"
        result["records"] = records
    finally:
        db.close()
    if keys is not None:
        result["keys"] = keys
    return result


def check_structure(path, what="the copy"):
    """Refuse what LevelDB opens without a complaint although it is not the whole store: a manifest
    whose last record is cut off (LevelDB drops the tail as if a write had crashed, and with it the
    tables it lists) and live tables that are missing. Returns the manifest's state."""
    try:
        state = read_manifest(path)
    except ParseError as exc:
        raise LevelDBBackupError(
            f"the MANIFEST of {what} cannot be read ({exc}): the store is corrupt") from None
    if state["truncated"]:
        raise LevelDBBackupError(
            f"{state['manifest']} of {what} is truncated (its last record is cut off): LevelDB would open "
            "the store without the tables recorded last and count fewer records; refused")
    present = {int(table_number(n)) for n in os.listdir(path) if is_table(n) and table_number(n).isdigit()}
    missing = sorted(state["live_tables"] - present)
    if missing:
        raise LevelDBBackupError(
            f"{len(missing)} live table file(s) listed in {state['manifest']} of {what} are missing "
            f"(e.g. {missing[0]:06d}.ldb): the records they held are lost; refused")
    return state


def _reference_keys(path):
    """Every live key of the store at path, read past bad blocks (leveldb_keys); None if unreadable."""
    try:
        return reference_keys(path)
    except (ParseError, OSError):
        return None


def _repair_log_says_no_space(path):
    try:
        with open(os.path.join(path, "LOG"), encoding="utf-8", errors="replace") as handle:
            return "No space left" in handle.read()
    except OSError:
        return False


def repair_copy(path, scratch, reference_keys=None):
    """Repair the LevelDB copy at path with RepairDB, verify again, report what was lost.

    The loss is counted against every key the copy held, read from its files past bad blocks
    (leveldb_keys.reference_keys), so it is exact however many blocks are bad. Running out of space
    raises LevelDBBackupError (out of space), never reports the unwritten keys as lost."""
    plyvel = _load_plyvel()
    if reference_keys is None:
        reference_keys = _reference_keys(path)
    try:
        plyvel.repair_db(path, paranoid_checks=True)
    except Exception as exc:
        if "No space left" in str(exc) or _repair_log_says_no_space(path):
            raise LevelDBBackupError(f"out of space while repairing the copy in {path}: {exc}") from None
        return {"repaired": False, "error": f"repair_db failed: {exc}", "keys_lost": None,
                "lost_keys_sample": []}
    if _repair_log_says_no_space(path):
        raise LevelDBBackupError(f"out of space while repairing the copy in {path} (RepairDB could not write "
                                 "its tables); free space and run the backup again")
    after = verify_db(path, count_keys=True)
    if not after["ok"] and "No space left" in str(after["error"]):
        raise LevelDBBackupError(
            f"out of space while verifying the repaired copy in {path}: {after['error']}")
    report = {"repaired": after["ok"], "error": after["error"], "records": after["records"],
              "keys_lost": None, "lost_keys_sample": []}
    lost_dir = os.path.join(path, "lost")
    report["lost_files"] = sorted(os.listdir(lost_dir)) if os.path.isdir(lost_dir) else []
    # RepairDB rewrites each damaged table beside its original (moved to lost/); on a full disk the
    # rewrite fails, the table's keys are dropped and even its LOG may stay silent. Less free space
    # than the largest damaged table means it could not have been rewritten: out of space, not loss.
    largest = max((os.path.getsize(os.path.join(lost_dir, n)) for n in report["lost_files"]
                   if os.path.isfile(os.path.join(lost_dir, n))), default=0)
    if largest and free_bytes(path) < largest:
        raise LevelDBBackupError(
            f"out of space while repairing the copy in {path}: {free_bytes(path)} bytes free, less than "
            f"the {largest} bytes of a damaged table RepairDB had to rewrite; free space and run the backup "
            "again")
    if after["ok"] and reference_keys is not None:
        lost = reference_keys - after["keys"]
        report["keys_lost"] = len(lost)
        report["lost_keys_sample"] = [k.decode("utf-8", "backslashreplace") for k in sorted(lost)[:20]]
    return report


def count_records_snapshot(source, scratch):
    """Record count of a quiescent source, read from a hard-link snapshot (the source is not opened)."""
    plyvel = _load_plyvel()
    hardlink_tree(source, scratch)
    try:
        db = plyvel.DB(scratch, create_if_missing=False, paranoid_checks=True)
        try:
            return sum(1 for _ in db.iterator(include_value=False, verify_checksums=True, fill_cache=False))
        finally:
            db.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def verify_new_tables(data_dir, files, scratch):
    """Verify only tables that no previous verified backup vouches for: open the whole copy (a
    throwaway one: opening replays the log, checks the manifest and that every live table exists),
    then checksum every block of the new tables in an isolated hard-link directory: RepairDB with
    paranoid checks reads every entry of each table with verify_checksums, and a corrupt table
    ends in lost/. RepairDB numbers its output above every file present, so it never writes
    through a link."""
    plyvel = _load_plyvel()
    result = {"ok": False, "records": None, "new_table_records": 0, "error": None}
    try:
        db = plyvel.DB(data_dir, create_if_missing=False, paranoid_checks=True)
        db.close()
    except Exception as exc:
        result["error"] = f"open failed: {exc}"
        return result
    trusted = {table_number(n) for n, info in files.items() if is_table(n) and info.get("verified")}
    os.mkdir(scratch, 0o700)
    try:
        for name in os.listdir(data_dir):
            if is_table(name) and table_number(name) not in trusted:
                os.link(os.path.join(data_dir, name), os.path.join(scratch, name))
        if os.listdir(scratch):
            plyvel.repair_db(scratch, paranoid_checks=True)
            lost = os.path.join(scratch, "lost")
            if os.path.isdir(lost) and os.listdir(lost):
                result["error"] = f"corrupt table files: {', '.join(sorted(os.listdir(lost)))}"
                return result
            result["new_table_records"] = _repair_log_entries(scratch)
        result["ok"] = True
        return result
    except Exception as exc:
        result["error"] = f"verification of new tables failed: {exc}"
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _repair_log_entries(path):
    """Entries RepairDB counted in the tables it scanned (from its LOG), None when not found."""
    try:
        with open(os.path.join(path, "LOG"), encoding="utf-8", errors="replace") as handle:
            counts = re.findall(r"Table #\d+: (\d+) entries", handle.read())
    except OSError:
        return None
    return sum(int(c) for c in counts)


def rename_ldb_to_sst(path):
    renamed = 0
    for name in os.listdir(path):
        if name.endswith(".ldb"):
            os.rename(os.path.join(path, name), os.path.join(path, name[:-4] + ".sst"))
            renamed += 1
    return renamed


def describe_files(path, known):
    """size/sha256 of the files now in path, reusing known hashes of untouched tables."""
    described = {}
    by_number = {table_number(n): info for n, info in known.items() if is_table(n)}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        size = os.path.getsize(full)
        info = by_number.get(table_number(name)) if is_table(name) else None
        if info and info["size"] == size:
            described[name] = {"size": size, "sha256": info["sha256"], "src": info.get("src")}
        else:
            described[name] = {"size": size, "sha256": sha256_file(full)[0]}
    return described


# -- the whole backup -------------------------------------------------------------------------
def plan(source, dest, incremental=True):
    """What a backup would do, without doing it (check mode)."""
    check_leveldb_dir(source)
    check_destination(source, dest)
    backups = list_backups(dest)
    previous = _previous_tables(backups[-1]) if (incremental and backups) else {}
    to_copy, to_link = 0, 0
    for name in os.listdir(source):
        full = os.path.join(source, name)
        if name == "LOCK" or not os.path.isfile(full):
            continue
        size = os.path.getsize(full)
        if is_table(name) and table_number(name) in previous and previous[table_number(name)][1] == size:
            to_link += size
        else:
            to_copy += size
    return {"previous": backups[-1] if backups else None, "bytes_to_copy": to_copy,
            "bytes_to_link": to_link, "backups": backups}


def source_unchanged_since(source, backup_dir):
    """True when the source's CURRENT/MANIFEST and the set of files are those of backup_dir's copy."""
    meta = read_meta(backup_dir) or {}
    if meta.get("source_manifest") != manifest_fingerprint(source):
        return False
    current = {n: os.path.getsize(os.path.join(source, n)) for n in os.listdir(source)
               if n != "LOCK" and os.path.isfile(os.path.join(source, n))}
    return current == meta.get("source_sizes")


def default_name():
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1e6) % 1000000:06d}Z"


def backup(source, dest, name=None, attempts=10, incremental=True, keep_exact=False, verify="full",
           repair=True, fail_on_data_loss=True, rename_to_sst=True, retain=0, count_source=False,
           skip_if_unchanged=False, fsync=True, rehash=False, clock=time.monotonic, progress_file=None,
           progress_factory=ProgressFile, shrink_threshold=DEFAULT_SHRINK_THRESHOLD,
           min_good=DEFAULT_MIN_GOOD, accept_shrink=False):
    """Take one backup of the LevelDB directory source into dest/leveldb-<name>. Returns a report.

    With progress_file, progress goes there through progress_factory (a ProgressFile per phase):
    "LevelDB copy" (done: bytes copied, total: bytes to copy, linked tables excluded), then
    "LevelDB verification" (bytes of the records read, no total), then done or failed.

    SIGTERM (roles/backup_progress cancel) is a failure like any other: the .tmp- directory (partial
    copy, verification scratch) is removed, the previous backups stay as they were, then
    LevelDBBackupError "backup cancelled".

    Shrink guard (retention_policy): a verified backup whose record count fell below the last good
    backup's by more than shrink_threshold is kept but suspect - ``latest`` stays on the last good
    backup, retention does not count it - and SuspectBackupError (with the report) says which figure
    fell and how to accept it (accept_shrink for one run). Retention keeps at least min_good good
    backups whatever retain says. Every filesystem error comes back as LevelDBBackupError.
    """
    try:
        policy = {"threshold": check_threshold(shrink_threshold), "min_good": check_min_good(min_good),
                  "accept_shrink": bool(accept_shrink)}
    except RetentionPolicyError as exc:
        raise LevelDBBackupError(str(exc)) from None
    try:
        with terminable():  # SIGTERM (a cancelled job) raises Terminated: the partial copy is removed
            return _backup_reporting(source, dest, name, attempts, incremental, keep_exact, verify, repair,
                                     fail_on_data_loss, rename_to_sst, retain, count_source,
                                     skip_if_unchanged, fsync, rehash, clock, progress_file, progress_factory,
                                     policy)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise LevelDBBackupError(f"out of space: {exc}; the previous backups are untouched") from None
        raise LevelDBBackupError(f"backup failed: {exc}") from None


def _backup_reporting(source, dest, name, attempts, incremental, keep_exact, verify, repair,
                      fail_on_data_loss, rename_to_sst, retain, count_source, skip_if_unchanged, fsync,
                      rehash, clock, progress_file, progress_factory, policy):
    progress = PhaseProgress(progress_file, progress_factory)
    try:
        progress.start("LevelDB copy (preparing)")
    except ProgressError as exc:
        raise LevelDBBackupError(f"cannot write the progress file: {exc}") from exc
    try:
        try:
            report = _backup(source, dest, name, attempts, incremental, keep_exact, verify, repair,
                             fail_on_data_loss, rename_to_sst, retain, count_source, skip_if_unchanged, fsync,
                             rehash, clock, progress, policy)
        except Terminated as exc:
            raise LevelDBBackupError(
                f"backup cancelled ({exc}); the partial copy was removed and the previous backups are "
                "untouched") from exc
    except BaseException as exc:
        if progress.current is None:
            progress.phase("LevelDB copy")
        progress.finish(ok=False, message=str(exc) or type(exc).__name__)
        raise
    if progress.current is None:
        progress.phase("LevelDB copy", 0)
    progress.finish()
    return report


def _backup(source, dest, name, attempts, incremental, keep_exact, verify, repair, fail_on_data_loss,
            rename_to_sst, retain, count_source, skip_if_unchanged, fsync, rehash, clock, progress, policy):
    started = clock()
    name = name or default_name()
    if not NAME_RE.match(name):
        raise LevelDBBackupError(f"invalid backup name {name!r}")
    if verify not in ("full", "changed", "none"):
        raise LevelDBBackupError(f"verify must be full, changed or none, not {verify!r}")
    if attempts < 1:
        raise LevelDBBackupError("attempts must be at least 1")
    check_leveldb_dir(source)
    check_destination(source, dest)
    final = os.path.join(dest, BACKUP_PREFIX + name)
    if os.path.lexists(final):
        raise LevelDBBackupError(f"a backup named {name} already exists in {dest}")
    os.makedirs(dest, mode=0o700, exist_ok=True)
    stale = remove_stale_temps(dest)
    source_parent = os.path.dirname(os.path.abspath(source))
    for leftover in os.listdir(source_parent):  # count snapshots of a killed run (count_source)
        if leftover.startswith(".leveldb-count-"):
            shutil.rmtree(os.path.join(source_parent, leftover), ignore_errors=True)
            stale.append(leftover)
    backups = list_backups(dest)
    previous = backups[-1] if backups else None
    good = last_good_backup(dest)
    if skip_if_unchanged and previous and previous == good and source_unchanged_since(source, previous):
        return {"changed": False, "path": previous, "skipped": True, "reason": "source unchanged since "
                + os.path.basename(previous), "stale_removed": stale, "bytes_copied": 0, "files_copied": 0,
                "bytes_linked": 0, "files_linked": 0, "attempts": 0,
                "backups": [os.path.basename(b) for b in backups],
                "duration_seconds": round(clock() - started, 3)}
    estimate = plan(source, dest, incremental)
    if estimate["bytes_to_copy"] * (2 if keep_exact else 1) > free_bytes(dest):
        raise LevelDBBackupError(
            f"not enough free space in {dest}: need about {estimate['bytes_to_copy']} bytes, "
            f"{free_bytes(dest)} available; nothing was changed")

    tmp = os.path.join(dest, TMP_PREFIX + name)
    raw = os.path.join(tmp, "exact")
    data = os.path.join(tmp, "data")
    report = {"changed": True, "skipped": False, "path": final, "stale_removed": stale,
              "previous": previous, "verify": verify}
    try:
        os.mkdir(tmp, 0o700)
        t0 = clock()
        progress.phase("LevelDB copy", estimate["bytes_to_copy"])
        files, used, fingerprint = consistent_copy(
            source, raw, attempts=attempts, previous_dir=previous if incremental else None, fsync=False,
            rehash=rehash, progress=progress)
        # The copy goes to disk (fs_sync.sync_tree) while the verification reads it from the page cache;
        # both end before anything is published. Only the copy: the verification's scratch files come
        # and go beside it meanwhile.
        syncing = SyncInBackground(raw) if fsync else None
        report["copy_seconds"] = round(clock() - t0, 3)
        report["attempts"] = used
        report["files_copied"] = sum(1 for f in files.values() if not f["linked"])
        report["bytes_copied"] = sum(f["size"] for f in files.values() if not f["linked"])
        report["files_linked"] = sum(1 for f in files.values() if f["linked"])
        report["bytes_linked"] = sum(f["size"] for f in files.values() if f["linked"])
        report["size_bytes"] = report["bytes_copied"] + report["bytes_linked"]
        source_sizes = {n: f["size"] for n, f in files.items()}

        if verify != "none":
            check_structure(raw, f"the copy of {source}")
        if keep_exact:
            hardlink_tree(raw, data)
        else:
            os.rename(raw, data)

        t0 = clock()
        report.update(records=None, repaired=False, keys_lost=None, lost_keys_sample=[], source_records=None)
        verified = verify == "none"
        # Verification opens a throwaway hard-link copy: opening replays the log and may compact,
        # and data/ must stay the source's exact state (table numbers included) so that the next
        # incremental backup can link its tables.
        scratch = os.path.join(tmp, "verify")
        if verify != "none":
            progress.phase("LevelDB verification")
        if verify == "changed" and previous and incremental:
            hardlink_tree(data, scratch)
            try:
                check = verify_new_tables(scratch, files, os.path.join(tmp, "scratch"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            report["new_table_records"] = check["new_table_records"]
        elif verify != "none":
            check = verify_db_copy(data, scratch, progress)
            report["records"] = check["records"]
        else:
            check = {"ok": True, "error": None}
        if verify != "none":
            report["verify_error"] = check["error"]
            verified = check["ok"]
            if not verified:
                if not repair:
                    raise LevelDBBackupError(f"verification of the copy failed: {check['error']}")
                fixed = repair_copy(data, os.path.join(tmp, "scratch"))
                report.update(repaired=fixed["repaired"], keys_lost=fixed["keys_lost"],
                              lost_keys_sample=fixed["lost_keys_sample"], records=fixed.get("records"),
                              repair_error=fixed["error"], lost_files=fixed.get("lost_files", []))
                if not fixed["repaired"]:
                    raise LevelDBBackupError(
                        f"verification of the copy failed ({check['error']}) and repair failed "
                        f"({fixed['error']})")
                if fail_on_data_loss and fixed["keys_lost"] != 0:
                    lost = "an unknown number of" if fixed["keys_lost"] is None else fixed["keys_lost"]
                    raise LevelDBBackupError(
                        f"the copy was corrupt ({check['error']}); repair lost {lost} keys: backup rejected")
                verified = True
        report["verify_seconds"] = round(clock() - t0, 3)

        if count_source and verify == "full":
            report["source_records"] = count_records_snapshot(
                source, os.path.join(source_parent, f".leveldb-count-{name}"))
            if report["records"] != report["source_records"]:
                raise LevelDBBackupError(
                    f"record count mismatch: backup has {report['records']}, quiescent source has "
                    f"{report['source_records']}")

        figures = {"records": report["records"]}
        good_meta = read_meta(good) if good else {}
        # backups made before the shrink guard carry their record count only
        good_figures = (good_meta or {}).get("figures") or {"records": (good_meta or {}).get("records")}
        verdict = judge(good_figures, figures, policy["threshold"],
                        policy["accept_shrink"], what=f"LevelDB backup {name}",
                        previous_name=os.path.basename(good) if good else None)
        report.update(result=verdict["status"], figures=figures, shrink=verdict["drops"],
                      shrink_accepted=verdict["accepted"], shrink_message=verdict["message"],
                      last_good=good)

        report["renamed_to_sst"] = rename_ldb_to_sst(data) if rename_to_sst else 0
        data_files = describe_files(data, files)
        for info in data_files.values():
            info["verified"] = verified and verify != "none"
        meta = {"status": "ok", "name": name, "source": os.path.abspath(source),
                "source_manifest": fingerprint, "source_sizes": source_sizes, "attempts": used,
                "verify": verify, "records": report["records"], "repaired": report["repaired"],
                "keys_lost": report["keys_lost"], "exact": keep_exact, "data_files": data_files,
                "result": verdict["status"], "figures": figures, "shrink": verdict["drops"],
                "shrink_accepted": verdict["accepted"],
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "created_epoch": time.time()}
        meta_tmp = os.path.join(tmp, META_FILE)
        fd = os.open(meta_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=1, sort_keys=True)
        if syncing:
            syncing.wait()  # the copy is on disk
            sync_tree(tmp)  # and what came after it: the metadata, the renames to *.sst, exact/
        os.rename(tmp, final)
        if fsync:
            fsync_dir(dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise LevelDBBackupError(
                f"no space left on {dest} while writing the backup; the partial copy was removed and the "
                "previous backups are untouched") from exc
        raise LevelDBBackupError(f"backup failed: {exc}; the partial copy was removed") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if verdict["status"] == GOOD:
        _point_latest(dest, os.path.basename(final))
    report["latest"] = os.path.basename(last_good_backup(dest) or "") or None
    report["removed"] = apply_retention(dest, retain, keep=final, min_good=policy["min_good"])
    report["backups"] = [os.path.basename(b) for b in list_backups(dest)]
    report["duration_seconds"] = round(clock() - started, 3)
    if verdict["status"] == SUSPECT:
        raise SuspectBackupError(verdict["message"], report)
    return report


def _point_latest(dest, target_name):
    link = os.path.join(dest, "latest")
    tmp_link = os.path.join(dest, ".latest.tmp")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(target_name, tmp_link)
    os.replace(tmp_link, link)


def apply_retention(dest, retain, keep=None, min_good=DEFAULT_MIN_GOOD):
    """Keep the newest `retain` good backups (0 keeps all) by the shared rule (retention_policy):
    suspect backups are not counted as good, at least min_good good backups and the newest good one
    are always kept. Hard-linked tables shared with the kept backups survive: removing a directory
    entry never removes another backup's link."""
    if not retain:
        return []
    backups = [{"path": b, "status": backup_status(b)} for b in list_backups(dest)]
    _keep, delete = plan_retention(backups, keep_count=retain, min_good=min_good)
    doomed = [b["path"] for b in delete if b["path"] != keep]
    for path in doomed:
        # hide it first: a run killed while deleting leaves a .tmp-* (cleaned next run), not a
        # half-deleted directory that still looks like a backup
        hidden = os.path.join(dest, TMP_PREFIX + "delete-" + os.path.basename(path))
        os.rename(path, hidden)
        shutil.rmtree(hidden)
    return [os.path.basename(p) for p in doomed]


def verify_backup(backup_dir, repair=False, fail_on_data_loss=True):
    """Verify an existing backup (its data/ copy) again; repair only a backup, never a live store."""
    meta = read_meta(backup_dir)
    data = os.path.join(backup_dir, "data")
    if meta is None or not os.path.isdir(data):
        raise LevelDBBackupError(
            f"{backup_dir} is not a backup made by leveldb_backup (no {META_FILE} and data/): "
            "verification and repair run only on backup copies")
    check_leveldb_dir(data)
    work = os.path.join(backup_dir, ".work")
    shutil.rmtree(work, ignore_errors=True)
    os.mkdir(work, 0o700)
    try:
        # Verify a throwaway hard-link copy: data/ stays byte-for-byte what was verified at backup time.
        check = verify_db_copy(data, os.path.join(work, "verify"))
        report = {"ok": check["ok"], "records": check["records"], "error": check["error"], "repaired": False,
                  "keys_lost": None, "lost_keys_sample": [], "expected_records": meta.get("records")}
        if check["ok"] and meta.get("records") is not None and check["records"] != meta["records"]:
            report["ok"] = False
            report["error"] = f"record count {check['records']} differs from {meta['records']} at backup time"
        if report["ok"]:
            try:
                check_structure(data, f"backup {os.path.basename(os.path.realpath(backup_dir))}")
            except LevelDBBackupError as exc:
                report.update(ok=False, error=str(exc))
        # good / suspect (kept by the shrink guard, see retention_policy) / failed
        report["result"] = meta.get("result", GOOD) if report["ok"] else "failed"
        report["shrink"] = meta.get("shrink") or []
        if report["ok"] or not repair:
            return report
        fixed = repair_copy(data, os.path.join(work, "scratch"))
        report.update(repaired=fixed["repaired"], keys_lost=fixed["keys_lost"],
                      lost_keys_sample=fixed["lost_keys_sample"], repair_error=fixed["error"],
                      records_after_repair=fixed.get("records"), lost_files=fixed.get("lost_files", []))
        if fixed["repaired"] and fixed["keys_lost"] is None and meta.get("records") is not None:
            report["keys_lost"] = max(meta["records"] - fixed["records"], 0)
        report["ok"] = fixed["repaired"] and not (fail_on_data_loss and report["keys_lost"] != 0)
        report["result"] = meta.get("result", GOOD) if report["ok"] else "failed"
        rename_ldb_to_sst(data)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify_db_copy(path, scratch, progress=NO_PROGRESS):
    hardlink_tree(path, scratch)
    try:
        return verify_db(scratch, progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
