"""Issue 12 case 8 on a real systemd (a lab host): what ollama_override and ollama_service_info report is what
systemd does with UnsetEnvironment=, EnvironmentFile=, the manager's set-environment and a same-named drop-in in a
higher-priority directory. Uses its own unit (kw-issue12-test.service, the emulator on 127.0.0.1:11498) so the lab's
ollama.service is left alone, and removes everything afterwards.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lab

UNIT = "kw-issue12-test.service"
UNIT_FILE = """[Unit]
Description=keepwarm issue 12 systemd edge cases (emulator on 127.0.0.1:11498)

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Environment="OLLAMA_HOST=127.0.0.1:11498"
"""
DIR = f"/etc/systemd/system/{UNIT}.d"
DROPIN = f"{DIR}/zz-keepwarm.conf"
MASK_DIR = f"/run/systemd/system.control/{UNIT}.d"
ENV_FILE = "/etc/kw-issue12.env"


@pytest.fixture
def unit(lab_hosts):
    host = lab_hosts.hosts[0]

    def sh(cmd: str, check: bool = True):
        return lab_hosts.ssh(host, cmd, check=check)

    sh(f"mkdir -p {DIR} && cat > /etc/systemd/system/{UNIT} <<'EOF'\n{UNIT_FILE}EOF")
    sh(f"systemctl daemon-reload && systemctl restart {UNIT}")
    yield host, sh
    sh(f"systemctl stop {UNIT}; rm -rf /etc/systemd/system/{UNIT} {DIR} {MASK_DIR} {ENV_FILE}", check=False)
    sh("systemctl unset-environment OLLAMA_NOHISTORY; systemctl daemon-reload", check=False)


def process_env(sh) -> dict:
    out = sh(f"tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value {UNIT})/environ").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("OLLAMA_"))


def test_systemd_edge_cases(lab_hosts, unit, ansible_module):
    host, sh = unit
    inv = str(lab_hosts.inventory)

    def module(name, args, **kw):
        return ansible_module(name, args, host=host, inventory=inv, **kw)

    def restart():
        sh(f"systemctl daemon-reload && systemctl restart {UNIT}")

    args = {"unit": UNIT, "keep_alive": -1, "environment": {"OLLAMA_NUM_PARALLEL": 2}}
    assert module("ollama_override", args).changed
    # EnvironmentFile= and the manager's environment reach the process; they are not a pending restart
    sh(f"printf 'OLLAMA_NOPRUNE=true\\n' > {ENV_FILE}")
    sh(f"printf '[Service]\\nEnvironmentFile={ENV_FILE}\\n' > {DIR}/10-envfile.conf")
    sh("systemctl set-environment OLLAMA_NOHISTORY=true")
    restart()
    env = process_env(sh)
    assert env["OLLAMA_NOPRUNE"] == "true" and env["OLLAMA_NOHISTORY"] == "true" and env["OLLAMA_KEEP_ALIVE"] == "-1"
    info = module("ollama_service_info", {"unit": UNIT})
    assert info.result["restart_pending"] is False, info.result["restart_reasons"]

    # UnsetEnvironment= in an EARLIER drop-in still removes the variable (applied last): reported, and real
    sh(f"printf '[Service]\\nUnsetEnvironment=OLLAMA_NUM_PARALLEL\\n' > {DIR}/05-unset.conf")
    run = module("ollama_override", args)
    assert not run.changed, run
    assert [c for c in run.result["conflicts"] if c.get("unset")] == [
        {"variable": "OLLAMA_NUM_PARALLEL", "path": f"{DIR}/05-unset.conf", "line": 2, "value": None, "wins": True,
         "unset": True}]  # fmt: skip
    assert "UnsetEnvironment=OLLAMA_NUM_PARALLEL" in run.stdout + run.stderr, run  # the warning
    restart()
    assert "OLLAMA_NUM_PARALLEL" not in process_env(sh)
    assert module("ollama_service_info", {"unit": UNIT}).result["restart_pending"] is False

    # a same-named drop-in in /run/systemd/system.control hides keepwarm's completely: reported, and real
    sh(f"mkdir -p {MASK_DIR} && printf '[Service]\\n' > {MASK_DIR}/zz-keepwarm.conf")
    masked = module("ollama_override", args)
    assert masked.result["masked_by"] == f"{MASK_DIR}/zz-keepwarm.conf", masked
    assert f"{MASK_DIR}/zz-keepwarm.conf masks {DROPIN}" in " ".join((masked.stdout + masked.stderr).split()), masked
    restart()
    assert "OLLAMA_KEEP_ALIVE" not in process_env(sh)
    sh(f"rm -rf {MASK_DIR}")

    # a drop-in another user owns is taken back
    sh(f"chown nobody {DROPIN}")
    owned = module("ollama_override", args)
    assert owned.changed and owned.result["ownership_fixed"], owned
    assert sh(f"stat -c %U:%G:%a {DROPIN}").stdout.strip() == "root:root:644"
