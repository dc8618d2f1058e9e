"""Fixtures for the shipping tests: the built artifact, an empty collections path with only that artifact in it,
and the awx.awx collection (from the `ansible` wheel on PyPI, see awx/install_awx_collection.py).

Everything the artifact tests run uses a minimal ansible.cfg that does NOT name the repository's ./collections
(whose symlinks would make keepwarm.ollama resolve from the checkout) and an ANSIBLE_COLLECTIONS_PATH holding only
the installed artifact.
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
    run([tool("ansible-galaxy"), "collection", "install", str(artifact), "-p", str(collections)], cwd=base, env=env)
    return collections, cfg, env


@pytest.fixture(scope="session")
def awx_collections() -> Path:
    """A collections path holding awx.awx (cached under build/, which is git-ignored)."""
    import install_awx_collection

    dest = ROOT / "build" / "awx-collections"
    install_awx_collection.install(dest)
    return dest
