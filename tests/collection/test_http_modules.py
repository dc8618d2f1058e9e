"""ollama_pin and ollama_ps run by real Ansible against an Ollama server over real HTTP on loopback.

By default each test starts the emulator (time scale 60). With KEEPWARM_OLLAMA_URL set (`make test-real-ollama`)
the same tests target that real server: assertions on the emulator-only /emulator/events are skipped, the rest
run unchanged. KEEPWARM_OLLAMA_MODELS names two pulled models there (default "llama3.2,qwen2.5:7b").
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request

import pytest

pytestmark = pytest.mark.real_ollama

MODEL, OTHER = (os.environ.get("KEEPWARM_OLLAMA_MODELS") or "llama3.2,qwen2.5:7b").split(",")[:2]
PY38 = os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions/3.8.18/bin/python3.8")


def shown(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def post(url: str, path: str, body: dict, timeout: float = 600) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def ps(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/api/ps", timeout=30) as r:
        return json.loads(r.read())["models"]


def unload_all(url: str) -> None:
    for m in ps(url):
        post(url, "/api/generate", {"model": m["name"], "keep_alive": 0})


@pytest.fixture
def target(ollama_target):
    if ollama_target.real:
        unload_all(ollama_target.url)  # start from nothing loaded on the real server too
    yield ollama_target
    if ollama_target.real:
        unload_all(ollama_target.url)


def test_pin_check_load_idempotent(ansible_module, interpreter, target):
    args = {"url": target.url, "name": MODEL}
    check = ansible_module("ollama_pin", args, interpreter=interpreter, check=True, diff=True)
    assert not check.failed and check.changed, check
    assert check.result["action"] == "load" and check.result["request"]["keep_alive"] == -1
    assert '"loaded": false' in check.stdout and '"state": "forever"' in check.stdout  # --diff before/after
    assert ps(target.url) == []  # check mode sent nothing
    assert target.cold_starts() in (0, None)

    first = ansible_module("ollama_pin", args, interpreter=interpreter)
    assert not first.failed and first.changed, first
    assert first.result["action"] == "load"
    assert first.result["load_seconds"] > 0
    assert first.result["model"]["name"] == shown(MODEL) and first.result["model"]["state"] == "forever"

    second = ansible_module("ollama_pin", args, interpreter=interpreter)
    assert not second.failed and not second.changed, second
    assert second.result["action"] == "none" and second.result["request"] is None
    if target.emulator is not None:
        events = target.events()
        assert [(e["event"], e["model"]) for e in events] == [("load", shown(MODEL))], events

    checked = ansible_module("ollama_ps", {"url": target.url, "models": [MODEL]}, interpreter=interpreter)
    assert not checked.failed and checked.result["ok"] is True, checked
    (entry,) = checked.result["models"]
    assert entry["state"] == "forever" and entry["seconds_left"] is None
    assert entry["expires_at"].startswith(("23", "24"))  # now + MaxInt64 ns: a year near 2318


def test_repin_expiring_model_keeps_its_runner(ansible_module, interpreter, target):
    # a workload loaded the model with its own num_ctx and a finite keep-alive
    post(target.url, "/api/generate", {"model": MODEL, "keep_alive": "10m", "options": {"num_ctx": 8192}})
    before = [m for m in ps(target.url) if m["name"] == shown(MODEL)][0]
    ctx = before["context_length"]

    run = ansible_module("ollama_pin", {"url": target.url, "name": MODEL}, interpreter=interpreter)
    assert not run.failed and run.changed, run
    assert run.result["action"] == "repin"
    assert run.result["request"]["options"] == {"num_ctx": ctx}
    assert run.result["request"]["keep_alive"] == -1
    assert run.result["model"]["state"] == "forever"
    assert run.result["model"]["digest"] == before["digest"]
    if target.emulator is not None:
        assert target.cold_starts(shown(MODEL)) == 1  # the workload's load only: no reload from the re-pin
        assert not any(e["event"] == "reload" for e in target.events())


def test_expired_model_is_loaded_again(ansible_module, target):
    # keep_alive 12m in emulated time is 12 s real at time scale 60: long enough for two Ansible runs
    interpreter = PY38
    run = ansible_module("ollama_pin", {"url": target.url, "name": MODEL, "keep_alive": "12m"}, interpreter=interpreter)
    assert run.changed and run.result["model"]["state"] == "timed", run
    report = ansible_module(
        "ollama_ps", {"url": target.url, "models": [MODEL], "fail_on_problems": False}, interpreter=interpreter
    )
    assert report.result["ok"] is False and [p["reason"] for p in report.result["problems"]] == ["expiring"]
    if target.real:
        return  # waiting two real minutes is not worth it against a real server
    deadline = time.monotonic() + 60
    while ps(target.url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ps(target.url) == []
    again = ansible_module("ollama_pin", {"url": target.url, "name": MODEL}, interpreter=interpreter)
    assert again.result["action"] == "load" and again.result["model"]["state"] == "forever", again


def test_unload(ansible_module, interpreter, target):
    post(target.url, "/api/generate", {"model": MODEL, "keep_alive": -1})
    args = {"url": target.url, "name": MODEL, "state": "unloaded"}
    check = ansible_module("ollama_pin", args, interpreter=interpreter, check=True)
    assert check.changed and check.result["action"] == "unload" and len(ps(target.url)) == 1, check
    run = ansible_module("ollama_pin", args, interpreter=interpreter)
    assert run.changed and run.result["action"] == "unload", run
    assert ps(target.url) == []
    again = ansible_module("ollama_pin", args, interpreter=interpreter)
    assert not again.changed and again.result["action"] == "none", again


def test_ps_problems(ansible_module, interpreter, target):
    post(target.url, "/api/generate", {"model": MODEL, "keep_alive": -1})
    post(target.url, "/api/generate", {"model": OTHER, "keep_alive": "30m"})  # 30 s real at time scale 60
    args = {"url": target.url, "models": [MODEL, {"name": "nomic-embed-text"}], "allow_unlisted": False}
    failed = ansible_module("ollama_ps", args, interpreter=interpreter)
    assert failed.failed, failed
    got = sorted((p["model"], p["reason"]) for p in failed.result["problems"])
    assert got == [("nomic-embed-text:latest", "missing"), (shown(OTHER), "unexpected")]
    lines = failed.result["msg"].splitlines()
    assert len(lines) == 2 and all(line.startswith(target.url + ": ") for line in lines)

    report = ansible_module("ollama_ps", dict(args, fail_on_problems=False), interpreter=interpreter)
    assert not report.failed and report.result["ok"] is False
    states = {m["name"]: m["state"] for m in report.result["models"]}
    assert states == {shown(MODEL): "forever", shown(OTHER): "timed"}
    assert report.result["models"][0]["name"] == shown(MODEL)  # pinned first (sorted by expires_at)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize(
    "module, args, text",
    [
        ("ollama_pin", {"name": MODEL, "url": "127.0.0.1:11434"}, "no http:// or https:// scheme"),
        ("ollama_ps", {"url": "localhost:11434"}, "no http:// or https:// scheme"),
        ("ollama_pin", {"name": MODEL, "url": "http://127.0.0.1:%d" % _closed_port()}, "cannot reach Ollama"),
        ("ollama_ps", {"url": "http://127.0.0.1:%d" % _closed_port()}, "cannot reach Ollama"),
        ("ollama_pin", {"name": MODEL, "keep_alive": "1d"}, "Go durations have no day unit"),
        ("ollama_pin", {"name": MODEL, "keep_alive": 0}, "use state=unloaded"),
    ],
)
def test_errors(ansible_module, target, module, args, text):
    args = dict(args)
    args.setdefault("url", target.url)
    run = ansible_module(module, args, interpreter=PY38)
    assert run.failed and text in run.result.get("msg", ""), run
    assert ps(target.url) == []


def test_unknown_model_reports_server_text(ansible_module, target):
    run = ansible_module("ollama_pin", {"url": target.url, "name": "no-such-model:1b"}, interpreter=PY38)
    assert run.failed and "model 'no-such-model:1b' not found" in run.result["msg"], run
