"""The execution environment definition builds a valid build context (ansible-builder create),
with the collections and Python packages the playbooks need; a broken definition is refused."""
import os
import re
import shutil
import subprocess
import sys

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(os.path.dirname(sys.executable), "ansible-builder")


def create(definition, context):
    return subprocess.run([BUILDER, "create", "-f", definition, "-c", str(context), "--output-filename",
                           "Containerfile"], cwd=os.path.dirname(definition), capture_output=True, text=True,
                          check=False, timeout=300)


def test_ansible_builder_create_renders_the_context(tmp_path):
    proc = create(os.path.join(TOP, "execution-environment.yml"), tmp_path / "context")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "quay.io/ansible/awx-ee:24.6.1" in containerfile
    assert "ansible-core==2.19.14" in containerfile
    build = tmp_path / "context" / "_build"
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    names = {c["name"] for c in galaxy["collections"]}
    assert {"community.mysql", "community.general", "ansible.posix", "awx.awx"} <= names
    python = (build / "requirements.txt").read_text()
    for package in ("PyMySQL", "boto3"):
        assert package in python
    assert "zstd" in (build / "bindep.txt").read_text()


def test_ee_collections_cover_what_the_playbooks_use():
    """Every collection whose modules a playbook or role task calls (FQCN) is in requirements.yml."""
    with open(os.path.join(TOP, "requirements.yml")) as handle:
        pinned = {c["name"] for c in yaml.safe_load(handle)["collections"]} | {"ansible.builtin"}
    task_key = re.compile(r"^\s*(?:- )?([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+:")
    used = set()
    for base in ("playbooks", "roles"):
        for dirpath, _, files in os.walk(os.path.join(TOP, base)):
            for name in files:
                if name.endswith((".yml", ".yaml")):
                    with open(os.path.join(dirpath, name)) as handle:
                        used.update(".".join(m.groups()) for m in map(task_key.match, handle) if m)
    assert "ansible.builtin" in used and "awx.awx" in used
    assert used <= pinned, f"collections used but not in requirements.yml: {sorted(used - pinned)}"


def test_broken_definition_is_refused(tmp_path):
    broken = tmp_path / "ee.yml"
    broken.write_text("version: 3\nimages:\n  base_image: {}\ndependencies:\n  pythn: []\n")
    proc = create(str(broken), tmp_path / "context")
    assert proc.returncode != 0
    assert not (tmp_path / "context" / "Containerfile").exists()


def test_builder_is_installed():
    assert os.path.exists(BUILDER) or shutil.which("ansible-builder")
