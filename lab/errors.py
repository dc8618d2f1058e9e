"""Errors that name their fix, and the preflight checks that raise them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# The apt packages the lab needs on the controller (Debian 12).
APT_PACKAGES = ("systemd-container", "debootstrap", "openssh-client", "iproute2", "util-linux")


class LabError(Exception):
    """A lab failure with a message meant for the person at the terminal."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (it mounts overlays, creates network namespaces and boots containers): "
            f"run it as root, e.g. `sudo {sys.executable} -m lab {' '.join(sys.argv[1:]) or 'up'}`"
        )


def require_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LabError(f"`{tool}` is not installed: run `apt-get install -y {package}`")
    return path


def require_tools() -> None:
    require_tool("systemd-nspawn", "systemd-container")
    require_tool("ip", "iproute2")
    require_tool("ssh", "openssh-client")
    require_tool("ssh-keygen", "openssh-client")
    require_tool("nsenter", "util-linux")
    require_tool("mount", "mount")


def require_container_support() -> None:
    """Fail early, with the reason, on machines where systemd-nspawn cannot boot a host."""
    filesystems = Path("/proc/filesystems").read_text()
    if "overlay" not in filesystems:
        os.system("modprobe overlay >/dev/null 2>&1")  # noqa: S605 S607 - best effort, checked below
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise LabError(
                "this machine cannot boot lab hosts: the kernel has no overlayfs "
                "(try `modprobe overlay`, or use a kernel with CONFIG_OVERLAY_FS)"
            )
    if not Path("/proc/self/ns/net").exists():
        raise LabError("this machine cannot boot lab hosts: the kernel has no network namespaces (CONFIG_NET_NS)")
    cg = Path("/sys/fs/cgroup")
    if not (cg / "cgroup.controllers").exists() and not (cg / "systemd").is_dir():
        raise LabError(
            "this machine cannot boot lab hosts: no cgroup hierarchy for systemd at /sys/fs/cgroup "
            "(mount cgroup2 at /sys/fs/cgroup, or a name=systemd v1 hierarchy at /sys/fs/cgroup/systemd)"
        )
    try:
        with open("/proc/self/status") as f:
            cap_eff = next(line for line in f if line.startswith("CapEff:")).split()[1]
    except (OSError, StopIteration):
        return
    if not int(cap_eff, 16) & (1 << 21):  # CAP_SYS_ADMIN
        raise LabError(
            "this machine cannot boot lab hosts: this process lacks CAP_SYS_ADMIN (an unprivileged container?); "
            "run the lab on a VM or a host as real root"
        )
