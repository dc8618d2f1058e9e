"""The zipapp on a lab host (systemd-nspawn Debian 12, the emulator as ollama.service), with the host's python3."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from heartbeat_agent import classify

REMOTE = "/root/ollama-heartbeat.pyz"
PS = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:11434/api/ps', timeout=10).read().decode())"


def copy_to(lab_hosts, host: str, data: bytes, dest: str) -> None:
    """Copy over the lab's own SSH settings (its key and pinned known_hosts), streaming into `cat`."""
    proc = subprocess.run(
        [*lab_hosts.ssh_args(host), f"cat > {dest}.tmp && mv {dest}.tmp {dest}"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.lab
def test_zipapp_pins_a_model_on_a_lab_host(lab_hosts, zipapp):
    host = lab_hosts.hosts[0]
    copy_to(lab_hosts, host, zipapp.read_bytes(), REMOTE)
    remote_sum = lab_hosts.ssh(host, f"sha256sum {REMOTE}").stdout.split()[0]
    assert remote_sum == hashlib.sha256(zipapp.read_bytes()).hexdigest()
    once = lab_hosts.ssh(
        host, f"python3 {REMOTE} --url http://127.0.0.1:11434 --model llama3.2 once", check=False, timeout=120
    )
    assert once.returncode == 0, once.stdout + once.stderr
    assert "Traceback" not in once.stdout + once.stderr
    ps = json.loads(lab_hosts.ssh(host, "python3", "-c", PS).stdout)
    states = {m["name"]: classify(m["expires_at"]).state for m in ps["models"]}
    assert states.get("llama3.2:latest") == "forever"
    again = lab_hosts.ssh(host, f"python3 {REMOTE} --url http://127.0.0.1:11434 --model llama3.2 once", check=False)
    assert again.returncode == 0 and "posts=0" in again.stdout
    status = lab_hosts.ssh(host, f"python3 {REMOTE} --url http://127.0.0.1:11434 --model llama3.2 status")
    assert status.stdout.splitlines()[1].split()[:4] == ["llama3.2:latest", "yes", "yes", "forever"]
