"""The lab's own lifecycle through its CLI: up, idempotent up, grow, crash, status, down leaving nothing.

Names and addresses of the lab are fixed, so this test owns the whole fleet while it runs: it starts from
`down`, and if this session's `lab_hosts` fleet was running it brings that many hosts back up at the end. A lab
that somebody else started is never taken down: the test fails and says so. What "nothing left" means is
checked with the system's own tools (ps, ip, /proc/self/mountinfo, the cgroup tree), not with the lab's
discovery code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.pytest_plugin import SESSION, lab_cli, lab_status

pytestmark = pytest.mark.lab


def lab_root() -> Path:
    return Path(os.environ.get("KEEPWARM_LAB_DIR", "/var/lib/keepwarm-lab"))


def nspawn_pids() -> dict[str, int]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        pid, stat, args = line.split(None, 2)
        argv = args.split()
        if "systemd-nspawn" in argv[0] and "-M" in argv:
            found[argv[argv.index("-M") + 1]] = (int(pid), stat)
    return {name: pid for name, (pid, _stat) in found.items() if name.startswith("kw-lab-")}


def what_is_left() -> dict[str, list[str]]:
    ps = subprocess.run(["ps", "-ww", "-eo", "args="], capture_output=True, text=True, check=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    root = str(lab_root())
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob("**/keepwarm-lab") if p.is_dir()]
    hosts_dir = lab_root() / "hosts"
    return {
        "processes": [line for line in ps.splitlines() if "nspawn" in line and "kw-lab-" in line],
        "netns": [line for line in netns.splitlines() if "kw-lab" in line or "kwlab" in line],
        "links": [line.split(":")[1].strip() for line in links.splitlines() if "kwlab" in line],
        "mounts": [line for line in mountinfo if f" {root}/" in line or f" {root} " in line or "kwlab-" in line],
        "cgroups": cgroups,
        "overlays": [str(p) for p in hosts_dir.iterdir()] if hosts_dir.is_dir() else [],
    }


def up_json(count: int) -> dict:
    return json.loads(lab_cli("up", str(count), "--json").stdout)


def by_name(status: dict) -> dict[str, dict]:
    return {h["name"]: h for h in status["hosts"]}


def test_up_idempotent_grow_crash_status_down_leaves_nothing():
    running_before = [h["name"] for h in lab_status()["hosts"] if h["running"]]
    if running_before and not SESSION["owns_lab"]:
        pytest.fail(
            f"a lab this test session did not start is running ({', '.join(running_before)}); this test needs the "
            "machine's only fleet and would destroy it: run `python -m lab down` first (or deselect with -k)"
        )
    try:
        lab_cli("down")
        assert what_is_left() == {k: [] for k in what_is_left()}
        assert lab_cli("status", check=False).returncode == 3

        first = up_json(2)
        assert first["changed"] is True
        assert [i["instance"] for i in first["instances"]] == ["kw-lab-1", "kw-lab-2"]
        assert [i["address"] for i in first["instances"]] == ["198.18.0.11", "198.18.0.12"]
        assert {i["user"] for i in first["instances"]} == {"root"} and {i["port"] for i in first["instances"]} == {22}
        assert Path(first["identity_file"]).is_file() and Path(first["known_hosts"]).is_file()
        assert lab_cli("inventory").stdout.strip() == first["inventory"]
        st = lab_status()
        assert [(h["name"], h["state"], h["pid1_comm"]) for h in st["hosts"]] == [
            ("kw-lab-1", "running", "systemd"),
            ("kw-lab-2", "running", "systemd"),
        ]
        pids = nspawn_pids()
        assert set(pids) == {"kw-lab-1", "kw-lab-2"}
        for h in st["hosts"]:  # each host's systemd lives in its own cgroup, not a shared /payload
            assert f":/keepwarm-lab/{h['name']}/payload/" in Path(f"/proc/{h['pid1']}/cgroup").read_text()

        # A second `up` changes nothing: same processes, same host keys.
        known_hosts = Path(first["known_hosts"]).read_text()
        again = up_json(2)
        assert again["changed"] is False
        assert again["instances"] == first["instances"]
        assert nspawn_pids() == pids
        assert Path(first["known_hosts"]).read_text() == known_hosts

        # `up 3` with two running adds exactly one.
        grown = up_json(3)
        assert grown["changed"] is True
        assert [i["instance"] for i in grown["instances"]] == ["kw-lab-1", "kw-lab-2", "kw-lab-3"]
        pids3 = nspawn_pids()
        assert {k: pids3[k] for k in pids} == pids and "kw-lab-3" in pids3
        ssh = lab_cli("ssh", "kw-lab-3", "cat", "/proc/1/comm", "/etc/hostname")
        assert ssh.stdout.split() == ["systemd", "kw-lab-3"]
        assert "kw-lab-3 ansible_host=198.18.0.13" in Path(grown["inventory"]).read_text()
        # hosts that were already running learn the new name too
        assert lab_cli("ssh", "kw-lab-1", "getent", "hosts", "kw-lab-3").stdout.split() == ["198.18.0.13", "kw-lab-3"]

        # A crash: kw-lab-3's nspawn is killed outright. status tells the truth; up repairs just that host.
        os.kill(pids3["kw-lab-3"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "kw-lab-3" in nspawn_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        crashed = lab_cli("status", "--json", check=False)
        assert crashed.returncode == 1
        hosts = by_name(json.loads(crashed.stdout))
        assert hosts["kw-lab-3"]["state"] == "stopped" and hosts["kw-lab-3"]["running"] is False
        assert hosts["kw-lab-1"]["running"] and hosts["kw-lab-2"]["running"]
        repaired = up_json(3)
        assert repaired["changed"] is True
        assert all(h["running"] for h in lab_status()["hosts"])

        # Crash everything and lose the state file: down still finds and removes all of it.
        for pid in nspawn_pids().values():
            os.kill(pid, signal.SIGKILL)
        (lab_root() / "state.json").unlink()
        assert any(what_is_left().values())
        lab_cli("down")
        left = what_is_left()
        assert left == {k: [] for k in left}
        assert not (lab_root() / "inventory.ini").exists()
        assert lab_cli("inventory", check=False).returncode == 1
        assert lab_cli("status", check=False).returncode == 3
        # down on a lab that is down is fine too
        lab_cli("down")
    finally:
        if running_before:
            lab_cli("up", str(max(int(n.rsplit("-", 1)[1]) for n in running_before)))
