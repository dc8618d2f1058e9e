"""meta/runtime.yml's action group `keepwarm.ollama.api`: module_defaults set the connection once for every API
module, from the installed artifact, against a real emulator on loopback (no url in the tasks)."""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.request

import yaml
from conftest import ROOT, run, tool


def test_group_lists_exactly_the_modules_with_the_connection_options():
    runtime = yaml.safe_load((ROOT / "collection" / "meta" / "runtime.yml").read_text())
    group = set(runtime["action_groups"]["api"])
    with_connection = {
        p.stem
        for p in (ROOT / "collection" / "plugins" / "modules").glob("*.py")
        if "keepwarm.ollama.connection" in p.read_text()
    }
    assert group == with_connection


def test_module_defaults_group_sets_the_connection(installed, emulator, tmp_path):
    _collections, _cfg, env = installed
    playbook = tmp_path / "group.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Connection set once for the API modules
              hosts: localhost
              connection: local
              gather_facts: false
              module_defaults:
                group/keepwarm.ollama.api:
                  url: {emulator.url}
                  timeout: 60
                  use_proxy: false
                  headers:
                    X-Keepwarm-Test: group
              tasks:
                - name: Pin without a url of its own
                  keepwarm.ollama.ollama_pin:
                    name: llama3.2
                - name: Check without a url of its own
                  keepwarm.ollama.ollama_ps:
                    models: [llama3.2]
                  register: ps
                - name: The check saw the pinned model
                  ansible.builtin.assert:
                    that: ps.ok and ps.models | map(attribute='state') | list == ['forever']
            """
        )
    )
    proc = run(
        [tool("ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
        + [str(playbook)],
        cwd=tmp_path,
        env=env,
    )
    assert "failed=0" in proc.stdout
    with urllib.request.urlopen(f"{emulator.url}/api/ps", timeout=10) as resp:  # noqa: S310 - loopback emulator
        models = [m["name"] for m in json.load(resp)["models"]]
    assert models == ["llama3.2:latest"]
