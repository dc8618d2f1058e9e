"""The collection artifact: what it holds, and that it works installed into an empty collections path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import textwrap

import build_collection
import pytest
import yaml
from conftest import GALAXY_YML, ROOT, ZIPAPP, collection_version, run, tool


def test_artifact_name_and_manifest_follow_galaxy_yml(artifact):
    version = collection_version()
    assert artifact.name == f"keepwarm-ollama-{version}.tar.gz"
    with tarfile.open(artifact) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("keepwarm", "ollama", version)


def test_artifact_contents(artifact):
    names, symlinks = build_collection.tar_members(artifact)
    assert build_collection.check_members(names, symlinks) == []
    for module in build_collection.MODULES:
        assert f"plugins/modules/{module}.py" in names
    # Both roles come from the top-level roles/ (one source): every file there ships, byte for byte.
    with tarfile.open(artifact) as tar:
        for role in build_collection.ROLES:
            sources = [
                p
                for p in (ROOT / "roles" / role).rglob("*")
                if p.is_file() and not {"molecule", "__pycache__"} & set(p.relative_to(ROOT).parts)
            ]
            assert sources, role
            for src in sources:
                member = str(src.relative_to(ROOT))
                assert member in names, f"{member} missing from the artifact"
                assert tar.extractfile(member).read() == src.read_bytes(), f"{member} differs from the source"
    assert not [n for n in names if n.startswith(("tests/", "roles/keepalive/molecule", "roles/heartbeat/molecule"))]


def test_check_members_rejects_what_must_not_ship():
    good = [f"plugins/modules/{m}.py" for m in build_collection.MODULES]
    problems = build_collection.check_members(
        [*good, "plugins/module_utils/_api.py", "tests/unit/test_x.py", "roles/keepalive/molecule/default/x.yml"],
        ["roles/link"],
        docs_expected=True,
    )
    text = "\n".join(problems)
    for expected in (
        "tests/unit/test_x.py must not ship",
        "roles/keepalive/molecule/default/x.yml must not ship",
        "roles/link is a symlink",
        "role heartbeat missing",
        f"roles/heartbeat/files/{ZIPAPP} missing",
        "docs/ missing",
        "role keepalive has no README.md",
        "README.md missing",
        "CHANGELOG.rst missing",
    ):
        assert expected in text


def test_artifact_carries_the_agent_zipapp(artifact):
    """The heartbeat role deploys the agent from the installed collection: the zipapp is inside, and runs."""
    member = f"roles/heartbeat/files/{ZIPAPP}"
    with tarfile.open(artifact) as tar:
        data = tar.extractfile(member).read()
    built = artifact.parent / ZIPAPP
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(built.read_bytes()).hexdigest()
    target = artifact.parent / "extracted.pyz"
    target.write_bytes(data)
    proc = run(["/usr/bin/python3", "-I", "-S", str(target), "--help"])
    for command in ("once", "watch", "status"):
        assert command in proc.stdout


def test_ee_requirements_name_the_built_artifact():
    """collections/ee-requirements.yml (the EE's, never read by AWX) names the artifact by the version in galaxy.yml
    (the one place it lives); AWX's collections/requirements.yml installs nothing (test_project_sync.py)."""
    reqs = yaml.safe_load((ROOT / "collections" / "ee-requirements.yml").read_text())
    names = [c["name"] for c in reqs["collections"]]
    assert names == [f"dist/keepwarm-ollama-{collection_version()}.tar.gz"]
    assert yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text()) == {"collections": []}
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["dependencies"]["galaxy"] == "collections/ee-requirements.yml"
    assert {"src": "dist/keepwarm-ollama-*.tar.gz", "dest": "dist"} in ee["additional_build_files"]


def test_installed_collection_is_the_only_one(installed, artifact):
    """Only keepwarm.ollama and what its galaxy.yml declares (community.docker and that one's own dependency) are in
    the path, and the artifact's MANIFEST.json carries the declared dependency."""
    collections, _cfg, env = installed
    tree = collections / "ansible_collections" / "keepwarm" / "ollama"
    assert (tree / "MANIFEST.json").is_file()
    assert not any(p.is_symlink() for p in tree.rglob("*"))
    proc = run([tool("ansible-galaxy"), "collection", "list", "--format", "json"], cwd=collections.parent, env=env)
    listed = json.loads(proc.stdout)
    keepwarm = {path: colls["keepwarm.ollama"] for path, colls in listed.items() if "keepwarm.ollama" in colls}
    assert keepwarm == {str(collections / "ansible_collections"): {"version": collection_version()}}
    assert set(listed[str(collections / "ansible_collections")]) == {
        "keepwarm.ollama",
        "community.docker",
        "community.library_inventory_filtering_v1",
    }
    declared = yaml.safe_load(GALAXY_YML.read_text())["dependencies"]
    assert json.loads((tree / "MANIFEST.json").read_text())["collection_info"]["dependencies"] == declared
    assert set(declared) == {"community.docker"}
    # Besides ansible-core's own internal collection, nothing else is visible: no checkout symlinks.
    others = {path for path in listed if path != str(collections / "ansible_collections")}
    assert all("/ansible/_internal/" in path for path in others), others


def test_ansible_doc_from_the_installed_collection(installed):
    collections, _cfg, env = installed
    proc = run([tool("ansible-doc"), "--json", "keepwarm.ollama.ollama_ps"], cwd=collections.parent, env=env)
    doc = json.loads(proc.stdout)["keepwarm.ollama.ollama_ps"]["doc"]
    assert doc["filename"].startswith(str(collections))
    for option in ("models", "require_gpu", "allow_unlisted", "fail_on_problems", "url"):
        assert option in doc["options"]
    proc = run(
        [tool("ansible-doc"), "-t", "role", "--json", "keepwarm.ollama.keepalive"], cwd=collections.parent, env=env
    )
    role = json.loads(proc.stdout)["keepwarm.ollama.keepalive"]
    assert role["path"].startswith(str(collections))
    assert "keepalive_models" in role["entry_points"]["main"]["options"]


def test_role_argument_specs_work_from_the_installed_collection(installed, tmp_path):
    """The installed role validates its arguments (meta/argument_specs.yml): --tags _none_ runs only that check."""
    collections, _cfg, env = installed
    playbook = tmp_path / "argspec.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Apply keepalive with a wrong type
              hosts: localhost
              gather_facts: false
              roles:
                - role: keepwarm.ollama.keepalive
                  vars:
                    keepalive_max_loaded_models: not-a-number
            """
        )
    )
    proc = run_playbook(playbook, env, tags="_none_")
    assert proc.returncode != 0
    assert "keepalive_max_loaded_models" in proc.stdout + proc.stderr
    playbook.write_text(playbook.read_text().replace("not-a-number", "2"))
    proc = run_playbook(playbook, env, tags="_none_")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_playbook(playbook, env, tags=None, inventory="localhost,"):
    cmd = [tool("ansible-playbook"), "-i", inventory, str(playbook)]
    if tags:
        cmd += ["--tags", tags]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=playbook.parent, check=False)


@pytest.mark.lab
def test_playbook_uses_keepalive_by_fqcn_from_the_installed_collection(installed, lab_hosts, tmp_path):
    """A playbook outside the checkout applies keepwarm.ollama.keepalive, found only in the installed artifact."""
    _collections, _cfg, env = installed
    host = lab_hosts.hosts[0]
    playbook = tmp_path / "keepwarm.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Keep models warm with the installed collection
              hosts: ollama_gpu
              gather_facts: false
              roles:
                - role: keepwarm.ollama.keepalive
              post_tasks:
                - name: Ask /api/ps through the installed module
                  keepwarm.ollama.ollama_ps:
                    models: "{{ keepwarm_models }}"
                  register: ps
                - name: Every model is pinned forever
                  ansible.builtin.assert:
                    that: ps.ok and (ps.models | map(attribute='state') | unique | list) == ['forever']
            """
        )
    )
    proc = run_playbook(playbook, env, inventory=str(lab_hosts.inventory))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "keepwarm.ollama.keepalive : " in out
    assert f"ok: [{host}]" in out or f"changed: [{host}]" in out
    dropin = lab_hosts.ssh(host, "cat /etc/systemd/system/ollama.service.d/zz-keepwarm.conf").stdout
    assert "OLLAMA_KEEP_ALIVE=-1" in dropin


def test_artifact_carries_the_release_notes(artifact):
    """CHANGELOG.rst, generated by antsibull-changelog from changelogs/changelog.yaml at build time, has this
    version's section with the new modules and roles (version_added in their docs)."""
    with tarfile.open(artifact) as tar:
        notes = tar.extractfile("CHANGELOG.rst").read().decode()
        recorded = yaml.safe_load(tar.extractfile("changelogs/changelog.yaml"))
    version = collection_version()
    assert version in recorded["releases"]
    section = notes.split(f"\nv{version}\n", 1)[1]
    for heading in ("Release Summary", "New Modules", "New Roles"):
        assert f"\n{heading}\n" in section, heading
    # A module or role added before the release ships: re-make the (unpublished) release with
    # `python tools/changelog_release.py`.
    for module in build_collection.MODULES:
        assert f"keepwarm.ollama.{module} - " in section, f"{module} is not in the {version} release notes"
    for role in build_collection.ROLES:
        assert f"keepwarm.ollama.{role} - " in section, f"role {role} is not in the {version} release notes"
