"""The issue 12 "Done when" fleet shape through the keepalive role's pin tasks, against the emulator on loopback.

`keepwarm_models` mixes a chat model, an embedding-only model and two tags of one blob (llama3.2:latest and
llama3.2:3b share a runner: lab/emulator catalogue aliases). The role's pin tasks (tasks_from: pin, the part that
needs no systemd) must pin all of them, report changed=0 on a second run, and cause no reload: the emulator's
scheduler events list one cold load per runner and nothing else. A client then reloads the chat model with its own
runner options and a short keep_alive; with those options declared (the workload's), the next run re-pins without a
reload and the run after that changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

from tests.collection.conftest import ANSIBLE, INTERPRETERS, REPO

PLAYBOOK = """
- name: Pin the fleet's models
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Pin through the keepalive role
      ansible.builtin.include_role:
        name: keepwarm.ollama.keepalive
        tasks_from: pin
    - name: Check every model is served and pinned
      keepwarm.ollama.ollama_ps:
        url: "{{ keepwarm_ollama_url }}"
        models: "{{ keepwarm_models }}"
        allow_unlisted: false
"""


def post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def run_play(tmp_path: Path, url: str, models: list) -> dict[str, int]:
    """ansible-playbook once; the PLAY RECAP counters of localhost (ok, changed, failed, ...)."""
    book = tmp_path / "pin.yml"
    book.write_text(PLAYBOOK)
    extra = {"keepwarm_ollama_url": url, "keepwarm_models": models,
             "ansible_python_interpreter": str(INTERPRETERS["py3.8"])}  # fmt: skip
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("OLLAMA_HOST", None)
    playbook = str(Path(ANSIBLE).with_name("ansible-playbook")) if os.sep in ANSIBLE else "ansible-playbook"
    proc = subprocess.run([playbook, "-i", "localhost,", str(book), "-e", json.dumps(extra)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = re.search(r"^localhost\s*:\s*(.*)$", proc.stdout, re.MULTILINE)
    assert recap, proc.stdout[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}


def cold_loads(emu) -> list[tuple[str, str]]:
    return sorted((e["event"], e["model"]) for e in emu.events() if e["event"] in ("load", "reload"))


def test_mixed_fleet_pins_idempotently_without_reloads(emulator, tmp_path):
    models = ["llama3.2:latest", "llama3.2:3b", "nomic-embed-text", {"name": "qwen2.5:7b"}]
    first = run_play(tmp_path, emulator.url, models)
    assert first["changed"] == 1 and first["failed"] == 0, first  # the pin loop task
    loaded = [("load", "llama3.2:latest"), ("load", "nomic-embed-text:latest"), ("load", "qwen2.5:7b")]
    assert cold_loads(emulator) == loaded
    second = run_play(tmp_path, emulator.url, models)
    assert second["changed"] == 0, second
    assert cold_loads(emulator) == loaded  # no reload, no second runner for the second tag

    # a client loads the chat model with its own runner options and keep_alive: that reload is the client's
    post(emulator.url, "/api/generate", {"model": "qwen2.5:7b", "keep_alive": "10m", "options": {"num_batch": 1024}})
    assert cold_loads(emulator) == sorted(loaded + [("reload", "qwen2.5:7b")])
    workload = ["llama3.2:latest", "llama3.2:3b", "nomic-embed-text", {"name": "qwen2.5:7b",
                                                                          "options": {"num_batch": 1024}}]  # fmt: skip
    third = run_play(tmp_path, emulator.url, workload)
    assert third["changed"] == 1, third  # the pin loop: the re-pin of qwen2.5:7b
    fourth = run_play(tmp_path, emulator.url, workload)
    assert fourth["changed"] == 0, fourth
    assert cold_loads(emulator) == sorted(loaded + [("reload", "qwen2.5:7b")])  # the re-pin reloaded nothing
