"""playbooks/fcrepo_restore.yml, guarded and rehearsable, run for real on this host (connection local):
a real LevelDB (plyvel) and binary store owned by an unprivileged user (`nobody`, as fcrepo runs as
its own user), real backups of them, and restores checked by a process running as that user.

The in-place restore's service stop/start needs a service manager (molecule scenario `fcrepo`); here
the service is a name that does not exist, so a run that got as far as stopping Fedora would fail."""
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import plyvel
import pytest
import yaml
from ansible.module_utils import fcrepo_binaries as fb
from ansible.module_utils import fcrepo_restore as fr
from ansible.module_utils import leveldb_backup as lb

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESTORE = os.path.join(TOP, "playbooks", "fcrepo_restore.yml")
OWNER = pwd.getpwnam("nobody")
RECORDS = 400

# Reads every file under a directory as the process's user; prints what it could not read, and the
# files whose SHA-1 does not match their name. Runs under /usr/bin/python3, which nobody can execute.
READ_ALL = """
import hashlib, json, os, sys
bad, read = [], 0
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        try:
            data = open(os.path.join(d, f), 'rb').read()
        except OSError as e:
            bad.append(f + ': ' + e.strerror); continue
        read += 1
        if hashlib.sha1(data).hexdigest() != f:
            bad.append(f + ': content does not match')
print(json.dumps({'read': read, 'bad': bad}))
"""


def tree_state(root):
    """path -> (size, mtime_ns, uid, mode) of everything under root."""
    state = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            state[os.path.relpath(os.path.join(dirpath, name), root)] = (
                st.st_size, st.st_mtime_ns, st.st_uid, st.st_mode)
    return state


@pytest.fixture(scope="module")
def site():
    """A live fcrepo home owned by nobody (0750 directories, 0640 files), backups of it made with the
    backup cores (0700/0600, root), and inventories with one and with two local hosts."""
    base = tempfile.mkdtemp(prefix="fcrepo-restore-test-")  # under /tmp: nobody can reach what is below
    os.chmod(base, 0o711)
    home = os.path.join(base, "home")
    leveldb = os.path.join(home, "fcrepo.ispn.repo.cache", "dataFedoraRepository")
    binaries = os.path.join(home, "fcrepo.binary.directory")
    os.makedirs(os.path.dirname(leveldb))
    db = plyvel.DB(leveldb, create_if_missing=True, write_buffer_size=16 * 1024)
    for i in range(RECORDS):
        db.put(b"k%06d" % i, os.urandom(100))
    db.close()
    names = []
    for i in range(5):
        content = os.urandom(5000) + bytes([i])
        sha = hashlib.sha1(content).hexdigest()  # noqa: S324
        path = os.path.join(binaries, fb.shard_path(sha))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
        names.append(fb.shard_path(sha))
    for dirpath, _dirs, files in os.walk(home):
        os.chown(dirpath, OWNER.pw_uid, OWNER.pw_gid)
        os.chmod(dirpath, 0o750)
        for name in files:
            os.chown(os.path.join(dirpath, name), OWNER.pw_uid, OWNER.pw_gid)
            os.chmod(os.path.join(dirpath, name), 0o640)
    dest = os.path.join(base, "backups")
    os.mkdir(dest, 0o700)
    lb.backup(leveldb, os.path.join(dest, "leveldb"))
    fb.backup(binaries, os.path.join(dest, "binaries"))
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "fcrepo_backup_home": home, "fcrepo_backup_dest": dest,
            "fcrepo_backup_service": "no-such-fcrepo-service"}
    inventories = {}
    for name, hosts in (("one", ["localhost"]), ("two", ["localhost", "fcrepo2"])):
        path = os.path.join(base, f"inventory-{name}.yml")
        with open(path, "w", encoding="utf-8") as handle:
            group = {"fcrepo_hosts": {"hosts": {h: host for h in hosts}}}
            yaml.safe_dump({"all": {"children": group}}, handle)
        inventories[name] = path
    yield {"base": base, "home": home, "leveldb": leveldb, "binaries": binaries, "names": names,
           "inventories": inventories}
    shutil.rmtree(base, ignore_errors=True)


def run_restore(site, *args, inventory="one", **extra):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(["ansible-playbook", "-i", site["inventories"][inventory], RESTORE,
                           "-e", json.dumps(extra), *args], capture_output=True, text=True, env=env, cwd=TOP)
    return proc.returncode, proc.stdout + proc.stderr


def read_as_owner(root):
    proc = subprocess.run(["/usr/bin/python3", "-c", READ_ALL, root], capture_output=True, text=True,
                          user=OWNER.pw_uid, group=OWNER.pw_gid, extra_groups=[], check=True)
    return json.loads(proc.stdout)


def test_scratch_restore_needs_no_confirmation_and_the_store_owner_reads_every_binary(site):
    live = tree_state(site["home"])
    target = os.path.join(site["base"], "rehearsal")
    rc, out = run_restore(site, fcrepo_restore_target=target)
    assert rc == 0, out
    assert tree_state(site["home"]) == live  # the live store was not touched (nor Fedora: no such service)
    restored = os.path.join(target, "fcrepo.binary.directory")
    seen = read_as_owner(restored)
    assert seen == {"read": 5, "bad": []}
    for rel in site["names"]:
        st = os.stat(os.path.join(restored, rel))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (OWNER.pw_uid, OWNER.pw_gid, 0o640)
        shard = os.stat(os.path.dirname(os.path.join(restored, rel)))
        assert (shard.st_uid, shard.st_mode & 0o7777) == (OWNER.pw_uid, 0o750)
    leveldb = os.path.join(target, "fcrepo.ispn.repo.cache", "dataFedoraRepository")
    for name in os.listdir(leveldb):
        st = os.stat(os.path.join(leveldb, name))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (OWNER.pw_uid, OWNER.pw_gid, 0o640), name
    assert os.stat(leveldb).st_mode & 0o7777 == 0o750
    check = lb.verify_db_copy(leveldb, os.path.join(site["base"], "verify-copy"))
    assert check["ok"] and check["records"] == RECORDS
    # a second scratch restore into the same directory is refused before anything changes
    rc, out = run_restore(site, fcrepo_restore_target=target)
    assert rc != 0 and "does not exist yet" in out
    assert read_as_owner(restored) == seen
    rc, out = run_restore(site, fcrepo_restore_target=os.path.join(site["home"], "inside"))
    assert rc != 0 and "outside the live fcrepo" in out
    assert tree_state(site["home"]) == live


@pytest.mark.parametrize("confirm", [None, "fcrepo2"], ids=["no confirmation", "another host named"])
def test_in_place_restore_is_refused_without_a_confirmation_naming_the_host(site, confirm):
    live = tree_state(site["home"])
    extra = {} if confirm is None else {"fcrepo_restore_confirm": confirm}
    rc, out = run_restore(site, **extra)
    assert rc != 0
    assert "restore refused, nothing was changed" in out and "-e fcrepo_restore_confirm=localhost" in out, out
    if confirm:
        assert "The confirmation names fcrepo2, not this host" in out
    assert tree_state(site["home"]) == live
    assert not [n for n in os.listdir(os.path.dirname(site["leveldb"])) if "before-restore" in n]


def test_a_run_on_two_hosts_is_refused_even_confirmed(site):
    live = tree_state(site["home"])
    rc, out = run_restore(site, inventory="two", fcrepo_restore_confirm="localhost")
    assert rc != 0
    assert "a restore runs on one host at a time and this run targets 2 (" in out, out
    assert "fcrepo2, localhost)" in out or "localhost, fcrepo2)" in out
    assert tree_state(site["home"]) == live


def test_owner_check_names_a_binary_the_owner_cannot_read(site):
    """In place, a binary already in the store but unreadable by its owner (root 0600, as the old
    restore left them) fails the restore's check instead of passing as restored."""
    store = os.path.join(site["base"], "store-with-an-unreadable-binary")
    own = fr.ownership(OWNER.pw_uid, OWNER.pw_gid, 0o755)
    backup = os.path.join(site["base"], "backups", "binaries")
    first, rest = site["names"][0], site["names"][1:]
    os.makedirs(os.path.dirname(os.path.join(store, first)))
    shutil.copy(os.path.join(backup, first), os.path.join(store, first))  # root, 0600
    for path in (store, os.path.join(store, first[:2]), os.path.join(store, first[:5]),
                 os.path.dirname(os.path.join(store, first))):
        os.chmod(path, 0o755)
    report = fr.restore_binaries(backup, store, own)
    assert report["copied"] == 4 and report["already_present"] == 1
    assert report["owner_check"]["checked"] == 5
    assert report["owner_check"]["unreadable"] == [f"{first}: Permission denied"]
    assert read_as_owner(store)["read"] == 4 and all(
        os.stat(os.path.join(store, rel)).st_mode & 0o777 == 0o644 for rel in rest)
