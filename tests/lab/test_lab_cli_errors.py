"""The lab's preflight errors name their fix. These boot nothing (they stop before any change), so they are not
marked `lab` and run with the unit tests; they need root only to drop to another user for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("systemd-nspawn", "ip", "ssh", "ssh-keygen", "nsenter", "mount", "umount", "debootstrap", "chroot")


def run_lab(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        **kw,
    )


@pytest.fixture
def bin_without(tmp_path):
    """A PATH directory holding every tool the lab uses except the named ones."""

    def make(*missing: str) -> str:
        d = tmp_path / "bin"
        d.mkdir(exist_ok=True)
        for tool in TOOLS:
            found = shutil.which(tool)
            if tool not in missing and found:
                (d / tool).symlink_to(found)
        return str(d)

    return make


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
@pytest.mark.parametrize("command", [["up", "2"], ["down"], ["status"]])
def test_not_root_is_refused_with_the_fix(command):
    # The lab is stdlib-only: run a world-readable copy with the system python3 as user nobody, for real.
    copy = Path(tempfile.mkdtemp(prefix="kwlab-errors-"))
    try:
        copy.chmod(0o755)
        shutil.copytree(REPO / "lab", copy / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-m", "lab", *command],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(copy)
    assert proc.returncode == 2, proc.stderr
    assert "the lab needs root" in proc.stderr
    assert "sudo " in proc.stderr


def test_missing_systemd_nspawn_names_the_package(bin_without):
    proc = run_lab("up", "1", env=dict(os.environ, PATH=bin_without("systemd-nspawn")))
    assert proc.returncode == 2
    assert "`systemd-nspawn` is not installed: run `apt-get install -y systemd-container`" in proc.stderr


def test_missing_debootstrap_names_the_package_when_the_base_is_not_cached(bin_without, tmp_path):
    env = dict(os.environ, PATH=bin_without("debootstrap"), KEEPWARM_LAB_CACHE=str(tmp_path / "empty-cache"))
    proc = run_lab("up", "1", env=env)
    assert proc.returncode == 2
    assert "`debootstrap` is not installed: run `apt-get install -y debootstrap`" in proc.stderr
    assert not (tmp_path / "empty-cache").exists()  # stopped before changing anything


def test_bad_host_count_and_unknown_host():
    proc = run_lab("up", "0")
    assert proc.returncode == 2 and "host count must be 1..50" in proc.stderr
    proc = run_lab("ssh", "web-1", "true")
    assert proc.returncode == 2 and "not a lab host name: 'web-1'" in proc.stderr
