"""One connection option set: every API call the keepalive role makes (the modules and the uri wait) passes
validate_certs, headers, ca_path and use_proxy, and the uri wait never sends loopback through a proxy."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
import yaml
from conftest import ROOT, VENV_BIN, run, tool

API_TASKS = {"keepwarm.ollama.ollama_pin", "keepwarm.ollama.ollama_ps", "ansible.builtin.uri"}
OPTION_SET = {"validate_certs", "headers", "ca_path", "use_proxy"}


def tasks_in(path):
    for task in yaml.safe_load(path.read_text()) or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from (t for t in task.get(key, []))


@pytest.mark.parametrize("path", sorted((ROOT / "roles" / "keepalive" / "tasks").glob("*.yml")), ids=lambda p: p.name)
def test_keepalive_api_tasks_take_the_whole_option_set(path):
    for task in tasks_in(path):
        for module in API_TASKS & set(task):
            missing = OPTION_SET - set(task[module])
            assert not missing, f"{path.name}: {task['name']} lacks {sorted(missing)}"


def test_option_set_is_documented_and_checked():
    spec = yaml.safe_load((ROOT / "roles" / "keepalive" / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    for name in ("validate_certs", "headers", "ca_path", "use_proxy"):
        assert f"keepalive_{name}" in options
    readme = (ROOT / "roles" / "keepalive" / "README.md").read_text()
    assert "`keepalive_ca_path`" in readme and "`keepalive_use_proxy`" in readme


@pytest.mark.parametrize(
    ("url", "use_proxy", "expected"),
    [
        ("http://127.0.0.1:11434", True, False),
        ("http://127.1.2.3:11434", True, False),
        ("http://localhost:11434", True, False),
        ("http://[::1]:11434", True, False),
        ("http://ollama.localhost:11434", True, False),  # the rulebook's answer (_urls.proxy_for)
        ("https://ollama.example.org", True, True),
        ("https://ollama.example.org", False, False),
    ],
)
def test_uri_wait_never_proxies_loopback(url, use_proxy, expected, tmp_path):
    """The role's own expression (vars/main.yml, the filter keepwarm.ollama.may_use_proxy), evaluated by Ansible."""
    playbook = tmp_path / "p.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Evaluate _keepalive_uri_use_proxy
              hosts: localhost
              connection: local
              gather_facts: false
              vars:
                keepalive_url: "{url}"
                keepalive_use_proxy: {str(use_proxy).lower()}
              tasks:
                - name: Load the role's vars
                  ansible.builtin.include_vars: {ROOT / "roles" / "keepalive" / "vars" / "main.yml"}
                - name: Check
                  ansible.builtin.assert:
                    that: (_keepalive_uri_use_proxy | bool) == {str(expected).lower()}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env['PATH']}", ANSIBLE_CONFIG=str(tmp_path / "none.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))  # fmt: skip
    run(
        [tool("ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
        + [str(playbook)],
        cwd=tmp_path,
        env=env,
    )
