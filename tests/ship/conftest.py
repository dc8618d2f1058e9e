"""Fixtures for the shipping tests: the built artifact, an empty collections path with only that artifact (and its
declared dependency community.docker) in it, and the awx.awx collection (from the `ansible` wheel on PyPI, see
awx/install_awx_collection.py).

install_artifact() installs the artifact as a user with Galaxy access gets it: collection/galaxy.yml declares
community.docker, which `ansible-galaxy collection install` would fetch from Galaxy into the same path. Here (no
Galaxy) it is put there first from the `ansible` wheel on PyPI (tools/install_community_docker.py) and the artifact is
installed with --offline, which then finds the dependency satisfied.

Everything the artifact tests run uses an ANSIBLE_COLLECTIONS_PATH holding only the installed artifact, never the
repository's ./collections (whose symlinks make keepwarm.ollama resolve from the checkout; the Makefile and
tests/conftest.py put it on the path for development). fresh_clone() and awx_collections_path() lay out a job the way
AWX 24 does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GALAXY_YML = ROOT / "collection" / "galaxy.yml"
ZIPAPP = "ollama-heartbeat.pyz"

sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "awx"))


def tool(name: str) -> str:
    beside = VENV_BIN / name
    return str(beside) if beside.exists() else name


def collection_version() -> str:
    return str(yaml.safe_load(GALAXY_YML.read_text())["version"])


def clean_env(collections_path: Path | str, config: Path, **extra: str) -> dict[str, str]:
    """os.environ without any ANSIBLE_* that could point back at the checkout, plus the given paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(config)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    env["ANSIBLE_HOME"] = str(Path(config).parent / "ansible-home")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(extra)
    return env


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def install_artifact(artifact: Path, collections: Path | None, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    """`ansible-galaxy collection install --offline ARTIFACT -p COLLECTIONS` after community.docker is in COLLECTIONS.
    COLLECTIONS None: no -p (ansible-galaxy's default path, ~/.ansible/collections under the env's HOME)."""
    import install_community_docker

    target = collections
    if target is None:
        target = Path(kwargs["env"]["HOME"]) / ".ansible" / "collections"
    target.mkdir(parents=True, exist_ok=True)
    install_community_docker.install_into(target)
    path_args = [] if collections is None else ["-p", str(collections)]
    return run(
        [tool("ansible-galaxy"), "collection", "install", "--offline", str(artifact), *path_args, *extra], **kwargs
    )


def fresh_clone(dest: Path) -> Path:
    """DEST holding what `git clone` of this working tree gives: tracked and new not-ignored files, symlinks kept as
    links (AWX copies the project with symlinks=True), no dist/, build/ or .venv/ (git-ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        src = ROOT / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree, not committed yet
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    return dest


def awx_collections_path(project: Path, runner_root: Path, home: Path, ee_collections: Path) -> str:
    """ANSIBLE_COLLECTIONS_PATH as AWX 24 builds it for a job (awx/main/tasks/jobs.py BaseTask.build_env, path_vars;
    awx/main/utils/ansible.py read_ansible_config): the job's requirements_collections first, then the project
    ansible.cfg's `collections_path` if it names one, then the defaults ~/.ansible/collections and the EE's
    /usr/share/ansible/collections (here HOME and EE_COLLECTIONS stand for the container's)."""
    import configparser

    paths = [str(home / ".ansible" / "collections"), str(ee_collections)]
    parser = configparser.ConfigParser()
    parser.read([project / "ansible.cfg"])
    configured = parser["defaults"].get("collections_path") if "defaults" in parser else None
    if configured:
        paths = [configured, *paths]
    return os.pathsep.join([str(runner_root / "requirements_collections"), *paths])


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> Path:
    """tools/build_collection.py --out TMP: the tarball (built once per session, the repo's dist/ untouched)."""
    out = tmp_path_factory.mktemp("dist")
    prebuilt = ROOT / "dist" / ZIPAPP
    if prebuilt.is_file():  # `make agent` ran: reuse it, as `make collection` does
        shutil.copyfile(prebuilt, out / ZIPAPP)
    run([sys.executable, str(ROOT / "tools" / "build_collection.py"), "--out", str(out)], cwd=ROOT)
    path = out / f"keepwarm-ollama-{collection_version()}.tar.gz"
    assert path.is_file(), sorted(p.name for p in out.iterdir())
    return path


@pytest.fixture(scope="session")
def installed(artifact, tmp_path_factory):
    """The artifact installed with ansible-galaxy into an empty collections path; returns (path, cfg, env)."""
    base = tmp_path_factory.mktemp("installed")
    collections = base / "collections"
    collections.mkdir()
    cfg = base / "ansible.cfg"
    cfg.write_text(
        "[defaults]\ninterpreter_python = auto_silent\nhost_key_checking = True\nretry_files_enabled = False\n"
    )
    env = clean_env(collections, cfg)
    assert not any(collections.iterdir())
    install_artifact(artifact, collections, cwd=base, env=env)
    return collections, cfg, env


@pytest.fixture(scope="session")
def awx_collections() -> Path:
    """A collections path holding awx.awx (cached under build/, which is git-ignored)."""
    import install_awx_collection

    dest = ROOT / "build" / "awx-collections"
    install_awx_collection.install(dest)
    return dest
