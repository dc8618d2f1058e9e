"""ollama_pin: the decision table (plan) and main() over HTTP against a scripted loopback server."""

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import DurationError
from ansible_collections.keepwarm.ollama.plugins.modules import ollama_pin

from ...conftest import ModuleFail

FOREVER_AT = "2318-11-10T23:47:16.854775807Z"


def entry(state, ctx=4096, expires_at=None):
    return {
        "name": "llama3.2:latest",
        "state": state,
        "context_length": ctx,
        "expires_at": expires_at or FOREVER_AT,
        "seconds_left": None if state == "forever" else 100.0,
    }


def params(**kw):
    p = dict(name="llama3.2", state="pinned", keep_alive=-1, options=None)
    p.update(kw)
    return p


def test_pinned_forever_means_no_request():
    assert ollama_pin.plan(params(), entry("forever")) == ("none", None)


def test_expiring_repins_with_the_runner_context():
    action, body = ollama_pin.plan(params(), entry("timed", ctx=8192))
    assert action == "repin"
    assert body == {"model": "llama3.2", "keep_alive": -1, "stream": False, "options": {"num_ctx": 8192}}


def test_explicit_options_win():
    action, body = ollama_pin.plan(params(options={"num_ctx": 2048, "num_gpu": 99}), entry("timed", ctx=8192))
    assert body["options"] == {"num_ctx": 2048, "num_gpu": 99}


def test_pinned_with_another_num_ctx_is_reloaded():
    assert ollama_pin.plan(params(options={"num_ctx": 8192}), entry("forever", ctx=4096))[0] == "reload"
    assert ollama_pin.plan(params(options={"num_ctx": 4096}), entry("forever", ctx=4096))[0] == "none"


def test_not_loaded_loads():
    action, body = ollama_pin.plan(params(options={"num_ctx": 8192}), None)
    assert action == "load" and body["options"] == {"num_ctx": 8192}


@pytest.mark.parametrize("value, sent", [(-1, -1), ("-1", -1), ("-1m", "-1m"), ("24h", "24h"), (3600, 3600)])
def test_keep_alive_forms(value, sent):
    _action, body = ollama_pin.plan(params(keep_alive=value), None)
    assert body["keep_alive"] == sent and type(body["keep_alive"]) is type(sent)


def test_finite_keep_alive_repins_even_a_forever_model():
    assert ollama_pin.plan(params(keep_alive="24h"), entry("forever"))[0] == "repin"


@pytest.mark.parametrize("value", [0, "0", "0s", "forever", "1d", True])
def test_bad_keep_alive(value):
    with pytest.raises(DurationError):
        ollama_pin.plan(params(keep_alive=value), None)


def test_unload_plan():
    assert ollama_pin.plan(params(state="unloaded"), None) == ("none", None)
    assert ollama_pin.plan(params(state="unloaded"), entry("forever"))[1]["keep_alive"] == 0


def ps_body(expires_at, ctx=4096):
    return {
        "models": [
            {
                "name": "llama3.2:latest",
                "model": "llama3.2:latest",
                "size": 100,
                "digest": "a" * 64,
                "details": {},
                "expires_at": expires_at,
                "size_vram": 100,
                "context_length": ctx,
            }
        ]
    }


def test_main_already_pinned_sends_only_ps(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload=ps_body(FOREVER_AT))
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2"))
    assert result["changed"] is False and result["action"] == "none"
    assert [r["path"] for r in fake_server.requests] == ["/api/ps"]
    assert result["model"]["state"] == "forever"


SHOW = {"modelfile": "FROM /m/blobs/sha256-1\n", "capabilities": ["completion"]}


def test_main_check_mode_sends_only_reads(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": []})
    fake_server.route("POST", "/api/show", payload=SHOW)
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2"), check_mode=True, diff=True)
    assert result["changed"] is True and result["action"] == "load"
    assert [r["path"] for r in fake_server.requests] == ["/api/ps", "/api/show"]
    assert result["diff"] == {"before": {"loaded": False}, "after": {"loaded": True, "state": "forever"}}


def test_main_load_sends_number_minus_one(run_module, fake_server):
    loaded = ps_body(FOREVER_AT)
    fake_server.route(
        "GET", "/api/ps", payload=lambda _b: (200, "application/json", loaded if posted() else {"models": []})
    )
    fake_server.route("POST", "/api/show", payload=SHOW)

    def posted():
        return any(r["path"] == "/api/generate" for r in fake_server.requests)

    fake_server.route("POST", "/api/generate", payload={"model": "llama3.2", "done": True, "done_reason": "load"})
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2", keep_alive="-1"))
    assert result["action"] == "load" and isinstance(result["load_seconds"], float)
    sent = [r["body"] for r in fake_server.requests if r["path"] == "/api/generate"]
    assert sent == [{"model": "llama3.2", "keep_alive": -1, "stream": False}]


def test_main_model_not_found(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": []})
    fake_server.route("POST", "/api/generate", status=404, payload={"error": "model 'nope' not found"})
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url=fake_server.url, name="nope"))
    assert "model 'nope' not found" in exc.value.result["msg"]


def test_main_url_without_scheme(run_module):
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url="127.0.0.1:11434", name="llama3.2"))
    assert "no http:// or https:// scheme" in exc.value.result["msg"]
