"""playbooks/pin.yml and the heartbeat role's watch mode, run for real on ONE lab host.

Everything is checked from outside keepwarm's own modules: /api/ps and /emulator/events read on the host with its
own python3 (no curl there), unit state with `systemctl is-active` / `is-enabled`, unit files with `test -e`.
The tests run in file order on one host: converge (site.yml with heartbeat_mode=timer), pin.yml unload/pin,
timer -> watch (the role's default), watch -> timer; the module fixture finishes with rollback.yml so the host is left
as the lab booted it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
MODEL = "llama3.2"
MODEL_KEY = "llama3.2:latest"
TIMER = "keepwarm-heartbeat.timer"
ONESHOT = "keepwarm-heartbeat.service"
WATCH = "keepwarm-heartbeat-watch.service"
UNIT_DIR = "/etc/systemd/system"

# One HTTP request to the emulator on the host (METHOD PATH [JSON BODY]); prints the response body.
HTTP = """
import sys, urllib.request
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request("http://127.0.0.1:11434" + sys.argv[2], data=data, method=sys.argv[1],
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as r:
    sys.stdout.write(r.read().decode())
"""


def api(lab_hosts, host: str, method: str, path: str, body: dict | None = None) -> dict:
    args = [method, path] + ([json.dumps(body)] if body is not None else [])
    cmd = f"python3 -c {shlex.quote(HTTP)} " + " ".join(shlex.quote(a) for a in args)
    out = lab_hosts.ssh(host, cmd).stdout
    return json.loads(out) if out.strip() else {}


def loaded(lab_hosts, host: str) -> dict[str, dict]:
    """/api/ps entries by name."""
    return {m["name"]: m for m in api(lab_hosts, host, "GET", "/api/ps")["models"]}


def pinned_forever(entry: dict | None) -> bool:
    # A negative keep_alive becomes MaxInt64 ns (api/types.go Duration.UnmarshalJSON), and /api/ps shows
    # expiresAt = now + sessionDuration (server/sched.go loadedModels): a year around 2316-2318.
    return entry is not None and int(entry["expires_at"][:4]) > 2200


def events(lab_hosts, host: str) -> list[dict]:
    return [e for e in api(lab_hosts, host, "GET", "/emulator/events")["events"] if e["model"] == MODEL_KEY]


def unit_state(lab_hosts, host: str, unit: str) -> tuple[str, str, bool]:
    """(is-active, is-enabled, unit file exists)."""
    active = lab_hosts.ssh(host, f"systemctl is-active {unit}", check=False).stdout.strip()
    enabled = lab_hosts.ssh(host, f"systemctl is-enabled {unit}", check=False).stdout.strip()
    exists = lab_hosts.ssh(host, f"test -e {UNIT_DIR}/{unit}", check=False).returncode == 0
    return active, enabled, exists


def playbook(lab_hosts, host: str, name: str, *extra: str) -> dict[str, int]:
    """Run playbooks/NAME against HOST only; return its PLAY RECAP counters (the run must succeed)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(PLAYBOOK), "-i", str(lab_hosts.inventory), "--limit", host, str(REPO / "playbooks" / name), *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    recap = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", proc.stdout.split("PLAY RECAP")[-1], re.MULTILINE)
    assert recap, proc.stdout
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}


def wait_for(predicate, timeout: float, step: float = 0.5):
    """Poll PREDICATE until it returns something truthy (returned) or TIMEOUT seconds pass (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture(scope="module")
def host(lab_hosts):
    """The last lab host, converged with site.yml in timer mode; rolled back at the end."""
    name = lab_hosts.hosts[-1]
    recap = playbook(lab_hosts, name, "site.yml", "-e", "heartbeat_mode=timer")
    assert recap["failed"] == 0 and recap["unreachable"] == 0
    yield name
    playbook(lab_hosts, name, "rollback.yml")
    for unit in (TIMER, ONESHOT, WATCH):
        assert unit_state(lab_hosts, name, unit)[2] is False


def test_site_converges_to_timer_mode(lab_hosts, host):
    assert unit_state(lab_hosts, host, TIMER)[:2] == ("active", "enabled")
    assert unit_state(lab_hosts, host, WATCH)[2] is False
    assert pinned_forever(loaded(lab_hosts, host).get(MODEL_KEY))


def test_pin_playbook_unloads_then_pins_forever(lab_hosts, host):
    # The timer's beat would re-pin llama3.2 within heartbeat_interval (20 s): stop it (and any beat in flight) so
    # the unload is observed without a race, and start it again at the end.
    lab_hosts.ssh(host, f"systemctl stop {TIMER} {ONESHOT}")
    try:
        api(lab_hosts, host, "DELETE", "/emulator/events")
        recap = playbook(lab_hosts, host, "pin.yml", "-e", json.dumps({"pin_models": [MODEL], "pin_state": "unloaded"}))
        assert recap["changed"] == 1 and recap["failed"] == 0
        assert MODEL_KEY not in loaded(lab_hosts, host)
        # keep_alive 0 with an empty prompt unloads without loading (server/routes.go GenerateHandler; the scheduler's
        # expireRunner in server/sched.go).
        assert [(e["event"], e["reason"]) for e in events(lab_hosts, host)] == [("unload", "keep_alive_0")]

        recap = playbook(lab_hosts, host, "pin.yml", "-e", json.dumps({"pin_models": [MODEL], "pin_state": "pinned"}))
        assert recap["changed"] == 1 and recap["failed"] == 0
        assert pinned_forever(loaded(lab_hosts, host).get(MODEL_KEY))
        assert [e["event"] for e in events(lab_hosts, host)] == ["unload", "load"]

        recap = playbook(lab_hosts, host, "pin.yml", "-e", json.dumps({"pin_models": [MODEL], "pin_state": "pinned"}))
        assert recap["changed"] == 0 and recap["failed"] == 0
        assert [e["event"] for e in events(lab_hosts, host)] == ["unload", "load"]  # no reload, no second load
    finally:
        lab_hosts.ssh(host, f"systemctl start {TIMER}")
    assert unit_state(lab_hosts, host, TIMER)[0] == "active"


def test_site_switches_to_watch_mode_and_watch_repins(lab_hosts, host):
    recap = playbook(lab_hosts, host, "site.yml", "-e", "heartbeat_mode=watch")
    assert recap["changed"] > 0 and recap["failed"] == 0
    assert unit_state(lab_hosts, host, WATCH) == ("active", "enabled", True)
    for unit in (TIMER, ONESHOT):
        active, enabled, exists = unit_state(lab_hosts, host, unit)
        assert (active, exists) == ("inactive", False), unit
        assert enabled != "enabled", unit
    assert pinned_forever(loaded(lab_hosts, host).get(MODEL_KEY))

    # A client unloads the model: keep_alive 0 with an empty prompt (server/routes.go GenerateHandler).
    api(lab_hosts, host, "DELETE", "/emulator/events")
    reply = api(lab_hosts, host, "POST", "/api/generate", {"model": MODEL, "keep_alive": 0})
    assert reply["done_reason"] == "unload"
    # The watch loop polls /api/ps every 5 s (agent default `poll`) and loads the model again.
    repinned = wait_for(lambda: pinned_forever(loaded(lab_hosts, host).get(MODEL_KEY)), timeout=20)
    assert repinned, loaded(lab_hosts, host)
    kinds = [(e["event"], e["reason"]) for e in events(lab_hosts, host)]
    assert kinds[0] == ("unload", "keep_alive_0") and kinds[1][0] == "load", kinds
    journal = lab_hosts.ssh(host, f"journalctl -u {WATCH} --no-pager -o cat").stdout
    assert "action=watch" in journal, journal

    # watch is the role's default (issue 13): a plain site.yml keeps the watch service and changes nothing.
    recap = playbook(lab_hosts, host, "site.yml")
    assert recap["changed"] == 0 and recap["failed"] == 0
    assert unit_state(lab_hosts, host, WATCH) == ("active", "enabled", True)


def test_site_switches_back_to_timer_mode(lab_hosts, host):
    recap = playbook(lab_hosts, host, "site.yml", "-e", "heartbeat_mode=timer")
    assert recap["changed"] > 0 and recap["failed"] == 0
    active, enabled, exists = unit_state(lab_hosts, host, WATCH)
    assert (active, exists) == ("inactive", False)
    assert enabled != "enabled"
    assert unit_state(lab_hosts, host, TIMER) == ("active", "enabled", True)
    assert lab_hosts.ssh(host, f"test -e {UNIT_DIR}/{ONESHOT}", check=False).returncode == 0
    assert pinned_forever(loaded(lab_hosts, host).get(MODEL_KEY))

    recap = playbook(lab_hosts, host, "site.yml", "-e", "heartbeat_mode=timer")
    assert recap["changed"] == 0 and recap["failed"] == 0
