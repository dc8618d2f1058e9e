"""The lab fleet: N systemd-nspawn hosts booted from one read-only base through per-host overlayfs roots.

Everything `up` creates carries a fixed name or prefix, so `down` finds it again without any state file, even
after a crash: nspawn processes booting a machine named `kw-lab-*`, network namespaces `kw-lab-*`, host-side veth
ends `vkwlab*`, the bridge `kwlab0`, mounts under the lab folder, cgroups under `keepwarm-lab/`.
The recipe follows /work/shared/lab-notes.md (seen working on this machine kind).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import base, dockerhost, errors

NAME_PREFIX = "kw-lab-"
VETH_PREFIX = "vkwlab"
BRIDGE = "kwlab0"
BRIDGE_MAC = "02:6b:77:6c:61:62"  # fixed: a bridge that borrows a port's MAC changes it when that port goes away
NETWORK = "198.18.0"  # 198.18.0.0/15 is reserved for benchmarking (RFC 2544): never someone else's network
CONTROLLER_ADDR = f"{NETWORK}.1"
PREFIXLEN = 24
CGROUP_PARENT = "keepwarm-lab"
MAX_HOSTS = 50
DEFAULT_MODELS = ["llama3.2"]
READY_TIMEOUT = float(os.environ.get("KEEPWARM_LAB_READY_TIMEOUT", "90"))
STOP_TIMEOUT = 15.0
LOCK_FILE = "/run/keepwarm-lab.lock"
# /usr/local/bin/ollama on every host: by default the lab.emulator package built into one zipapp at `up` time
# (lab/emulator/build.py); KEEPWARM_LAB_EMULATOR names a ready-made executable to install instead.
EMULATOR = os.environ.get("KEEPWARM_LAB_EMULATOR") or None


def lab_dir() -> Path:
    return Path(os.environ.get("KEEPWARM_LAB_DIR", "/var/lib/keepwarm-lab"))


def host_name(index: int) -> str:
    return f"{NAME_PREFIX}{index}"


def host_index(name: str) -> int:
    m = re.fullmatch(re.escape(NAME_PREFIX) + r"(\d+)", name)
    if not m:
        raise errors.LabError(f"not a lab host name: {name!r} (expected {NAME_PREFIX}1 … {NAME_PREFIX}{MAX_HOSTS})")
    return int(m.group(1))


def host_addr(index: int) -> str:
    return f"{NETWORK}.{10 + index}"


def host_mac(index: int) -> str:
    return f"02:6b:77:00:00:{index:02x}"


def veth_name(index: int) -> str:
    return f"{VETH_PREFIX}{index}"


class Paths:
    """Where the lab keeps its runtime state (default /var/lib/keepwarm-lab, env KEEPWARM_LAB_DIR)."""

    def __init__(self, root: Path | None = None):
        self.root = root or lab_dir()
        self.base_ro = self.root / "base"  # read-only bind mount of the cached base rootfs
        self.base_docker_ro = self.root / "base-docker"  # the same for the docker variant (`up --runtime docker`)
        self.hosts = self.root / "hosts"
        self.ssh = self.root / "ssh"
        self.key = self.ssh / "id_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.inventory = self.root / "inventory.ini"
        self.control = self.root / "cm"  # SSH control sockets of the pytest plugin
        self.state = self.root / "state.json"

    def host(self, name: str) -> Path:
        return self.hosts / name

    def host_root(self, name: str) -> Path:
        return self.hosts / name / "root"

    def base_mount(self, runtime: str) -> Path:
        return self.base_docker_ro if runtime == dockerhost.RUNTIME else self.base_ro

    def runtime(self, name: str) -> str:
        """`systemd` or `docker`: recorded in the host's folder when it is created."""
        return _read(self.hosts / name / "runtime").strip() or "systemd"


RUNTIMES = base.VARIANTS  # systemd: Ollama as ollama.service; docker: Ollama as the ollama/ollama container


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def run(cmd: list[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise errors.LabError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return proc


def ssh_base_args(paths: Paths) -> list[str]:
    return [
        "ssh",
        "-i",
        str(paths.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={paths.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of a process, or None when it is gone."""
    raw = _read(Path(f"/proc/{pid}/stat"))
    if not raw:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return comm, int(fields[1])


def nspawn_processes() -> dict[str, int]:
    """Machine name → PID of every running systemd-nspawn that boots a lab host (found from /proc, not a file)."""
    found: dict[str, int] = {}
    for pid in _pids():
        argv = _cmdline(pid)
        if not argv or not argv[0].endswith("systemd-nspawn") or _stat(pid) is None:
            continue
        name = None
        for i, arg in enumerate(argv):
            if arg in ("-M", "--machine") and i + 1 < len(argv):
                name = argv[i + 1]
            elif arg.startswith("--machine="):
                name = arg.split("=", 1)[1]
        if name and name.startswith(NAME_PREFIX):
            found[name] = pid
    return found


def container_pid1(nspawn_pid: int) -> int | None:
    """The container's PID 1 seen from the controller: the child of nspawn whose comm is `systemd`."""
    for pid in _pids():
        st = _stat(pid)
        if st and st[1] == nspawn_pid and st[0] == "systemd":
            return pid
    return None


def in_host(pid1: int, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    """Run a command inside a host's mount and PID namespaces (no SSH); used for readiness and status."""
    return run(["nsenter", "-t", str(pid1), "-m", "-u", "-i", "-p", "--", *cmd], check=False, timeout=timeout)


def unit_states(pid1: int, *units: str) -> dict[str, str]:
    try:
        out = in_host(pid1, "systemctl", "is-active", *units).stdout.split()
    except subprocess.TimeoutExpired:
        out = []
    states = dict(zip(units, out))
    return {u: states.get(u, "unknown") for u in units}


def ssh_banner(addr: str, timeout: float = 1.0) -> bool:
    """True when sshd answers on port 22 with its banner (a TCP accept alone is not an answer)."""
    try:
        with socket.create_connection((addr, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) from /proc/self/mountinfo."""
    out = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        pre, _, post = line.partition(" - ")
        parts = pre.split()
        post_parts = post.split()
        mp = parts[4].encode().decode("unicode_escape")
        out.append((mp, post_parts[0] if post_parts else "", post_parts[2] if len(post_parts) > 2 else ""))
    return out


def is_mounted(path: Path) -> bool:
    return any(mp == str(path) for mp, _, _ in mounts())


def cgroup_hierarchies() -> list[Path]:
    cg = Path("/sys/fs/cgroup")
    if (cg / "cgroup.controllers").exists():  # pure cgroup2
        return [cg]
    return [p for p in (cg / "systemd", cg / "unified") if (p / "cgroup.procs").exists()]


def links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def netns_list() -> list[str]:
    names = [line.split()[0] for line in run(["ip", "netns", "list"], check=False).stdout.splitlines() if line]
    run_dir = Path("/run/netns")
    if run_dir.is_dir():
        names += [p.name for p in run_dir.iterdir() if p.name not in names]
    return names


# ---------------------------------------------------------------------------------------------------------------
# status


@dataclass
class HostStatus:
    name: str
    address: str
    state: str = "stopped"  # running | booting | failed | stopped
    nspawn_pid: int | None = None
    runtime: str = "systemd"
    pid1: int | None = None
    pid1_comm: str | None = None
    units: dict[str, str] = field(default_factory=dict)
    ssh: bool = False
    disk_bytes: int | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"


def host_status(name: str, nspawn_pid: int | None, paths: Paths, with_disk: bool = False) -> HostStatus:
    idx = host_index(name)
    st = HostStatus(name=name, address=host_addr(idx), nspawn_pid=nspawn_pid, runtime=paths.runtime(name))
    if with_disk:
        st.disk_bytes = _du(paths.host(name) / "upper")
    if nspawn_pid is None:
        st.state = "stopped"
        return st
    pid1 = container_pid1(nspawn_pid)
    st.pid1 = pid1
    if pid1 is None:
        st.state = "booting"
        return st
    st.pid1_comm = (_stat(pid1) or ("?", 0))[0]
    units = _runtime_units(st.runtime)
    st.units = unit_states(pid1, *units, "ssh.service")
    st.ssh = ssh_banner(st.address)
    if all(st.units[u] == "active" for u in units) and st.ssh:
        st.state = "running"
    elif any(v == "failed" for v in st.units.values()):
        st.state = "failed"
    else:
        st.state = "booting"
    return st


def _runtime_units(runtime: str) -> tuple[str, ...]:
    """Units that must be active on a ready host (ssh.service aside)."""
    if runtime == dockerhost.RUNTIME:
        return tuple(u for u in dockerhost.UNITS if u != "ssh.service")
    return ("multi-user.target", "ollama.service")


def _du(path: Path) -> int:
    total = 0
    seen = set()
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                s = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if s.st_ino in seen:
                continue
            seen.add(s.st_ino)
            total += s.st_blocks * 512
    return total


def leftovers(paths: Paths) -> dict[str, list[str]]:
    """Everything of the lab's that exists right now, by name or prefix (what `down` must remove)."""
    lab_root = str(paths.root)
    cgroups = []
    for h in cgroup_hierarchies():
        p = h / CGROUP_PARENT
        if p.exists():
            cgroups.append(str(p))
    return {
        "processes": [f"{n}:{p}" for n, p in sorted(nspawn_processes().items())],
        "netns": [n for n in netns_list() if n.startswith(NAME_PREFIX)],
        "links": [n for n in links() if n == BRIDGE or n.startswith(VETH_PREFIX)],
        "mounts": [mp for mp, _, _ in mounts() if mp == lab_root or mp.startswith(lab_root + "/")],
        "host_dirs": sorted(str(p) for p in paths.hosts.glob("*")) if paths.hosts.is_dir() else [],
        "cgroups": cgroups,
    }


def status(paths: Paths | None = None, with_disk: bool = False) -> dict:
    paths = paths or Paths()
    procs = nspawn_processes()
    names = set(procs)
    if paths.hosts.is_dir():
        names |= {p.name for p in paths.hosts.iterdir() if p.name.startswith(NAME_PREFIX)}
    hosts = [host_status(n, procs.get(n), paths, with_disk) for n in sorted(names, key=host_index)]
    return {
        "lab_dir": str(paths.root),
        "base": str(base.rootfs()),
        "base_docker": str(base.rootfs("docker")),
        "base_built": base.is_built(),
        "inventory": str(paths.inventory) if paths.inventory.exists() else None,
        "known_hosts": str(paths.known_hosts),
        "identity_file": str(paths.key),
        "hosts": [asdict(h) | {"running": h.running} for h in hosts],
        "leftovers": leftovers(paths),
    }


# ---------------------------------------------------------------------------------------------------------------
# up


def _ensure_key(paths: Paths) -> None:
    paths.ssh.mkdir(parents=True, exist_ok=True)
    paths.ssh.chmod(0o700)
    if not paths.key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "keepwarm-lab", "-f", str(paths.key)])


def _ensure_bridge() -> None:
    if BRIDGE not in links():
        run(["ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge"])
    else:
        run(["ip", "link", "set", BRIDGE, "address", BRIDGE_MAC])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
    if f" {CONTROLLER_ADDR}/{PREFIXLEN} " not in addrs:
        run(["ip", "addr", "add", f"{CONTROLLER_ADDR}/{PREFIXLEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def _ensure_base_mount(paths: Paths, base_root: Path, runtime: str = "systemd") -> None:
    mount_point = paths.base_mount(runtime)
    if is_mounted(mount_point):
        return
    mount_point.mkdir(parents=True, exist_ok=True)
    run(["mount", "--bind", str(base_root), str(mount_point)])
    run(["mount", "-o", "remount,bind,ro", str(mount_point)])


def _cleanup_host(paths: Paths, name: str) -> None:
    """Remove whatever one host left behind (used before re-creating a host that is not running)."""
    idx = host_index(name)
    pid = nspawn_processes().get(name)
    if pid:
        _stop_processes({name: pid})
    if name in netns_list():
        run(["ip", "netns", "del", name], check=False)
    if veth_name(idx) in links():
        run(["ip", "link", "del", veth_name(idx)], check=False)
    if BRIDGE in links():
        run(["ip", "neigh", "flush", "to", host_addr(idx), "dev", BRIDGE], check=False)
    hdir = paths.host(name)
    for mp, _, _ in sorted(mounts(), key=lambda m: -len(m[0])):
        if mp == str(hdir) or mp.startswith(str(hdir) + "/"):
            _umount(mp)
    shutil.rmtree(hdir, ignore_errors=True)
    for h in cgroup_hierarchies():
        _rmdir_tree(h / CGROUP_PARENT / name)
    shutil.rmtree(Path("/run/systemd/nspawn/propagate") / name, ignore_errors=True)


def _emulator_bytes() -> bytes:
    if EMULATOR is None:
        from lab.emulator import build  # noqa: PLC0415 - only `up` needs it

        return build.zipapp_bytes()
    path = Path(EMULATOR)
    if not path.is_file():
        raise errors.LabError(
            f"the Ollama emulator is missing: {path} (KEEPWARM_LAB_EMULATOR; it is installed as /usr/local/bin/ollama)"
        )
    data = path.read_bytes()
    if not data.startswith(b"#!"):
        # An executable needs an interpreter line; the hosts' python3 is /usr/bin/python3.
        data = b"#!/usr/bin/python3\n" + data
    return data


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(mode)


def _etc_hosts(count: int) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{CONTROLLER_ADDR}\tkw-lab-controller",
    ]
    lines += [f"{host_addr(i)}\t{host_name(i)}" for i in range(1, count + 1)]
    return "\n".join(lines) + "\n"


def _prepare_host(paths: Paths, name: str, emulator: bytes, fleet_size: int, runtime: str = "systemd") -> None:
    """Overlay root, identity (hostname, machine-id, SSH host keys), root's authorized key, the emulator, network."""
    idx = host_index(name)
    hdir = paths.host(name)
    for sub in ("upper", "work", "root"):
        (hdir / sub).mkdir(parents=True, exist_ok=True)
    root = paths.host_root(name)
    run(
        [
            "mount",
            "-t",
            "overlay",
            f"kwlab-{name}",
            "-o",
            f"lowerdir={paths.base_mount(runtime)},upperdir={hdir / 'upper'},workdir={hdir / 'work'}",
            str(root),
        ]
    )
    _write(root / "etc/hostname", name + "\n")
    machine_id = uuid.uuid4().hex + "\n"
    _write(root / "etc/machine-id", machine_id, 0o444)
    _write(root / "var/lib/dbus/machine-id", machine_id, 0o444)
    _write(root / "etc/hosts", _etc_hosts(fleet_size))
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    _write(ssh_dir / "authorized_keys", (paths.key.with_suffix(".pub")).read_text(), 0o600)
    # scripts/install.sh: BINDIR=/usr/local/bin, binary `$BINDIR/ollama`, mode 0755.
    _write(root / "usr/local/bin/ollama", emulator, 0o755)
    _write(hdir / "runtime", runtime + "\n")
    if runtime == dockerhost.RUNTIME:
        dockerhost.prepare(root)

    # Network namespace prepared before boot: no race between systemd and the address.
    ns = name
    run(["ip", "netns", "add", ns])
    # A fixed MAC per address: a re-created host keeps its MAC, so no ARP cache (the controller's or another
    # host's) points at a vanished interface and the first SSH after a rebuild does not stall for seconds.
    run(
        ["ip", "link", "add", veth_name(idx), "type", "veth"]
        + ["peer", "name", "host0", "address", host_mac(idx), "netns", ns]
    )
    run(["ip", "link", "set", veth_name(idx), "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{host_addr(idx)}/{PREFIXLEN}", "dev", "host0"])
    run(["ip", "-n", ns, "link", "set", "host0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    if runtime == dockerhost.RUNTIME:
        # dockerd enables IP forwarding only when it is off (libnetwork setupIPForwarding): set it here, in this
        # host's own network namespace, so the host's /proc/sys can stay read-only.
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])


def _boot(paths: Paths, name: str) -> subprocess.Popen:
    hdir = paths.host(name)
    cgroups = []
    for h in cgroup_hierarchies():
        cg = h / CGROUP_PARENT / name
        cg.mkdir(parents=True, exist_ok=True)
        cgroups.append(cg / "cgroup.procs")

    def enter_cgroup() -> None:  # runs in the child before exec: its own cgroup, else all hosts share /payload
        for procs in cgroups:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

    docker = paths.runtime(name) == dockerhost.RUNTIME
    console = open(hdir / "console.log", "wb")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [
                "systemd-nspawn",
                "--register=no",
                "--keep-unit",
                "-D",
                str(paths.host_root(name)),
                "-M",
                name,
                f"--network-namespace-path=/run/netns/{name}",
                "--link-journal=no",
                "--console=read-only",
                # Docker hosts only: the narrowed extra capabilities and syscalls Docker Engine needs.
                *(dockerhost.NSPAWN_ARGS if docker else ()),
                "-b",
            ],
            env=dict(os.environ, **dockerhost.NSPAWN_ENV) if docker else None,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=enter_cgroup,  # noqa: PLW1509 - single-threaded CLI
        )
    finally:
        console.close()


def _host_keys(paths: Paths, name: str) -> list[str]:
    idx = host_index(name)
    out = []
    for pub in sorted((paths.host_root(name) / "etc/ssh").glob("ssh_host_*_key.pub")):
        ktype, kdata = pub.read_text().split()[:2]
        out.append(f"{name},{host_addr(idx)} {ktype} {kdata}")
    return out


def _write_known_hosts(paths: Paths, names: list[str]) -> None:
    lines = []
    for name in sorted(names, key=host_index):
        lines += _host_keys(paths, name)
    tmp = paths.known_hosts.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.chmod(0o644)
    tmp.replace(paths.known_hosts)


def _write_inventory(paths: Paths, names: list[str]) -> None:
    common = f"-o UserKnownHostsFile={paths.known_hosts} -o StrictHostKeyChecking=yes"
    lines = [
        "# The running keepwarm lab, written by `python -m lab up` (same shape as inventory.example).",
        "# Hosts are systemd-nspawn Debian 12 containers; host keys are pinned in the lab's known_hosts.",
        "[ollama_gpu]",
    ]
    for name in sorted(names, key=host_index):
        lines.append(
            f"{name} ansible_host={host_addr(host_index(name))} ansible_user=root"
            f" ansible_ssh_private_key_file={paths.key}"
            f" ansible_ssh_common_args='{common}'"
            " ansible_python_interpreter=/usr/bin/python3"
        )
    lines += ["", "[ollama_gpu:vars]", f"keepwarm_models={json.dumps(DEFAULT_MODELS)}", ""]
    docker_hosts = [n for n in sorted(names, key=host_index) if paths.runtime(n) == dockerhost.RUNTIME]
    if docker_hosts:
        # Hosts whose Ollama is the ollama/ollama container of a compose project (`up --runtime docker`).
        lines += [
            "# Ollama runs as the `ollama` container of the compose project in " + dockerhost.COMPOSE_DIR + ".",
            "[ollama_docker]",
            *docker_hosts,
            "",
            "[ollama_docker:vars]",
            "keepwarm_runtime=container",
            f"keepwarm_compose_project_dir={dockerhost.COMPOSE_DIR}",
            "",
        ]
    tmp = paths.inventory.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(paths.inventory)


def _wait_ready(paths: Paths, procs: dict[str, subprocess.Popen | int], deadline: float) -> dict[str, float]:
    """Wait until every host has multi-user.target and ollama.service active and answers over SSH (real login)."""
    start = time.monotonic()
    pending = dict(procs)
    ready_at: dict[str, float] = {}
    while pending:
        for name, proc in list(pending.items()):
            if isinstance(proc, subprocess.Popen):
                if proc.poll() is not None:
                    raise errors.LabError(_boot_failure(paths, name, f"systemd-nspawn exited with {proc.returncode}"))
                pid = proc.pid
            else:
                pid = proc
                if _stat(pid) is None:
                    raise errors.LabError(_boot_failure(paths, name, "systemd-nspawn is gone"))
            pid1 = container_pid1(pid)
            if pid1 is None:
                continue
            runtime = paths.runtime(name)
            states = unit_states(pid1, *_runtime_units(runtime))
            if any(v != "active" for v in states.values()):
                continue
            idx = host_index(name)
            if runtime == dockerhost.RUNTIME and not dockerhost.api_answers(host_addr(idx)):
                continue
            probe = run(
                [
                    *ssh_base_args(paths),
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=3",
                    f"root@{host_addr(idx)}",
                    "true",
                ],
                check=False,
                timeout=15,
            )
            if probe.returncode == 0:
                ready_at[name] = time.monotonic() - start
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            details = []
            for name, proc in pending.items():
                pid = proc.pid if isinstance(proc, subprocess.Popen) else proc
                details.append(_boot_failure(paths, name, "not ready in time", pid))
            raise errors.LabError("\n".join(details))
        time.sleep(0.1)
    return ready_at


def _boot_failure(paths: Paths, name: str, why: str, nspawn_pid: int | None = None) -> str:
    console = _read(paths.host(name) / "console.log").strip().splitlines()[-15:]
    msg = [f"{name}: {why}"]
    if nspawn_pid:
        pid1 = container_pid1(nspawn_pid)
        if pid1:
            units = (*_runtime_units(paths.runtime(name)), "ssh.service")
            states = unit_states(pid1, *units)
            msg.append(f"  units: {states}")
            for unit in ("ollama.service", "docker.service", dockerhost.COMPOSE_UNIT):
                if unit in states and (states[unit] != "active" or unit == dockerhost.COMPOSE_UNIT):
                    journal = in_host(pid1, "journalctl", "-u", unit, "-n", "15", "--no-pager").stdout
                    msg.append(f"  journalctl -u {unit}:\n    " + journal.strip().replace("\n", "\n    "))
    if console:
        msg.append(f"  last console lines ({paths.host(name) / 'console.log'}):\n    " + "\n    ".join(console))
    if any("cgroup" in line.lower() or "Operation not permitted" in line for line in console):
        msg.append("  this machine may not be able to boot containers (cgroups/privileges); see lab/README.md")
    msg.append("  fix the cause, then `python -m lab down` and `python -m lab up` again")
    return "\n".join(msg)


def preflight() -> None:
    errors.require_root()
    errors.require_tools()
    errors.require_container_support()


@contextlib.contextmanager
def _locked():
    """One `up`/`down` at a time on this machine (names and addresses are fixed)."""
    with open(LOCK_FILE, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def up(count: int = 3, say=print, runtime: str = "systemd") -> dict:
    """Bring the fleet to at least `count` running hosts; running hosts are left untouched.

    `runtime` is what the hosts this call creates run Ollama as: `systemd` (ollama.service) or `docker` (the
    ollama/ollama container from a compose project); `up 3` then `up 4 --runtime docker` is a mixed fleet."""
    if not 1 <= count <= MAX_HOSTS:
        raise errors.LabError(f"host count must be 1..{MAX_HOSTS}, got {count}")
    if runtime not in RUNTIMES:
        raise errors.LabError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    preflight()
    with _locked():
        return _up(count, say, runtime)


def _up(count: int, say, runtime: str = "systemd") -> dict:
    paths = Paths()
    t0 = time.monotonic()
    base_root = base.ensure(say=say, variant=runtime)
    paths.root.mkdir(parents=True, exist_ok=True)
    _ensure_key(paths)
    procs = nspawn_processes()
    existing = {n: host_status(n, procs[n], paths) for n in procs}
    wanted = [host_name(i) for i in range(1, count + 1)]
    # Hosts whose nspawn still runs are kept (waited for if still booting); anything else is rebuilt fresh.
    to_create = [n for n in wanted if n not in existing]
    to_wait: dict[str, subprocess.Popen | int] = {n: s.nspawn_pid for n, s in existing.items() if not s.running}
    fleet_size = max([count] + [host_index(n) for n in existing])
    if not to_create and not to_wait:
        _write_known_hosts(paths, list(existing))
        _write_inventory(paths, list(existing))
        say(f"lab unchanged: {len(existing)} host(s) running; inventory {paths.inventory}")
        for name in sorted(existing, key=host_index):
            say(f"  {name} {host_addr(host_index(name))} running (nspawn {existing[name].nspawn_pid})")
        return _summary(paths, sorted(existing, key=host_index), changed=False, seconds=time.monotonic() - t0)

    _ensure_bridge()
    if not existing and is_mounted(paths.base_mount(runtime)):
        _umount(str(paths.base_mount(runtime)))  # nothing runs on it: remount, the cached base may have been rebuilt
    _ensure_base_mount(paths, base_root, runtime)
    emulator = _emulator_bytes()
    # Stale leftovers of a crash (veth, netns, overlay, cgroup) would make `ip`/`mount` fail: clear them first.
    for name in to_create:
        _cleanup_host(paths, name)
    boot_t0 = time.monotonic()
    for name in to_create:
        _prepare_host(paths, name, emulator, fleet_size, runtime)
    # Fresh SSH host keys per host, made on the controller so the lab can pin them (RSA takes ~0.3 s: in parallel).
    keygens = [
        subprocess.Popen(["ssh-keygen", "-A", "-f", str(paths.host_root(n))], stdout=subprocess.DEVNULL)
        for n in to_create
    ]
    if any(k.wait() != 0 for k in keygens):
        raise errors.LabError("ssh-keygen -A failed for a lab host")
    all_names = sorted(set(existing) | set(to_create), key=host_index)
    # Every host knows the whole fleet by name; hosts already running get the new /etc/hosts too.
    for name in existing:
        with contextlib.suppress(OSError):
            _write(paths.host_root(name) / "etc/hosts", _etc_hosts(fleet_size))
    _write_known_hosts(paths, all_names)
    for name in to_create:
        to_wait[name] = _boot(paths, name)
    say(f"booting {', '.join(to_create) or 'nothing new'} (waiting for {', '.join(sorted(to_wait))})")
    ready = _wait_ready(paths, to_wait, time.monotonic() + READY_TIMEOUT)
    boot_seconds = time.monotonic() - boot_t0
    _write_inventory(paths, all_names)
    state = {"base": str(base_root), "hosts": all_names, "updated": time.time()}
    paths.state.write_text(json.dumps(state, indent=2) + "\n")
    for name in sorted(ready, key=host_index):
        say(f"  {name} {host_addr(host_index(name))} ready after {ready[name]:.2f} s")
    say(f"lab up: {len(all_names)} host(s) running; inventory {paths.inventory}")
    return _summary(paths, all_names, changed=True, seconds=time.monotonic() - t0, boot_seconds=boot_seconds)


def _summary(paths: Paths, names: list[str], changed: bool, seconds: float, boot_seconds: float | None = None) -> dict:
    return {
        "changed": changed,
        "seconds": round(seconds, 2),
        "boot_seconds": None if boot_seconds is None else round(boot_seconds, 2),
        "inventory": str(paths.inventory),
        "known_hosts": str(paths.known_hosts),
        "identity_file": str(paths.key),
        # Molecule's delegated driver: create.yml writes this list as molecule_instance_config.
        "instances": [
            {
                "instance": n,
                "address": host_addr(host_index(n)),
                "user": "root",
                "port": 22,
                "identity_file": str(paths.key),
            }
            for n in sorted(names, key=host_index)
        ],
    }


# ---------------------------------------------------------------------------------------------------------------
# down


def _lab_ssh_processes() -> list[tuple[int, list[str]]]:
    """ssh client processes with a TCP connection to a lab address (control masters included)."""
    lab_inodes = set()
    for table in ("/proc/net/tcp",):
        for line in _read(Path(table)).splitlines()[1:]:
            parts = line.split()
            rem_ip_hex = parts[2].split(":")[0]
            ip = socket.inet_ntoa(bytes.fromhex(rem_ip_hex)[::-1])
            if ip.startswith(NETWORK + "."):
                lab_inodes.add(parts[9])
    found = []
    if not lab_inodes:
        return found
    for pid in _pids():
        st = _stat(pid)
        if not st or st[0] != "ssh":
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in lab_inodes:
                found.append((pid, _cmdline(pid)))
                break
    return found


def close_control_masters(paths: Paths) -> int:
    """`ssh -O exit` every control master that talks to the lab (Ansible's, testinfra's, the plugin's)."""
    closed = 0
    sockets = set()
    if paths.control.is_dir():
        sockets |= {str(p) for p in paths.control.iterdir() if p.is_socket()}
    procs = _lab_ssh_processes()
    for _pid, argv in procs:
        title = " ".join(argv)
        m = re.match(r"ssh: (.+) \[mux\]", title)
        if m:
            sockets.add(m.group(1))
    for sock in sockets:
        if run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "kw-lab"], check=False, timeout=10).returncode == 0:
            closed += 1
        with contextlib.suppress(OSError):
            if Path(sock).is_socket():
                Path(sock).unlink()
    if procs:
        time.sleep(0.05)
    for pid, _argv in _lab_ssh_processes():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return closed


def _stop_processes(procs: dict[str, int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to nspawn is a clean poweroff of the host; SIGKILL what is still there after the timeout."""
    for pid in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_stat(p) for p in procs.values()):
        _reap()
        time.sleep(0.05)
    for pid in procs.values():
        if _stat(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Gone means reaped, not just a zombie: nspawn started by an earlier `up` is reaped by this machine's PID 1.
    reap_deadline = time.monotonic() + 5
    while any(Path(f"/proc/{p}").exists() for p in procs.values()) and time.monotonic() < reap_deadline:
        _reap()
        time.sleep(0.05)


def _reap() -> None:
    """Collect our own exited children (nspawn started by this process) so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _umount(mp: str) -> None:
    if run(["umount", mp], check=False).returncode != 0:
        run(["umount", "-l", mp], check=False)


def _rmdir_tree(path: Path) -> None:
    """rmdir a cgroup depth-first, killing any process still inside (only lab processes live there)."""
    if not path.is_dir():
        return
    for procs_file in sorted(path.rglob("cgroup.procs"), key=lambda p: -len(p.parts)):
        for pid in _read(procs_file).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for d in [*dirs, path]:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def down(say=print) -> dict:
    """Remove every process, namespace, interface, mount, overlay and cgroup of the lab, found by name/prefix."""
    errors.require_root()
    with _locked():
        return _down(say)


def _down(say) -> dict:
    paths = Paths()
    t0 = time.monotonic()
    closed = close_control_masters(paths)
    procs = nspawn_processes()
    _stop_processes(procs)
    for ns in netns_list():
        if ns.startswith(NAME_PREFIX):
            run(["ip", "netns", "del", ns], check=False)
    for name in links():
        if name.startswith(VETH_PREFIX):
            run(["ip", "link", "del", name], check=False)
    if BRIDGE in links():
        run(["ip", "link", "del", BRIDGE], check=False)
    lab_root = str(paths.root)
    for mp, fstype, opts in sorted(mounts(), key=lambda m: -len(m[0])):
        under_lab = mp == lab_root or mp.startswith(lab_root + "/")
        # a crash under another KEEPWARM_LAB_DIR still leaves overlays named kwlab-kw-lab-N
        stray = fstype == "overlay" and "/hosts/kw-lab-" in mp and "upperdir=" in opts
        if under_lab or stray:
            _umount(mp)
    shutil.rmtree(paths.hosts, ignore_errors=True)
    for mount_point in (paths.base_ro, paths.base_docker_ro):
        if mount_point.is_dir() and not is_mounted(mount_point):
            mount_point.rmdir()
    for h in cgroup_hierarchies():
        _rmdir_tree(h / CGROUP_PARENT)
    prop = Path("/run/systemd/nspawn/propagate")
    if prop.is_dir():
        for d in prop.glob(NAME_PREFIX + "*"):
            shutil.rmtree(d, ignore_errors=True)
    for f in (paths.state, paths.inventory, paths.known_hosts):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    shutil.rmtree(paths.control, ignore_errors=True)
    left = leftovers(paths)
    seconds = time.monotonic() - t0
    if any(left.values()):
        raise errors.LabError(f"down left things behind: {json.dumps({k: v for k, v in left.items() if v})}")
    say(
        f"lab down: stopped {len(procs)} host(s), closed {closed} SSH control master(s), nothing left ({seconds:.1f} s)"
    )
    return {"stopped": sorted(procs), "seconds": round(seconds, 2), "leftovers": left}
