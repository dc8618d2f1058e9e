"""Helpers for the agent tests: run the CLI (in-process `main([...])` or a real subprocess), parse its log lines."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY39 = "/root/.pyenv/versions/3.9.18/bin/python3.9"
PY313 = "/root/.pyenv/versions/3.13.0/bin/python3.13"

_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log(text: str) -> list[dict[str, str]]:
    """Parse `key=value` lines; every non-empty stdout line must be one (no tracebacks, no free text)."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        pairs = _PAIR.findall(line)
        assert pairs and " ".join(f"{k}={v}" for k, v in pairs) == line, f"not a key=value line: {line!r}"
        lines.append({k: (json.loads(v) if v.startswith('"') else v) for k, v in pairs})
    return lines


def cold_loads(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] in ("load", "reload")]


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def log(self) -> list[dict[str, str]]:
        return parse_log(self.out)

    def actions(self, action: str) -> list[dict[str, str]]:
        return [line for line in self.log if line.get("action") == action]

    @property
    def beat(self) -> dict[str, str]:
        beats = self.actions("beat")
        assert len(beats) == 1, self.out
        return beats[0]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `heartbeat_agent.__main__.main(argv)` in-process; returns a Run. No config file is read by default."""
    from heartbeat_agent import _cli

    monkeypatch.setattr(_cli, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.json"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))  # the agent's default state place

    def run(*argv: str, transport=None) -> Run:
        capsys.readouterr()
        code = _cli.main(list(argv), transport=transport)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return Run(code, out, err)

    return run


def run_subprocess(*argv: str, python: str = sys.executable, env: dict | None = None, timeout: float = 60) -> Run:
    """Run the agent in a real process: `python -m heartbeat_agent ...`, or `python -I x.pyz ...` for a zipapp."""
    cmd = [python, *argv] if argv and argv[0].endswith(".pyz") else [python, "-m", "heartbeat_agent", *argv]
    if argv and argv[0].endswith(".pyz"):
        cmd.insert(1, "-I")
    full_env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    full_env["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="hb-state-")  # never the user's own state
    full_env.update(env or {})
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return Run(proc.returncode, proc.stdout, proc.stderr)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory) -> Path:
    """The zipapp built by tools/build_zipapp.py (wheels cached in build/wheels)."""
    out = tmp_path_factory.mktemp("pyz") / "ollama-heartbeat.pyz"
    subprocess.run([sys.executable, "tools/build_zipapp.py", "--out", str(out)], cwd=ROOT, check=True)
    return out
