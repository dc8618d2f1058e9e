"""End-to-end on lab hosts over real SSH: systemd as PID 1, the installer's Ollama layout, a drop-in reaching
the running emulator's environment, and Ansible connecting with host key checking on."""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lab import base, fleet

pytestmark = pytest.mark.lab

ANSIBLE = Path(sys.executable).parent / "ansible"
REPO = Path(__file__).resolve().parents[2]

# Polls the emulator on the host until it answers (it may be restarting); prints the body of GET PATH.
HTTP_GET = """
import sys, time, urllib.request
deadline = time.monotonic() + 20
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:11434" + sys.argv[1], timeout=2) as r:
            print(r.status); print(r.read().decode()); break
    except OSError as exc:
        if time.monotonic() > deadline:
            raise SystemExit("no answer on 127.0.0.1:11434: %s" % exc)
        time.sleep(0.2)
"""


def http_get(lab_hosts, host: str, path: str) -> tuple[int, str]:
    out = lab_hosts.ssh(host, f"python3 -c {shlex.quote(HTTP_GET)} {shlex.quote(path)}").stdout
    status, _, body = out.partition("\n")
    return int(status), body


def main_pid(lab_hosts, host: str) -> int:
    return int(lab_hosts.ssh(host, "systemctl show -p MainPID --value ollama.service").stdout.strip())


def process_environ(lab_hosts, host: str, pid: int) -> dict[str, str]:
    raw = lab_hosts.ssh(host, f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def test_systemd_is_pid1_and_ollama_service_active(lab_hosts):
    assert len(lab_hosts.hosts) >= 2
    for host in lab_hosts.hosts:
        assert lab_hosts.ssh(host, "cat /proc/1/comm").stdout.strip() == "systemd"
        assert lab_hosts.ssh(host, "readlink /proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
        states = lab_hosts.ssh(host, "systemctl is-active multi-user.target ollama.service ssh.service").stdout
        assert states.split() == ["active", "active", "active"]
        assert lab_hosts.ssh(host, "hostname").stdout.strip() == host


def test_installer_layout(lab_hosts):
    """scripts/install.sh `configure_systemd`: user, group, home, unit, enabled, binary in /usr/local/bin."""
    host = lab_hosts.hosts[0]
    passwd = lab_hosts.ssh(host, "getent passwd ollama").stdout.strip().split(":")
    assert passwd[5:] == ["/usr/share/ollama", "/bin/false"]
    assert int(passwd[2]) < 1000  # useradd -r: a system user
    assert lab_hosts.ssh(host, "id -gn ollama").stdout.strip() == "ollama"
    assert "ollama" in lab_hosts.ssh(host, "id -nG root").stdout.split()
    unit = lab_hosts.ssh(host, "cat /etc/systemd/system/ollama.service").stdout
    assert unit == base.OLLAMA_UNIT
    assert 'Environment="PATH=' in unit and "OLLAMA_" not in unit
    assert lab_hosts.ssh(host, "systemctl is-enabled ollama.service").stdout.strip() == "enabled"
    mode = lab_hosts.ssh(host, "stat -c '%a %U' /usr/local/bin/ollama").stdout.split()
    assert mode == ["755", "root"]
    remote_sha = lab_hosts.ssh(host, "sha256sum /usr/local/bin/ollama").stdout.split()[0]
    assert remote_sha == hashlib.sha256(fleet._emulator_bytes()).hexdigest()
    user = lab_hosts.ssh(host, f"ps -o user= -p {main_pid(lab_hosts, host)}").stdout.strip()
    assert user == "ollama"


def test_emulator_answers_and_ollama_ps_works(lab_hosts):
    for host in lab_hosts.hosts:
        status, body = http_get(lab_hosts, host, "/")
        assert status == 200
        assert "Ollama is running" in body
        ps = lab_hosts.ssh(host, "ollama ps")
        # cmd/cmd.go ListRunningHandler: the table header (CONTEXT since v0.10.0)
        assert ps.stdout.splitlines()[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]


def test_dropin_daemon_reload_restart_reaches_process_environ(lab_hosts):
    """The issue's end-to-end proof: drop-in over SSH + daemon-reload + restart → /proc/<MainPID>/environ."""
    host = lab_hosts.hosts[-1]
    token = secrets.token_hex(8)
    dropin_dir = "/etc/systemd/system/ollama.service.d"
    dropin = f"{dropin_dir}/zz-lab-test.conf"
    content = f'[Service]\nEnvironment="KEEPWARM_LAB_PROBE={token}"\nEnvironment="OLLAMA_KEEP_ALIVE=-1"\n'
    before = main_pid(lab_hosts, host)
    assert "KEEPWARM_LAB_PROBE" not in process_environ(lab_hosts, host, before)
    try:
        lab_hosts.ssh(host, f"mkdir -p {dropin_dir} && printf %s {shlex.quote(content)} > {dropin}")
        lab_hosts.ssh(host, "systemctl daemon-reload && systemctl restart ollama.service")
        assert lab_hosts.ssh(host, "systemctl is-active ollama.service").stdout.strip() == "active"
        pid = main_pid(lab_hosts, host)
        assert pid not in (0, before)
        cmdline = lab_hosts.ssh(host, f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout.split()
        assert cmdline[-2:] == ["/usr/local/bin/ollama", "serve"]
        env = process_environ(lab_hosts, host, pid)
        assert env["KEEPWARM_LAB_PROBE"] == token
        assert env["OLLAMA_KEEP_ALIVE"] == "-1"
        assert env["PATH"] == base.INSTALLER_PATH  # the installer's Environment= line still applies
        shown = lab_hosts.ssh(host, "systemctl show -p Environment --value ollama.service").stdout
        assert f"KEEPWARM_LAB_PROBE={token}" in shown
        assert http_get(lab_hosts, host, "/")[0] == 200  # the restarted emulator serves
    finally:
        lab_hosts.ssh(host, f"rm -f {dropin} && systemctl daemon-reload && systemctl restart ollama.service")
    after = main_pid(lab_hosts, host)
    assert "KEEPWARM_LAB_PROBE" not in process_environ(lab_hosts, host, after)


def test_hosts_have_own_identity_and_know_each_other(lab_hosts):
    first, second = lab_hosts.hosts[:2]
    ids = {h: lab_hosts.ssh(h, "cat /etc/machine-id").stdout.strip() for h in (first, second)}
    assert len(ids[first]) == 32 and ids[first] != ids[second]
    keys = {h: lab_hosts.ssh(h, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for h in (first, second)}
    assert keys[first] != keys[second]
    assert keys[first] in lab_hosts.known_hosts.read_text()
    resolved = lab_hosts.ssh(first, f"getent hosts {second}").stdout.split()
    assert resolved[0] == lab_hosts.addresses[second]
    # host-to-host over the lab bridge: sshd of the second host answers the first
    banner = lab_hosts.ssh(
        first,
        "python3 -c \"import socket; s=socket.create_connection(('%s', 22), 5); print(s.recv(16).decode())\""
        % lab_hosts.addresses[second],
    ).stdout
    assert banner.startswith("SSH-2.0-")


def _ansible(inventory: Path, home: Path, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, ANSIBLE_HOME=str(home), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), **env)
    return subprocess.run(
        [str(ANSIBLE), "-i", str(inventory), "ollama_gpu", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        env=full,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_ansible_ping_with_the_written_inventory(lab_hosts, tmp_path):
    home = Path(os.environ.get("ANSIBLE_HOME", tmp_path / "ansible-home"))
    proc = _ansible(lab_hosts.inventory, home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in lab_hosts.hosts:
        assert f"{host} | SUCCESS" in proc.stdout
    assert proc.stdout.count('"ping": "pong"') == len(lab_hosts.hosts)


def test_ansible_refuses_hosts_missing_from_known_hosts(lab_hosts, tmp_path):
    """Host key checking is really on: the same inventory with an empty known_hosts cannot connect."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(lab_hosts.inventory.read_text().replace(str(lab_hosts.known_hosts), str(empty)))
    proc = _ansible(inventory, tmp_path / "home", ANSIBLE_SSH_ARGS="", ANSIBLE_HOST_KEY_CHECKING="True")
    assert proc.returncode != 0
    assert "UNREACHABLE" in proc.stdout
    assert "Host key verification failed" in proc.stdout + proc.stderr
