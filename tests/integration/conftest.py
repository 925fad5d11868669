"""Set-up shared by the integration test modules."""
import os
import time

import pytest

from tests.lib import canary
from tests.lib.lvm_vm import booted


@pytest.fixture(scope="session")
def lab_vm():
    """The LVM lab VM with molecule/lvm's lab set-up, booted once for every test module that needs it
    (a boot and the set-up are a few minutes under TCG): the path of its inventory. Each module leaves
    the lab as it found it, apart from the backups it published under /srv/backup/lvm."""
    with booted(lab_setup=True) as inventory:
        yield inventory


# -- the secret canary (tests/lib/canary.py) -------------------------------------------------------
# Every ansible-playbook / ansible-runner child appends its display output to ANSIBLE_LOG_PATH. The
# module's log covers the playbooks its module-scoped fixtures run (set first: an autouse fixture
# comes before the other fixtures of its scope) and the directories they made under the base temp
# directory; each test's log covers the test's own runs and its tmp_path.
_CHECKED = set()


def _fail_on_leaks(roots, logs):
    started = time.monotonic()
    leaks = canary.find_leaks(roots, logs)
    if os.environ.get("BT_CANARY_TIMES"):  # where the check's own time is appended (its overhead)
        with open(os.environ["BT_CANARY_TIMES"], "a") as handle:
            handle.write(f"{time.monotonic() - started:.4f} {len(leaks)} {' '.join(map(str, roots))}\n")
    if leaks:
        pytest.fail("a secret leaked (tests/lib/canary.py):\n" + "\n".join(leaks[:20]), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def module_secret_canary(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    before = set(os.listdir(base))
    log = tmp_path_factory.mktemp("canary-module") / "ansible-output.log"
    mp = pytest.MonkeyPatch()
    mp.setenv("ANSIBLE_LOG_PATH", str(log))
    yield log
    mp.undo()
    made = [base / name for name in sorted(set(os.listdir(base)) - before)]
    # pytest's "<test>current" links point at a test's own directory, checked by the test
    _fail_on_leaks([path for path in made if str(path) not in _CHECKED and not path.is_symlink()], [log])


@pytest.fixture(autouse=True)
def secret_canary(tmp_path, monkeypatch, module_secret_canary):
    """Fails the test when a canary is in its playbooks' output or in a file it left under tmp_path
    that others can read (or in a record, report, progress or metrics file whatever its mode)."""
    log = tmp_path / "ansible-output.log"
    monkeypatch.setenv("ANSIBLE_LOG_PATH", str(log))
    _CHECKED.add(str(tmp_path))
    yield log
    _fail_on_leaks([tmp_path], [log])
