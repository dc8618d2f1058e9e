"""Lab hosts whose Ollama is the `ollama/ollama` container (`python -m lab up N --runtime docker`).

Recipe: /work/shared/lab-notes.md "Docker inside a lab host". Such a host boots from the `docker` base variant
(lab/base.py: Debian's docker.io and docker-compose 1.29, storage driver vfs, no ollama.service). At its first boot
the unit `kw-lab-ollama-compose.service` does, once, what a Docker user does by hand:

1. builds `docker.io/ollama/ollama:latest` locally with `docker import` (no registry) from a tar of the host's own
   Python and the emulator the lab installed as /usr/local/bin/ollama (the image puts it at /bin/ollama with
   `ENTRYPOINT ["/bin/ollama"]`, `CMD ["serve"]`, `ENV OLLAMA_HOST=0.0.0.0:11434`, as upstream's Dockerfile does);
2. runs `docker-compose up -d` (or `docker compose up -d` where the v2 plugin exists) in the user's compose project
   COMPOSE_DIR: one service `ollama`, container name `ollama`, port 11434 published, the named volume for
   /root/.ollama, `restart: unless-stopped`, no OLLAMA_* settings (the server's defaults, before keepwarm).

Only these hosts get the nspawn settings Docker needs (NSPAWN_ARGS, NSPAWN_ENV); systemd hosts never do.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

RUNTIME = "docker"
COMPOSE_DIR = "/srv/ollama"
COMPOSE_UNIT = "kw-lab-ollama-compose.service"
IMAGE = "docker.io/ollama/ollama:latest"
CONTAINER = "ollama"
PORT = 11434

# What Docker Engine needs beyond nspawn's default capability set, found by removing one at a time
# (tests/lab/test_lab_docker.py boots a host with exactly these). nspawn's default set already holds CAP_SYS_ADMIN
# (namespaces, mounts) and CAP_NET_RAW; CAP_NET_ADMIN is what dockerd needs for its bridge, veths and iptables
# ("failed to create default sandbox: operation not permitted" without it).
DOCKER_CAPABILITIES = ("CAP_NET_ADMIN",)
# nspawn's seccomp filter refuses the keyring calls (runc joins a session keyring) and bpf (runc's cgroup2 device
# filter): allow those two groups only.
SYSCALL_FILTER = "@keyring bpf"
NSPAWN_ARGS = (f"--capability={','.join(DOCKER_CAPABILITIES)}", f"--system-call-filter={SYSCALL_FILTER}")
# cgroup2 inside the host (with the machine's hybrid v1 layout runc fails: "mkdir /sys/fs/cgroup/cpuset/…:
# read-only file system"). No SYSTEMD_NSPAWN_API_VFS_WRITABLE: dockerd's only write to /proc/sys was
# net.ipv4.ip_forward, which the lab sets in the host's network namespace before boot (fleet._prepare_host).
NSPAWN_ENV = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}

# The user's compose project, in the shape of the keep-alive recipe's "For Docker Users" section but without its
# OLLAMA_* settings: keepwarm adds those in its own override file.
COMPOSE_YML = f"""# Ollama as a Docker user runs it (written by the keepwarm lab; keepwarm never edits this file).
services:
  ollama:
    image: {IMAGE}
    container_name: {CONTAINER}
    ports:
      - "{PORT}:{PORT}"
    volumes:
      - ollama:/root/.ollama
    restart: unless-stopped

volumes:
  ollama:
"""

# The image's root: the host's python3 (the emulator's interpreter) with its libraries, /bin/sh, and the emulator
# at /bin/ollama. Built inside the host so it always carries the emulator the lab installed there.
IMAGE_SCRIPT = r'''#!/usr/bin/python3
"""Write to stdout a tar of the root of the lab's ollama/ollama image (see lab/dockerhost.py)."""
import io, os, sys, tarfile

PATHS = ["bin", "lib", "lib64", "sbin", "usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/lib/python3",
         "usr/lib/python3.11", "usr/bin/python3", "usr/bin/python3.11", "usr/bin/env", "usr/bin/sh",
         "usr/bin/dash", "usr/bin/cat", "usr/bin/ls", "etc/passwd", "etc/group", "etc/nsswitch.conf",
         "usr/share/zoneinfo/Etc/UTC"]
SKIP = ("__pycache__", "/test/", "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/x86_64-linux-gnu/perl")

def skip(name):
    return any(s in name for s in SKIP)

with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
    # Parent directories as entries of their own, 0755 like any image's: `docker import` would otherwise create
    # them 0700, and a container running as another user than root could not reach /usr/bin/python3.
    parents = sorted({"/".join(p.split("/")[:i]) for p in PATHS + ["var/tmp"] for i in range(1, p.count("/") + 1)})
    for d in parents:
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    for top in PATHS:
        if not os.path.lexists("/" + top):
            continue
        tar.add("/" + top, arcname=top, filter=lambda ti: None if skip(ti.name) else ti)
    with open("/usr/local/bin/ollama", "rb") as f:
        data = f.read()
    info = tarfile.TarInfo("usr/bin/ollama")
    info.size, info.mode = len(data), 0o755
    tar.addfile(info, io.BytesIO(data))
    for d, mode in (("tmp", 0o1777), ("root", 0o700), ("root/.ollama", 0o755), ("var/tmp", 0o1777)):
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)
'''

PROVISION_SCRIPT = f"""#!/bin/sh
# The lab's first-boot setup of a Docker host (lab/dockerhost.py): the local image, then the user's compose project.
set -eu
if ! docker image inspect {IMAGE} >/dev/null 2>&1; then
  /usr/local/sbin/kw-lab-ollama-image | docker import \\
    -c 'ENTRYPOINT ["/bin/ollama"]' -c 'CMD ["serve"]' -c 'EXPOSE {PORT}' \\
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \\
    -c 'ENV OLLAMA_HOST=0.0.0.0:{PORT}' - {IMAGE}
fi
cd {COMPOSE_DIR}
if docker compose version >/dev/null 2>&1; then
  docker compose up -d
else
  docker-compose up -d
fi
touch /var/lib/kw-lab-compose.done
"""

COMPOSE_UNIT_TEXT = """[Unit]
Description=keepwarm lab: build the local ollama/ollama image and start the user's compose project (first boot)
Requires=docker.service
After=docker.service
ConditionPathExists=!/var/lib/kw-lab-compose.done

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kw-lab-provision-ollama
TimeoutStartSec=300

[Install]
WantedBy=multi-user.target
"""

# Units whose state `status` and readiness read on a Docker host (instead of ollama.service).
UNITS = ("multi-user.target", "docker.service", COMPOSE_UNIT, "ssh.service")


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def prepare(root: Path) -> None:
    """Write the compose project and the first-boot unit into a Docker host's overlay root (before boot)."""
    _write(root / COMPOSE_DIR.lstrip("/") / "docker-compose.yml", COMPOSE_YML, 0o644)
    _write(root / "usr/local/sbin/kw-lab-ollama-image", IMAGE_SCRIPT, 0o755)
    _write(root / "usr/local/sbin/kw-lab-provision-ollama", PROVISION_SCRIPT, 0o755)
    _write(root / "etc/systemd/system" / COMPOSE_UNIT, COMPOSE_UNIT_TEXT, 0o644)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / COMPOSE_UNIT
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{COMPOSE_UNIT}")


def api_answers(addr: str, timeout: float = 2.0) -> bool:
    """True when the container's published port answers GET /api/version (seen from the controller)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # lab addresses never go through a proxy
    try:
        with opener.open(f"http://{addr}:{PORT}/api/version", timeout=timeout) as resp:
            return resp.status == 200 and "version" in json.loads(resp.read() or b"{}")
    except (OSError, ValueError):
        return False
