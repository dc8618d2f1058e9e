"""ollama_override and ollama_service_info on a real systemd (a lab host), through real Ansible over SSH.

To leave the lab's own ollama.service alone (other tests share the fleet), the test installs a second unit,
kw-override-test.service, running the same emulator binary on 127.0.0.1:11499, and removes it afterwards.
"""

from __future__ import annotations

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import parse_show, parse_show_environment

pytestmark = pytest.mark.lab

UNIT = "kw-override-test.service"
UNIT_FILE = """[Unit]
Description=keepwarm ollama_override integration test (emulator on 127.0.0.1:11499)

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Environment="OLLAMA_HOST=127.0.0.1:11499"
"""
ADMIN_OVERRIDE = "[Service]\nEnvironment=OLLAMA_KEEP_ALIVE=1d\n"
TRICKY = "say \"hi\" 100% C:\\dir\\  two  spaces $HOME `x` 'q' "
DROPIN = f"/etc/systemd/system/{UNIT}.d/zz-keepwarm.conf"


@pytest.fixture
def lab_unit(lab_hosts):
    host = lab_hosts.hosts[0]

    def sh(cmd: str, check: bool = True):
        return lab_hosts.ssh(host, cmd, check=check)

    sh(f"mkdir -p /etc/systemd/system/{UNIT}.d")
    sh(f"cat > /etc/systemd/system/{UNIT} <<'EOF'\n{UNIT_FILE}EOF")
    sh(f"cat > /etc/systemd/system/{UNIT}.d/override.conf <<'EOF'\n{ADMIN_OVERRIDE}EOF")
    sh(f"systemctl daemon-reload && systemctl restart {UNIT}")
    yield host, sh
    sh(f"systemctl stop {UNIT}; rm -rf /etc/systemd/system/{UNIT} /etc/systemd/system/{UNIT}.d", check=False)
    sh("systemctl daemon-reload", check=False)


def show_environment(sh) -> dict:
    out = sh(f"systemctl show -p Environment -p NeedDaemonReload {UNIT}").stdout
    return dict(parse_show_environment(parse_show(out)["Environment"]))


def test_override_round_trip_on_systemd(lab_hosts, lab_unit, ansible_module):
    host, sh = lab_unit
    inv = str(lab_hosts.inventory)

    def module(name, args, **kw):
        return ansible_module(name, args, host=host, inventory=inv, **kw)

    # the admin's OLLAMA_KEEP_ALIVE=1d is read by Ollama as 5m, silently
    info = module("ollama_service_info", {"unit": UNIT})
    assert not info.failed, info
    assert info.result["active_state"] == "active" and info.result["main_pid"] > 0
    assert info.result["process_environment"]["OLLAMA_KEEP_ALIVE"] == "1d"
    ka = info.result["keep_alive"]
    assert (ka["raw"], ka["effective"], ka["ignored"], ka["forever"]) == ("1d", "5m", True, False), ka
    assert info.result["restart_pending"] is False

    args = {
        "unit": UNIT,
        "keep_alive": -1,
        "max_loaded_models": 1,
        "environment": {"OLLAMA_MODELS": TRICKY, "OLLAMA_NUM_PARALLEL": 2},
    }
    intended = {
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "OLLAMA_MODELS": TRICKY,
        "OLLAMA_NUM_PARALLEL": "2",
    }
    check = module("ollama_override", args, check=True, diff=True)
    assert check.changed and f"+++ after: {DROPIN}" in check.stdout, check
    assert sh(f"test -e {DROPIN}", check=False).returncode == 1

    first = module("ollama_override", args, diff=True)
    assert first.changed, first
    assert first.result["conflicts"] == [
        {
            "variable": "OLLAMA_KEEP_ALIVE",
            "path": f"/etc/systemd/system/{UNIT}.d/override.conf",
            "line": 2,
            "value": "1d",
            "wins": False,
        }
    ]
    assert sh(f"stat -c %a {DROPIN}").stdout.strip() == "644"
    second = module("ollama_override", args, diff=True)
    assert not second.changed and "+++ after" not in second.stdout, second

    # written but not applied: systemd wants a daemon-reload, the process still runs with 1d
    pending = module("ollama_service_info", {"unit": UNIT})
    assert pending.result["needs_daemon_reload"] is True and pending.result["restart_pending"] is True, pending

    sh(f"systemctl daemon-reload && systemctl restart {UNIT}")
    env = show_environment(sh)
    for name, value in intended.items():
        assert env[name] == value, (name, env)
    proc_env = sh(f"tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value {UNIT})/environ").stdout
    assert f"OLLAMA_MODELS={TRICKY}\n" in proc_env

    after = module("ollama_service_info", {"unit": UNIT})
    assert not after.failed, after
    assert after.result["needs_daemon_reload"] is False and after.result["restart_pending"] is False, after
    assert {k: after.result["environment"][k] for k in intended} == intended
    assert {k: after.result["process_environment"][k] for k in intended} == intended
    assert after.result["keep_alive"]["forever"] is True and after.result["keep_alive"]["effective"] == "forever"
    assert f"/etc/systemd/system/{UNIT}.d/zz-keepwarm.conf" in after.result["dropin_paths"]

    # a newline is refused and the file on the host stays as it was
    digest = sh(f"sha256sum {DROPIN}").stdout
    bad = module("ollama_override", dict(args, environment={"OLLAMA_MODELS": "x\nExecStartPre=/bin/false"}))
    assert bad.failed and "control character" in bad.result["msg"], bad
    assert sh(f"sha256sum {DROPIN}").stdout == digest

    gone = module("ollama_override", {"unit": UNIT, "state": "absent"})
    assert gone.changed and sh(f"test -e {DROPIN}", check=False).returncode == 1
