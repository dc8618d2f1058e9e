"""AWX project sync and the collections path a job sees, without an AWX server.

AWX 24's project update (awx/playbooks/project_update.yml, "Fetch galaxy collections from
collections/requirements.(yml/yaml)") runs `ansible-galaxy collection install -r <project>/collections/requirements.yml`
with the project checkout as working directory and ANSIBLE_COLLECTIONS_PATHS set to its requirements_collections
cache. A job then gets ANSIBLE_COLLECTIONS_PATH = requirements_collections, the project ansible.cfg's
collections_path, ~/.ansible/collections, /usr/share/ansible/collections (the EE's), in that order
(awx/main/tasks/jobs.py build_env). These tests run that command on a fresh copy of the tracked files and check
that the job's path resolves keepwarm.ollama from the EE's installed artifact, not from the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    VENV_BIN,
    ZIPAPP,
    awx_collections_path,
    collection_version,
    fresh_clone,
    install_artifact,
    run,
    tool,
)


def project_update_env(stage: Path, home: Path) -> dict[str, str]:
    """AWX's additional_galaxy_env; no ANSIBLE_CONFIG (ansible-galaxy reads the project's ./ansible.cfg).
    ANSIBLE_COLLECTIONS_PATHS is what AWX sets (honoured by ansible-core up to 2.18); the singular name is the same
    setting for ansible-core 2.19, which dropped the plural."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        ANSIBLE_COLLECTIONS_PATHS=str(stage / "requirements_collections"),
        ANSIBLE_COLLECTIONS_PATH=str(stage / "requirements_collections"),
        ANSIBLE_ROLES_PATH=str(stage / "requirements_roles"),
        ANSIBLE_LOCAL_TEMP=str(stage / "tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    project = fresh_clone(tmp_path_factory.mktemp("awx-project") / "project")
    assert (project / "playbooks" / "site.yml").is_file()
    assert not (project / "dist").exists()
    return project


def galaxy_install(project: Path, requirements: str, stage: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("ansible-galaxy"), "collection", "install", "-r", str(project / requirements)],
        cwd=project,
        env=project_update_env(stage, home),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_fresh_clone_passes_awx_project_update(clone, tmp_path):
    stage = tmp_path / "stage"
    proc = galaxy_install(clone, "collections/requirements.yml", stage, tmp_path / "home")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Nothing lands in requirements_collections, which a job puts ahead of the EE's collections.
    installed = stage / "requirements_collections" / "ansible_collections"
    assert not installed.exists() or not any(installed.iterdir()), list(installed.rglob("MANIFEST.json"))


def test_ee_requirements_need_the_artifact(clone, tmp_path):
    """Why the EE's file is not the one AWX reads: in a fresh clone its artifact (dist/, git-ignored) is missing."""
    proc = galaxy_install(clone, "collections/ee-requirements.yml", tmp_path / "stage", tmp_path / "home")
    assert proc.returncode != 0
    assert "dist/keepwarm-ollama-" in proc.stdout + proc.stderr


def test_project_config_names_no_collections_or_roles_path():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "ansible.cfg")
    assert not {"collections_path", "collections_paths", "roles_path"} & set(parser["defaults"])


@pytest.fixture(scope="module")
def ee_collections(artifact, tmp_path_factory) -> Path:
    """The EE's /usr/share/ansible/collections: the artifact installed as the EE build does."""
    dest = tmp_path_factory.mktemp("ee") / "usr-share-ansible-collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    install_artifact(artifact, dest, cwd=dest.parent, env=env)
    return dest


def test_job_path_resolves_the_ee_collection(clone, ee_collections, tmp_path):
    """With the job's path as AWX builds it, the heartbeat role and the modules come from the EE's artifact."""
    runner = tmp_path / "runner"
    (runner / "requirements_collections").mkdir(parents=True)
    path = awx_collections_path(clone, runner, tmp_path / "home", ee_collections)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path / "home"))
    env["ANSIBLE_COLLECTIONS_PATH"] = path
    proc = run([tool("ansible-doc"), "-t", "role", "--json", "keepwarm.ollama.heartbeat"], cwd=clone, env=env)
    role_path = Path(json.loads(proc.stdout)["keepwarm.ollama.heartbeat"]["path"])
    assert role_path.is_relative_to(ee_collections), role_path
    assert (ee_collections / "ansible_collections/keepwarm/ollama/roles/heartbeat/files" / ZIPAPP).is_file()
    proc = run([tool("ansible-doc"), "--json", "keepwarm.ollama.ollama_pin"], cwd=clone, env=env)
    assert json.loads(proc.stdout)["keepwarm.ollama.ollama_pin"]["doc"]["filename"].startswith(str(ee_collections))


def test_awx_path_would_put_a_configured_collections_path_first(tmp_path):
    """awx_collections_path() is the rule the test above relies on: a collections_path in the project's ansible.cfg
    (as this repository had) goes ahead of the EE's collections."""
    (tmp_path / "ansible.cfg").write_text("[defaults]\ncollections_path = ./collections\n")
    path = awx_collections_path(tmp_path, Path("/runner"), Path("/home/runner"), Path("/usr/share/ansible/collections"))
    assert path.split(os.pathsep) == [
        "/runner/requirements_collections",
        "./collections",
        "/home/runner/.ansible/collections",
        "/usr/share/ansible/collections",
    ]


def test_install_the_artifact_from_the_checkout(artifact, tmp_path):
    """`ansible-galaxy collection install dist/...` run in the checkout (its ansible.cfg in effect) installs into
    ~/.ansible/collections, and again with --force (no "Nothing to do", no rmtree on a symlink)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path), ANSIBLE_NOCOLOR="1")
    target = tmp_path / ".ansible" / "collections" / "ansible_collections" / "keepwarm" / "ollama"
    for extra in ([], ["--force"]):
        proc = install_artifact(artifact, None, *extra, cwd=ROOT, env=env)
        assert "Nothing to do" not in proc.stdout, proc.stdout
        assert f"keepwarm.ollama:{collection_version()} was installed successfully" in proc.stdout
        manifest = json.loads((target / "MANIFEST.json").read_text())
        assert manifest["collection_info"]["version"] == collection_version()
        assert not target.is_symlink()
