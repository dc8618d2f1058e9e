"""ollama_ps: descriptions and problems, on the shared /api/ps bodies of tests/data/ps_samples.json."""

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import parse_expires_at
from ansible_collections.keepwarm.ollama.plugins.module_utils._ps import describe, problems, wanted_names
from ansible_collections.keepwarm.ollama.plugins.modules import ollama_ps

from ...conftest import ModuleFail

URL = "http://127.0.0.1:11434"


@pytest.fixture
def bodies(samples):
    now = parse_expires_at(samples["now"])
    return [[describe(m, now) for m in r["body"]["models"]] for r in samples["responses"]]


def test_describe(bodies):
    pinned = bodies[1][0]
    assert pinned["name"] == "qwen2.5:7b" and pinned["state"] == "forever" and pinned["gpu_fraction"] == 1.0
    partial = bodies[1][1]
    assert partial["state"] == "timed" and partial["seconds_left"] == pytest.approx(299.83753)
    assert partial["gpu_fraction"] == 0.48 and partial["context_length"] == 4096


def test_all_good(bodies):
    assert problems(URL, bodies[0], ["llama3.2"], require_gpu=True, allow_unlisted=False) == []


def test_reasons(bodies):
    found = problems(URL, bodies[1], ["qwen2.5:7b", "llama3.1:70b", "llama3.2"], require_gpu=True)
    assert [(p["model"], p["reason"]) for p in found] == [
        ("llama3.1:70b", "expiring"),
        ("llama3.1:70b", "offloaded"),
        ("llama3.2:latest", "missing"),
    ]
    assert found[0]["message"].startswith(URL + ": llama3.1:70b (expires_at 2026-08-15T12:04:59.83753Z)")


def test_unexpected_only_when_unlisted_not_allowed(bodies):
    assert problems(URL, bodies[1], ["qwen2.5:7b"]) == []
    found = problems(URL, bodies[1], wanted_names([{"name": "qwen2.5:7b"}]), allow_unlisted=False)
    assert [(p["model"], p["reason"]) for p in found] == [("llama3.1:70b", "unexpected")]


def test_wanted_names():
    assert wanted_names(["a", {"name": "b", "options": {"num_ctx": 1}}]) == ["a", "b"]
    with pytest.raises(ValueError):
        wanted_names([{"options": {}}])


def test_main_fails_with_one_line_per_problem(run_module, fake_server, samples):
    fake_server.route("GET", "/api/ps", payload=samples["responses"][2]["body"])
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_ps.main, dict(url=fake_server.url, models=["llama3.2", "qwen2.5:7b"]))
    lines = exc.value.result["msg"].splitlines()
    assert len(lines) == 2 and all("missing" in x or "not loaded" in x for x in lines)
    assert exc.value.result["ok"] is False


def test_main_report_only(run_module, fake_server, samples):
    fake_server.route("GET", "/api/ps", payload=samples["responses"][0]["body"])
    result = run_module(ollama_ps.main, dict(url=fake_server.url, models=["llama3"], fail_on_problems=False))
    assert result["ok"] is False and result["problems"][0]["reason"] == "missing"
    assert result["models"][0]["state"] == "forever"
