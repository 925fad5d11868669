"""Lab containers the integration tests start themselves, from the images of
scripts/lab/build-image.sh: localhost/backup-lab (PID 1 an init that reaps zombies, from
containers.conf) and localhost/backup-lab-systemd (systemd as PID 1, for real timers)."""
import contextlib
import os
import re
import shutil
import subprocess
import time
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "localhost/backup-lab:latest"
SYSTEMD_IMAGE = "localhost/backup-lab-systemd:latest"


def podman(*args, check=True, timeout=300):
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True, timeout=timeout)


def podman_ready(image=IMAGE):
    """Root, podman and the image: what the container tests need (make test builds the image)."""
    if os.geteuid() != 0 or not shutil.which("podman"):
        return False
    return podman("image", "exists", image, check=False).returncode == 0


def sh(container, command, check=True, timeout=300):
    """Run a shell command in the container as root: its stdout, stripped; fails the test when it
    fails (check) or returns the CompletedProcess (check=False)."""
    result = podman("exec", container, "sh", "-c", command, check=False, timeout=timeout)
    if not check:
        return result
    if result.returncode != 0:
        raise AssertionError(f"{command!r} failed in {container}: {result.stdout}{result.stderr}")
    return result.stdout.strip()


def sql(container, statement, check=True):
    """One statement as root over the socket of the container's MariaDB: stdout, tab separated."""
    return podman("exec", container, "mariadb", "-N", "-B", "-e", statement, check=check).stdout.strip()


def converge(inventory, playbook, settings, host, timeout=600):
    """One ansible-playbook run of playbook with the extra vars file settings: the host's changed
    count from the recap, and the output; fails the test when the run fails."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(["ansible-playbook", "-i", inventory, playbook, "-e", f"@{settings}"],
                            cwd=TOP, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    recap = re.search(re.escape(host) + r"\s*:\s*ok=(\d+)\s+changed=(\d+)", output)
    assert recap, output
    return int(recap.group(2)), output


@contextlib.contextmanager
def systemd_container(prefix, boot_timeout=60):
    """A container booting systemd as PID 1 (podman --systemd=always), up until systemd reports
    the system running (or degraded: a unit that cannot work in a container); removed at the end."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    try:
        # no podman init: systemd itself is PID 1 and reaps
        podman("run", "-d", "--name", name, "--hostname", prefix, "--init=false", "--systemd=always",
               SYSTEMD_IMAGE, "/sbin/init")
        deadline = time.monotonic() + boot_timeout
        while True:
            state = sh(name, "systemctl is-system-running || true", timeout=30)
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                failed = sh(name, "systemctl --failed --no-pager || true", timeout=30)
                raise AssertionError(f"systemd in {name} did not finish booting in {boot_timeout} s: "
                                     f"{state}\n{failed}")
            time.sleep(0.5)
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
