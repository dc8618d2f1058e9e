"""Integration helpers: run keepwarm.ollama modules with the real `ansible` CLI and read their results.

Each call is `ansible HOST -m keepwarm.ollama.MODULE -a JSON -t TREE` (the tree option writes the module's result
as JSON per host); stdout is kept for `--diff` output. Modules run under the interpreter given (pyenv 3.8 and
3.13 locally, the host's /usr/bin/python3 on lab hosts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# keepwarm.ollama's module_utils for parsing on the test side (collections/ansible_collections/keepwarm/ollama links
# to collection/)
if str(REPO / "collections") not in sys.path:
    sys.path.insert(0, str(REPO / "collections"))
VENV_BIN = Path(sys.executable).parent
ANSIBLE = str(VENV_BIN / "ansible") if (VENV_BIN / "ansible").exists() else "ansible"
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
# oldest and newest target interpreters of this machine kind
INTERPRETERS = {
    "py3.8": PYENV_ROOT / "versions" / "3.8.18" / "bin" / "python3.8",
    "py3.13": PYENV_ROOT / "versions" / "3.13.0" / "bin" / "python3.13",
}
REAL_OLLAMA = os.environ.get("KEEPWARM_OLLAMA_URL")


class AnsibleRun:
    def __init__(self, rc: int, result: dict, stdout: str, stderr: str):
        self.rc = rc
        self.result = result
        self.stdout = stdout
        self.stderr = stderr

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed")) or self.rc != 0

    def __repr__(self) -> str:
        return f"AnsibleRun(rc={self.rc}, result={self.result!r}, stdout={self.stdout[-2000:]!r})"


def run_ansible(
    module: str,
    args: dict,
    tmp_path: Path,
    *,
    interpreter: str | None = None,
    check: bool = False,
    diff: bool = False,
    host: str = "localhost",
    inventory: str | None = None,
    become: bool = False,
) -> AnsibleRun:
    tree = tmp_path / f"tree-{os.urandom(4).hex()}"
    cmd = [ANSIBLE, host, "-m", f"keepwarm.ollama.{module}", "-a", json.dumps(args), "-t", str(tree)]
    if inventory is None:
        cmd += ["-i", f"{host},", "-c", "local"]
    else:
        cmd += ["-i", inventory]
    if interpreter:
        cmd += ["-e", f"ansible_python_interpreter={interpreter}"]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if become:
        cmd.append("--become")
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("OLLAMA_HOST", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    result_file = tree / host
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return AnsibleRun(proc.returncode, result, proc.stdout, proc.stderr)


@pytest.fixture(params=sorted(INTERPRETERS), ids=sorted(INTERPRETERS))
def interpreter(request) -> str:
    path = INTERPRETERS[request.param]
    if not path.exists():
        raise RuntimeError(f"target interpreter {path} is missing: install it with pyenv")
    return str(path)


@pytest.fixture
def ansible_module(tmp_path):
    def run(module: str, args: dict, **kw) -> AnsibleRun:
        return run_ansible(module, args, tmp_path, **kw)

    return run


class Target:
    """The Ollama server the HTTP-module tests talk to: an emulator on loopback, or KEEPWARM_OLLAMA_URL."""

    def __init__(self, url: str, emulator=None):
        self.url = url
        self.emulator = emulator

    @property
    def real(self) -> bool:
        return self.emulator is None

    def events(self) -> list[dict] | None:
        """Scheduler events (emulator only); None against a real server."""
        return None if self.emulator is None else self.emulator.events()

    def cold_starts(self, model: str | None = None) -> int | None:
        events = self.events()
        if events is None:
            return None
        return sum(1 for e in events if e["event"] in ("load", "reload") and (model is None or e["model"] == model))


@pytest.fixture
def ollama_target(emulator_factory) -> Target:
    """A fresh emulator (time scale 60) per test, or the real server named by KEEPWARM_OLLAMA_URL."""
    if REAL_OLLAMA:
        return Target(REAL_OLLAMA.rstrip("/"))
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    return Target(emu.url, emu)
