"""pytest fixtures for the lab fleet.

Contract: session fixture `lab_hosts` yields a fleet object with
  .inventory: pathlib.Path   -- Ansible INI inventory of the running lab (group ollama_gpu)
  .hosts: list[str]          -- inventory host names
  .ssh(host, *cmd, check=True) -> subprocess.CompletedProcess  -- run a command on a host as root over SSH

If a lab is already running it is reused and left running; otherwise the fixture brings up 2 hosts and tears
them down at the end of the session. The lab is driven through its CLI (`python -m lab`) in a subprocess, so
the fleet's processes never belong to the pytest process.

`.ssh` is real SSH with the lab key and the lab's known_hosts (StrictHostKeyChecking=yes), sharing one control
master per host. One argument is sent as a shell command line (`.ssh(h, "systemctl is-active ollama")`);
several are quoted one by one (`.ssh(h, "sh", "-c", "echo $HOME")`). Output is text; with check=True a non-zero
exit raises `LabCommandError` (a CalledProcessError that shows stdout and stderr).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURE_HOSTS = 2
# Whether this pytest session brought the running lab up (set by `lab_hosts`); tests that take the fleet down
# check it so that they never destroy a lab somebody else is using.
SESSION = {"owns_lab": False}


class LabCommandError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def lab_cli(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m lab ARGS` from the repository (as the tests' own interpreter)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def lab_status() -> dict:
    proc = lab_cli("status", "--json", check=False)
    if proc.returncode not in (0, 1, 3):
        raise LabCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


class LabFleet:
    """The running lab as tests see it."""

    def __init__(self, info: dict, owned: bool):
        self.owned = owned
        self.inventory = Path(info["inventory"])
        self.known_hosts = Path(info["known_hosts"])
        self.identity_file = Path(info["identity_file"])
        self.addresses = {i["instance"]: i["address"] for i in info["instances"]}
        self.hosts = list(self.addresses)
        self.control_dir = Path(info["known_hosts"]).parent / "cm"

    def ssh_args(self, host: str) -> list[str]:
        self.control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return [
            "ssh",
            "-i",
            str(self.identity_file),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self.control_dir}/%C",
            "-o",
            "ControlPersist=60",
            "-o",
            "LogLevel=ERROR",
            f"root@{self.addresses[host]}",
        ]

    def ssh(self, host: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        remote = cmd[0] if len(cmd) == 1 else shlex.join(cmd)
        proc = subprocess.run(
            [*self.ssh_args(host), remote],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc


def _up(count: int) -> dict:
    return json.loads(lab_cli("up", str(count), "--json").stdout)


@pytest.fixture(scope="session")
def lab_hosts():
    """The running lab (reused if up, else `up 2` now and `down` at the end of the session)."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (they boot systemd-nspawn hosts): run pytest as root, or -m 'not lab'")
    running = [h for h in lab_status()["hosts"] if h["running"]]
    owned = not running
    try:
        info = _up(max(FIXTURE_HOSTS, len(running)))
    except BaseException:
        if owned:  # do not leave a half-booted fleet behind
            lab_cli("down", check=False)
        raise
    fleet = LabFleet(info, owned=owned)
    SESSION["owns_lab"] = owned
    try:
        yield fleet
    finally:
        if owned:
            SESSION["owns_lab"] = False
            lab_cli("down")
