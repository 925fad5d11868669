"""The LVM lab VM (scripts/lab/lvm-vm.sh) for the tests that need real LVM (device-mapper).

`booted()` skips the test module when the VM cannot or must not run (LVM_VM_TESTS=0, no qemu, the VM
already in use by molecule or a benchmark), boots it, optionally runs molecule/lvm's lab set-up in
it, yields the path of its inventory, and stops it whatever happens. With LVM_VM_SHARED=1 (make
test's vm track, which boots one VM for the VM tests and molecule lvm) it uses the running VM and
leaves it running.
"""
import contextlib
import os
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VM = os.path.join(TOP, "scripts", "lab", "lvm-vm.sh")


def vm(*args, check=True, **kw):
    return subprocess.run(["bash", VM, *args], check=check, capture_output=True, text=True, **kw)


def ssh_result(command, timeout=600):
    """Run a shell command in the VM as root: the CompletedProcess, whatever its exit status."""
    return vm("ssh", command, check=False, timeout=timeout)


def ssh(command, check=True):
    """Run a shell command in the VM as root: its stdout, stripped; fails the test when it fails."""
    result = ssh_result(command)
    if check and result.returncode != 0:
        raise AssertionError(f"{command!r} failed in the VM: {result.stdout}{result.stderr}")
    return result.stdout.strip()


def fill_file(path, mib, fsync=False):
    """A file of `mib` MiB of incompressible data in the VM, written cheaply: /dev/urandom under TCG
    costs seconds per MiB, so 1 MiB of it (kept in /tmp, off the LVs) is repeated (rsync and the
    checksums read every byte all the same; nothing in the copy deduplicates, and every block written
    to an origin LV takes copy-on-write space in its snapshot). With `fsync`, the blocks are on the
    device when it returns."""
    sink = f"dd of={path} bs=1M iflag=fullblock conv=fsync status=none" if fsync else f"cat > {path}"
    ssh(f"chunk=$(mktemp) && head -c 1M /dev/urandom > $chunk && for i in $(seq {mib}); do cat $chunk; done"
        f" | {sink}; rc=$?; rm -f $chunk; exit $rc")


@contextlib.contextmanager
def booted(lab_setup=False):
    if os.environ.get("LVM_VM_TESTS", "1") == "0":
        pytest.skip("LVM_VM_TESTS=0")
    if subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0:
        pytest.skip("qemu-system-x86_64 not installed")
    if os.environ.get("LVM_VM_SHARED") != "1" and vm("status", check=False).returncode == 0:
        pytest.skip("the LVM lab VM is already in use (molecule scenario lvm or a benchmark)")
    started = vm("start", check=False, timeout=1200)
    if started.returncode != 0:  # the script has stopped it; CalledProcessError would hide its stderr
        raise AssertionError(f"the LVM lab VM did not start (exit {started.returncode}):\n{started.stderr}")
    inventory = started.stdout.strip().splitlines()[-1]
    try:
        if lab_setup:  # once per VM: "lab already set up" when the track has done it
            setup = vm("setup", check=False, timeout=900)
            if setup.returncode != 0:
                raise AssertionError(f"the lab set-up in the VM failed (exit {setup.returncode}):\n"
                                     f"{setup.stdout[-2000:]}{setup.stderr[-2000:]}")
        yield inventory
    finally:
        vm("stop", check=False, timeout=120)
