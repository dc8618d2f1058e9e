"""Debian's Prometheus binaries for the monitoring tests, from the Debian archive (apt is a package registry):

    apt-get download prometheus prometheus-node-exporter      # into build/monitoring/debs (cached, git-ignored)
    dpkg-deb -x prometheus_*.deb build/monitoring/prometheus  # promtool and prometheus, never installed

The `prometheus` package is not installed on the controller because its postinst would start a server listening
on every address; the tests run the packaged binaries on loopback instead. prometheus-node-exporter's .deb is
installed with dpkg on a lab host (tests/monitoring/test_node_exporter_lab.py), whose base has its dependencies.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "monitoring"
DEBS = CACHE / "debs"
PACKAGES = ("prometheus", "prometheus-node-exporter")


def debian_packages() -> dict[str, Path]:
    """The cached .deb of each package in PACKAGES (downloaded once; safe from parallel workers)."""
    DEBS.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = {p: sorted(DEBS.glob(f"{p}_*.deb")) for p in PACKAGES}
        missing = [p for p, debs in found.items() if not debs]
        if missing:
            cmd = ["apt-get", "download", *missing]
            proc = subprocess.run(cmd, cwd=DEBS, capture_output=True, text=True, check=False)
            if proc.returncode != 0:  # no package lists yet (a fresh CI machine)
                subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
                subprocess.run(cmd, cwd=DEBS, check=True, capture_output=True)
            found = {p: sorted(DEBS.glob(f"{p}_*.deb")) for p in PACKAGES}
    return {p: debs[-1] for p, debs in found.items()}


def prometheus_bin() -> Path:
    """build/monitoring/prometheus/usr/bin (promtool, prometheus) from Debian's prometheus package."""
    deb = debian_packages()["prometheus"]
    tree = CACHE / "prometheus"
    stamp = tree / ".from"
    with open(CACHE / ".extract.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file() or stamp.read_text() != deb.name:
            subprocess.run(["rm", "-rf", str(tree)], check=True)
            tree.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            stamp.write_text(deb.name)
    return tree / "usr" / "bin"


@pytest.fixture(scope="session")
def promtool() -> Path:
    return prometheus_bin() / "promtool"


@pytest.fixture(scope="session")
def prometheus() -> Path:
    return prometheus_bin() / "prometheus"


@pytest.fixture(scope="session")
def node_exporter_deb() -> Path:
    return debian_packages()["prometheus-node-exporter"]
