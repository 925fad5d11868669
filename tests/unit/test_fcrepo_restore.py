"""The restore's ownership rule (plugins/module_utils/fcrepo_restore.py), pure parts."""
import pytest
from ansible.module_utils import fcrepo_restore as fr


@pytest.mark.parametrize("dir_mode, file_mode", [(0o750, 0o640), (0o700, 0o600), (0o755, 0o644),
                                                  (0o2770, 0o660)])
def test_files_get_the_directory_mode_without_execute_bits(dir_mode, file_mode):
    own = fr.ownership(1000, 1001, 0o40000 | dir_mode)  # a st_mode, file type bits dropped
    assert own == {"uid": 1000, "gid": 1001, "dir_mode": dir_mode, "file_mode": file_mode}


def test_names_numbers_and_octal_strings_are_accepted():
    assert fr.ownership_from("root", "root", "0750") == fr.ownership(0, 0, 0o750)
    assert fr.ownership_from("65534", "65534", "700")["uid"] == 65534


@pytest.mark.parametrize("owner, group, mode, message", [
    ("no-such-user-x", "root", "0750", "unknown owner or group"),
    ("root", "root", "rwx", "is not an octal mode"),
    ("root", "root", "0640", "would not let the owner read and enter"),
])
def test_bad_ownership_is_refused_before_anything(owner, group, mode, message):
    with pytest.raises(fr.FcrepoRestoreError, match=message):
        fr.ownership_from(owner, group, mode)
