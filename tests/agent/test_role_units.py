"""Issue 13 items 1 and 10 for the heartbeat role, without a lab host: the units it renders by default (real Ansible,
`ansible.builtin.template` on localhost) and the preflight probe it runs with the target's Python (real interpreters).
The lab scenarios (molecule default, rogue-client) run the same units under systemd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import PY39, ROOT

ROLE = ROOT / "roles" / "heartbeat"
PY38 = "/root/.pyenv/versions/3.8.18/bin/python3.8"

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{role}/defaults/main.yml, {role}/vars/main.yml]
  vars:
    keepwarm_models: [llama3.2]
  tasks:
    - ansible.builtin.template:
        src: {role}/templates/keepwarm-heartbeat.service.j2
        dest: {out}/{{{{ item.name }}}}
        mode: "0644"
      loop:
        - {{name: watch.service, mode: watch}}
        - {{name: once.service, mode: timer}}
      vars:
        heartbeat_mode: "{{{{ item.mode }}}}"
    - ansible.builtin.copy:
        content: "{{{{ _heartbeat_config | ansible.builtin.to_nice_json(indent=2) }}}}"
        dest: "{out}/heartbeat.json"
        mode: "0644"
      vars:  # strings, as --extra-vars key=value gives them
        heartbeat_poll: "1"
        heartbeat_interval: "15"
        heartbeat_request_timeout: "7"
"""


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("units")
    play = out / "play.yml"
    play.write_text(PLAYBOOK.format(role=ROLE, out=out))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-e",
         f"ansible_python_interpreter={sys.executable}", str(play)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = {p.name: p.read_text() for p in out.glob("*.service")}
    files["heartbeat.json"] = (out / "heartbeat.json").read_text()
    return files


def test_watch_is_the_default_mode():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert defaults["heartbeat_mode"] == "watch" == specs["heartbeat_mode"]["default"]
    assert defaults["heartbeat_poll"] == 5 == specs["heartbeat_poll"]["default"]


def test_watch_unit_is_notify_with_watchdog(units):
    lines = units["watch.service"].splitlines()
    assert "Type=notify" in lines and "NotifyAccess=main" in lines and "Restart=always" in lines
    assert "RestartPreventExitStatus=2" in lines  # a bad config is not retried every 5 s
    watchdog = next(x for x in lines if x.startswith("WatchdogSec="))
    # a poll's worst case: /api/ps with retries (max(poll, 2) s + request_timeout) and a /api/show: 2*(2*10+5)+30
    assert watchdog == "WatchdogSec=80"
    exec_start = next(x for x in lines if x.startswith("ExecStart="))
    assert exec_start.split()[1:3] == ["-I", "/usr/local/lib/keepwarm/ollama-heartbeat"]
    assert exec_start.endswith(" watch")
    assert any(x.startswith("TimeoutStopSec=") for x in lines)


def test_timer_unit_runs_once_from_the_compiled_tree(units):
    lines = units["once.service"].splitlines()
    assert "Type=oneshot" in lines and not any(x.startswith("WatchdogSec=") for x in lines)
    exec_start = next(x for x in lines if x.startswith("ExecStart="))
    assert "-I /usr/local/lib/keepwarm/ollama-heartbeat " in exec_start and exec_start.endswith(" once")


def probe_script() -> str:
    tasks = yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text())
    (task,) = [t for t in tasks if t.get("name", "").startswith("Probe the target's Python")]
    argv = task["ansible.builtin.command"]["argv"]
    assert argv[1:3] == ["-I", "-c"]
    return argv[3]


def probe(python: str, url: str, allow: list[str]) -> dict:
    proc = subprocess.run([python, "-I", "-c", probe_script(), url, json.dumps(allow)], capture_output=True,
                          text=True, check=True, timeout=30)  # fmt: skip
    return json.loads(proc.stdout)


def test_probe_reports_an_old_python():
    out = probe(PY38, "http://127.0.0.1:11434", ["localhost"])
    assert out["python"].startswith("3.8.") and out["errors"] == []
    assert probe(PY39, "http://127.0.0.1:11434", ["localhost"])["python"].startswith("3.9.")
    # the role asserts on that version
    assert "is version('3.9', '>=')" in (ROLE / "tasks" / "preflight.yml").read_text()


@pytest.mark.parametrize(
    ("url", "allow", "text"),
    [
        ("http://127.0.0.1:11434", ["ollama.internal"], "not an IP address or prefix"),
        ("http://192.0.2.7:11434", ["localhost"], "192.0.2.7, which heartbeat_ip_address_allow"),
        ("http://[2001:db8::7]:11434", ["192.0.2.0/24"], "2001:db8::7"),
        ("http://does-not-resolve.invalid:11434", ["any"], "does not resolve"),
    ],
    ids=["host-name-entry", "not-covered", "ipv6-not-covered", "unresolvable"],
)
def test_probe_refuses_what_systemd_would_drop_or_deny(url, allow, text):
    errors = probe(sys.executable, url, allow)["errors"]
    assert any(text in e for e in errors), errors


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:11434", ["localhost"]),
        ("http://192.0.2.7:11434", ["192.0.2.0/24"]),
        ("http://[2001:db8::7]:11434", ["2001:db8::/32"]),
        ("http://localhost:11434", ["localhost"]),
    ],
)
def test_probe_accepts_covering_entries(url, allow):
    assert probe(sys.executable, url, allow)["errors"] == []


def test_probe_wants_the_resolver_for_a_name(tmp_path):
    """A name (here this host's own, from /etc/hosts) needs the resolvers in /etc/resolv.conf allowed too."""
    import socket

    host = socket.gethostname()
    address = socket.getaddrinfo(host, None)[0][4][0]
    resolvers = [
        line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines() if line.startswith("nameserver")
    ]
    if not resolvers or host == "localhost":
        pytest.fail("this test needs a nameserver in /etc/resolv.conf and a host name other than localhost")
    errors = probe(sys.executable, f"http://{host}:11434", ["localhost", address])["errors"]
    assert any("resolver" in e and resolvers[0] in e for e in errors), errors
    assert probe(sys.executable, f"http://{host}:11434", ["localhost", address, *resolvers])["errors"] == []


def test_config_from_string_variables_is_accepted_by_the_agent(units, tmp_path):
    """heartbeat_poll=1 from `--extra-vars key=value` is the string "1": the role writes numbers for the agent."""
    from heartbeat_agent._config import load_config

    path = tmp_path / "heartbeat.json"
    path.write_text(units["heartbeat.json"])
    config = load_config(str(path), {})
    assert (config.poll, config.interval, config.request_timeout) == (1.0, 15.0, 7.0)
    assert [m.key for m in config.models] == ["llama3.2:latest"]
