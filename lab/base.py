"""The lab's base root filesystem: one debootstrapped Debian 12, built once, cached by a hash of its inputs.

Every lab host boots from this tree through its own overlayfs, so the base is never written after the build.
Besides Debian itself the base carries the layout of Ollama's official Linux installer (scripts/install.sh
`configure_systemd`, see /work/shared/ollama-behaviour.md section 8): the `ollama` system user and group, the
unit `/etc/systemd/system/ollama.service` exactly as the installer writes it, enabled. The binary
`/usr/local/bin/ollama` (the emulator) is not part of the base: the lab copies it into each host's overlay at
`up`, so editing the emulator needs no rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from lab import errors

# Bump when the build steps below change in a way that changes the tree.
RECIPE_VERSION = 1
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "openssh-server",
    "iproute2",
    "procps",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# The `docker` variant: the same base plus Debian's Docker Engine, for hosts whose Ollama is the `ollama/ollama`
# container (lab-notes.md "Docker inside a lab host"). netbase, sgml-base and libjansson4 are missing from minbase
# and iptables/nftables/libnet1 do not configure without them. No ollama.service: a Docker user's host has none.
VARIANTS = ("systemd", "docker")
DOCKER_PACKAGES = ("docker.io", "docker-compose", "netbase", "sgml-base", "libjansson4")
# overlay2 on the host's overlayfs root fails ("failed to mount overlay: invalid argument"); vfs works.
DOCKER_DAEMON_JSON = {"storage-driver": "vfs"}

# The PATH root gets from sudo on Debian 12 (sudoers secure_path); scripts/install.sh writes the installer's own
# $PATH into the unit (`Environment="PATH=$PATH"`), and the installer runs as root through sudo.
INSTALLER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# scripts/install.sh `configure_systemd`: the unit is identical from v0.1.38 to HEAD. BINDIR=/usr/local/bin, the
# first of /usr/local/bin, /usr/bin, /bin on PATH. No Wants=network-online.target, no OLLAMA_* variable.
OLLAMA_UNIT = f"""[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3
Environment="PATH={INSTALLER_PATH}"

[Install]
WantedBy=default.target
"""

# Timers that would only try the network (the hosts have no route out) or scrub disks the hosts do not own.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service")


def cache_root() -> Path:
    return Path(os.environ.get("KEEPWARM_LAB_CACHE", "/var/cache/keepwarm-lab"))


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise errors.LabError(f"unknown lab runtime {variant!r}: choose one of {', '.join(VARIANTS)}")


def packages(variant: str = "systemd") -> tuple[str, ...]:
    _check_variant(variant)
    return PACKAGES + (DOCKER_PACKAGES if variant == "docker" else ())


def inputs(variant: str = "systemd") -> dict:
    """Everything that decides the content of the base tree; its hash names the cache entry."""
    out = {
        "recipe_version": RECIPE_VERSION,
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(packages(variant)),
        "ollama_unit": OLLAMA_UNIT,
        "masked_units": sorted(MASKED_UNITS),
    }
    if variant == "docker":  # the systemd variant's inputs (and so its cache key) stay as they were
        out.pop("ollama_unit")
        out["docker"] = {"daemon_json": DOCKER_DAEMON_JSON, "runtime": variant}
    return out


def key(variant: str = "systemd") -> str:
    blob = json.dumps(inputs(variant), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def base_dir(variant: str = "systemd") -> Path:
    """`<cache>/base-<key>`; the tree is in `rootfs/`, `manifest.json` records the inputs and the build time."""
    return cache_root() / f"base-{key(variant)}"


def rootfs(variant: str = "systemd") -> Path:
    return base_dir(variant) / "rootfs"


def is_built(variant: str = "systemd") -> bool:
    return (base_dir(variant) / "manifest.json").is_file() and (rootfs(variant) / "usr/lib/systemd/systemd").exists()


def _run(cmd: list[str], log, **kw) -> None:
    log.write(f"+ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, **kw)
    if proc.returncode != 0:
        raise errors.LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}; see {log.name}")


def ensure(say=print, variant: str = "systemd") -> Path:
    """Return the cached base rootfs, building it first when no cache entry matches the inputs."""
    if is_built(variant):
        return rootfs(variant)
    errors.require_tool("debootstrap", "debootstrap")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = base_dir(variant)
    key_ = key(variant)
    tmp = root / f".build-{key_}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tree = tmp / "rootfs"
    mirror = os.environ.get("KEEPWARM_LAB_MIRROR", DEFAULT_MIRROR)
    log_path = root / f"build-{key_}.log"
    say(f"building the {variant} base rootfs {final.name} with debootstrap (a minute or two; log: {log_path})")
    start = time.monotonic()
    try:
        with open(log_path, "w") as log:
            _run(
                [
                    "debootstrap",
                    f"--variant={VARIANT}",
                    "--include=" + ",".join(packages(variant)),
                    SUITE,
                    str(tree),
                    mirror,
                ],
                log,
            )
            if variant == "docker":
                _configure_docker(tree, log)
            else:
                _configure(tree, log)
        manifest = dict(inputs(variant), key=key_, mirror=mirror, build_seconds=round(time.monotonic() - start, 1))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():  # another build won the race; keep theirs
            shutil.rmtree(tmp)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{variant} base rootfs built in {time.monotonic() - start:.0f} s: {rootfs(variant)}")
    return rootfs(variant)


def _configure(tree: Path, log) -> None:
    chroot = ["chroot", str(tree)]
    # scripts/install.sh `configure_systemd`: system user with its own group and a home, no login shell.
    _run([*chroot, "useradd", "-r", "-s", "/bin/false", "-U", "-m", "-d", "/usr/share/ollama", "ollama"], log)
    group_file = (tree / "etc/group").read_text()
    for group in ("render", "video"):  # install.sh: joins render and video when they exist
        if any(line.startswith(group + ":") for line in group_file.splitlines()):
            _run([*chroot, "usermod", "-a", "-G", group, "ollama"], log)
    # install.sh: the user who ran the installer (root, through sudo) joins the ollama group.
    _run([*chroot, "usermod", "-a", "-G", "ollama", "root"], log)
    unit = tree / "etc/systemd/system/ollama.service"
    unit.write_text(OLLAMA_UNIT)
    unit.chmod(0o644)
    # install.sh runs `systemctl enable ollama`: WantedBy=default.target gives this link.
    wants = tree / "etc/systemd/system/default.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "ollama.service").symlink_to("/etc/systemd/system/ollama.service")
    _finish(tree, log)


def _configure_docker(tree: Path, log) -> None:
    """The docker variant: Docker Engine enabled with the vfs storage driver; Ollama comes as a container at `up`."""
    daemon_json = tree / "etc/docker/daemon.json"
    daemon_json.parent.mkdir(parents=True, exist_ok=True)
    daemon_json.write_text(json.dumps(DOCKER_DAEMON_JSON, indent=2) + "\n")
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("docker.service", "containerd.service"):  # what the packages' postinst enables on a real host
        link = wants / unit
        if not link.exists() and not link.is_symlink():
            link.symlink_to(f"/lib/systemd/system/{unit}")
    _finish(tree, log)


def _finish(tree: Path, log) -> None:
    for name in MASKED_UNITS:
        link = tree / "etc/systemd/system" / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    # Every host gets its own identity at `up`: never ship one machine-id or one set of SSH host keys.
    (tree / "etc/machine-id").write_text("")
    dbus_id = tree / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    for key_file in (tree / "etc/ssh").glob("ssh_host_*"):
        key_file.unlink()
    (tree / "etc/hostname").write_text("kw-lab\n")
    # Small: no package archives or lists (the hosts have no route to a mirror anyway).
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (tree / sub).glob("*"):
            if item.is_file():
                item.unlink()
    log.write("configured\n")
