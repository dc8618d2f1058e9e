"""Shared fixtures: a real emulator process on loopback, one per test that asks for it.

The emulator is the `lab.emulator` package, started as `python -m lab.emulator serve` from this checkout (the lab
installs the same package as the /usr/local/bin/ollama zipapp built by lab/emulator/build.py). Tests talk to it
over real HTTP; nothing here fakes a response.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Ansible runs in tests use keepwarm.ollama from the checkout (collections/ links to collection/ and roles/), as the
# Makefile and tools/*.sh set it; ansible.cfg names no collections path (AWX and artifact users read it).
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / "collections"))
# The `ollama` command from this checkout; run it with env=emulator_env(...) (PYTHONPATH at the repo).
EMULATOR_CMD = ["-m", "lab.emulator"]
DATA = Path(__file__).resolve().parent / "data"

# The lab fleet fixture (`lab_hosts`) lives with the lab so that the lab owns its own lifecycle.
pytest_plugins = ["lab.pytest_plugin"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for `python -m lab.emulator ...`: ours without OLLAMA_*, the repo first on PYTHONPATH."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    full_env.update(env)
    return full_env


class Emulator:
    """A running `ollama serve` emulator. `url` is its base URL; `events()` reads /emulator/events."""

    def __init__(  # noqa: PLR0913, PLR0917
        self,
        env: dict[str, str],
        python: str = sys.executable,
        log=None,
        start_timeout: float = 15,
        command: list[str] | None = None,
    ):
        """`python -m lab.emulator serve` with `python` (any 3.9+); `command` replaces `-m lab.emulator`, e.g. the
        path of a zipapp built by lab/emulator/build.py. `log`: a binary file for the emulator's output (default: a
        pipe, read only if start-up fails)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = emulator_env({"OLLAMA_HOST": f"127.0.0.1:{self.port}", **env})
        self.env = full_env  # also right for `[python, *EMULATOR_CMD, "ps"]` against this server
        self.proc = subprocess.Popen(
            [python, *(EMULATOR_CMD if command is None else command), "serve"],
            env=full_env,
            stdout=subprocess.PIPE if log is None else log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                self.stop()
                raise RuntimeError(f"emulator did not start on {self.url}: {out}")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: object | None = None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def events(self) -> list[dict]:
        return self.request("GET", "/emulator/events")["events"]

    def ps(self) -> list[dict]:
        return self.request("GET", "/api/ps")["models"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def emulator_factory():
    """Start emulators with given environment variables; all are stopped after the test."""
    started: list[Emulator] = []

    def start(**env: str) -> Emulator:
        emu = Emulator({k: str(v) for k, v in env.items()})
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory) -> Emulator:
    """An emulator with server defaults, time scale 60 (a '5m' expiry passes in 5 s)."""
    return emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")


@pytest.fixture(scope="session")
def ps_samples() -> list[dict]:
    """Real /api/ps `expires_at` samples with their expected classification (shared by collection and agent)."""
    return json.loads((DATA / "ps_samples.json").read_text())["samples"]
