"""Set-up shared by the integration test modules."""
import pytest

from tests.lib.lvm_vm import booted


@pytest.fixture(scope="session")
def lab_vm():
    """The LVM lab VM with molecule/lvm's lab set-up, booted once for every test module that needs it
    (a boot and the set-up are a few minutes under TCG): the path of its inventory. Each module leaves
    the lab as it found it, apart from the backups it published under /srv/backup/lvm."""
    with booted(lab_setup=True) as inventory:
        yield inventory
