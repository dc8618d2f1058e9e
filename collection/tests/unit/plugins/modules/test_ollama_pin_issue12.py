"""ollama_pin on real fleets' shapes (issue 12), over HTTP against a scripted loopback server.

Each test reproduces one case of the issue: embedding-only models (1), re-pin options (2), blob-based matching and
digests (3), values Ollama transforms and a pin that leaves the model absent (4), clamped num_ctx (7), credentials
in the url (10).
"""

import json

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import DurationError
from ansible_collections.keepwarm.ollama.plugins.modules import ollama_pin

from ...conftest import ModuleFail

FOREVER_AT = "2318-11-10T23:47:16.854775807Z"
SOON = "2026-08-15T12:04:59Z"
BLOB = "/usr/share/ollama/.ollama/models/blobs/sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
DIGEST = "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"


def ps_entry(name="llama3.2:latest", expires_at=FOREVER_AT, ctx=4096, digest=DIGEST):
    return {"name": name, "model": name, "size": 100, "digest": digest, "details": {}, "expires_at": expires_at,
            "size_vram": 100, "context_length": ctx}  # fmt: skip


def show(blob=BLOB, caps=("completion",), ctx=131072, params=""):
    return {"modelfile": "FROM %s\n%s" % (blob, params), "capabilities": list(caps),
            "model_info": {"general.architecture": "llama", "llama.context_length": ctx}}  # fmt: skip


def shows(table):
    """/api/show answers by model name; 404 for the rest."""

    def answer(body):
        name = body.get("model")
        for key in (name, name + ":latest"):
            if key in table:
                return 200, "application/json", table[key]
        return 404, "application/json", {"error": "model '%s' not found" % name}

    return answer


def posts(server):
    return [(r["path"], r["body"]) for r in server.requests if r["method"] == "POST" and r["path"] != "/api/show"]


# --- case 1: embedding-only models ----------------------------------------------------------------------------


def test_embedding_model_is_loaded_through_embed(run_module, fake_server):
    state = {"loaded": False}
    fake_server.route("GET", "/api/ps", payload=lambda _b: (200, "application/json", {
        "models": [ps_entry("nomic-embed-text:latest", ctx=2048)] if state["loaded"] else []}))  # fmt: skip
    fake_server.route("POST", "/api/show", payload=shows({"nomic-embed-text:latest": show(caps=("embedding",))}))

    def embed(body):
        state["loaded"] = True
        return 200, "application/json", {"model": body["model"], "embeddings": []}

    fake_server.route("POST", "/api/embed", payload=embed)
    fake_server.route("POST", "/api/generate", status=400, payload={"error": '"x" does not support generate'})
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="nomic-embed-text"))
    assert result["action"] == "load" and result["endpoint"] == "/api/embed"
    assert posts(fake_server) == [("/api/embed", {"model": "nomic-embed-text", "keep_alive": -1})]
    assert result["model"]["state"] == "forever"


def test_unknown_capabilities_fall_back_to_embed_on_the_capability_refusal(run_module, fake_server):
    state = {"loaded": False}
    fake_server.route("GET", "/api/ps", payload=lambda _b: (200, "application/json", {
        "models": [ps_entry("nomic-embed-text:latest")] if state["loaded"] else []}))  # fmt: skip
    old_show = show()
    del old_show["capabilities"]  # a server that does not report capabilities
    fake_server.route("POST", "/api/show", payload=shows({"nomic-embed-text:latest": old_show}))
    fake_server.route("POST", "/api/generate", status=400,
                      payload={"error": '"nomic-embed-text" does not support generate'})  # fmt: skip

    def embed(body):
        state["loaded"] = True
        return 200, "application/json", {"model": body["model"], "embeddings": []}

    fake_server.route("POST", "/api/embed", payload=embed)
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="nomic-embed-text"))
    assert [path for path, _body in posts(fake_server)] == ["/api/generate", "/api/embed"]
    assert result["endpoint"] == "/api/embed" and result["request"] == {"model": "nomic-embed-text", "keep_alive": -1}


# --- case 2: re-pin options -----------------------------------------------------------------------------------


def test_repin_sends_runner_context_and_workload_options_and_says_what_is_unknown(run_module, fake_server):
    state = {"expires": SOON}
    fake_server.route("GET", "/api/ps", payload=lambda _b: (200, "application/json", {
        "models": [ps_entry(expires_at=state["expires"], ctx=8192)]}))  # fmt: skip
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show()}))

    def generate(body):
        state["expires"] = FOREVER_AT
        return 200, "application/json", {"model": body["model"], "done": True, "done_reason": "load"}

    fake_server.route("POST", "/api/generate", payload=generate)
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2", options={"num_batch": 1024}))
    assert result["action"] == "repin"
    assert posts(fake_server) == [("/api/generate", {"model": "llama3.2", "keep_alive": -1, "stream": False,
                                                     "options": {"num_batch": 1024, "num_ctx": 8192}})]  # fmt: skip
    assert set(result["reload_unknown"]) >= {"num_batch", "main_gpu", "use_mmap", "num_thread", "shift"}
    assert "never forces a reload" not in ollama_pin.DOCUMENTATION


# --- case 3: blobs and digests --------------------------------------------------------------------------------


def test_another_tag_of_the_loaded_blob_is_already_pinned(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": [ps_entry()]})
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show(), "llama3.2:3b": show()}))
    for _run in range(2):
        result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2:3b"))
        assert result["changed"] is False and result["action"] == "none", result
        assert result["warnings"] == []
    assert posts(fake_server) == []
    assert result["served_by"] == "llama3.2:latest"


def test_unload_by_another_tag_of_the_blob(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": [ps_entry()]})
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show(), "llama3.2:3b": show()}))
    fake_server.route("POST", "/api/generate", payload={"model": "llama3.2:3b", "done": True, "done_reason": "unload"})
    result = run_module(
        ollama_pin.main, dict(url=fake_server.url, name="llama3.2:3b", state="unloaded"), check_mode=True
    )
    assert result["changed"] is True and result["action"] == "unload"


def test_a_different_blob_is_not_matched(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": [ps_entry()]})
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show(), "qwen2.5:7b": show(blob="/b/x")}))
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="qwen2.5:7b"), check_mode=True)
    assert result["action"] == "load"


def test_digest_mismatch_fails_before_sending_anything(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": []})
    fake_server.route("GET", "/api/tags", payload={"models": [{"name": "llama3.2:latest", "digest": DIGEST}]})
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2@sha256:845dbda0ea48ed74"))
    assert "not the wanted sha256:845dbda0ea48ed74" in exc.value.result["msg"]
    assert posts(fake_server) == []


def test_digest_match_pins_the_plain_name(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": [ps_entry()]})
    fake_server.route("GET", "/api/tags", payload={"models": [{"name": "llama3.2:latest", "digest": DIGEST}]})
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2@sha256:" + DIGEST[:12]))
    assert result["action"] == "none"


@pytest.mark.parametrize("name", ["llama3.2@a80c4f17acd5", "llama3.2@sha256:a80c", "llama3.2@latest"])
def test_malformed_digest_is_refused(run_module, fake_server, name):
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url=fake_server.url, name=name))
    assert repr(name) in exc.value.result["msg"]
    assert fake_server.requests == []


# --- case 4: values Ollama transforms; a pin that leaves the model absent ---------------------------------------


@pytest.mark.parametrize("value, why", [(9223372037, "overflow"), ("9223372037", "overflow"), (1e13, "overflow"),
                                        (1e-10, "nanosecond"), ("0.1ns", "nanosecond")])  # fmt: skip
def test_transformed_keep_alive_is_refused_with_the_reason(run_module, fake_server, value, why):
    with pytest.raises(DurationError, match=why):
        ollama_pin.plan(dict(name="m", state="pinned", keep_alive=value, options=None), None)
    fake_server.route("GET", "/api/ps", payload={"models": []})
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show()}))
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2", keep_alive=value))
    assert why in exc.value.result["msg"] and posts(fake_server) == []


def test_largest_keep_alive_that_fits_is_sent():
    _action, body = ollama_pin.plan(dict(name="m", state="pinned", keep_alive=9223372036, options=None), None)
    assert body["keep_alive"] == 9223372036


def test_pin_that_leaves_the_model_absent_fails(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": []})
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show()}))
    fake_server.route("POST", "/api/generate", payload={"model": "llama3.2", "done": True, "done_reason": "load"})
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2"))
    assert "not in /api/ps afterwards" in exc.value.result["msg"]
    assert exc.value.result["action"] == "load"


# --- case 7: clamped num_ctx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    (8192, 2048, 2048, ("embedding",)),  # above the training context: clamped to it
    (2, 4, 131072, ("completion",)),  # below 4: raised to 4
    (1024, 2048, 131072, ("completion", "vision")),  # vision: at least 2048
])  # fmt: skip
def test_clamped_num_ctx_is_idempotent(run_module, fake_server, case):
    requested, ctx, train, caps = case
    fake_server.route("GET", "/api/ps", payload={"models": [ps_entry(ctx=ctx)]})
    fake_server.route("POST", "/api/show", payload=shows({"llama3.2:latest": show(caps=caps, ctx=train)}))
    result = run_module(ollama_pin.main, dict(url=fake_server.url, name="llama3.2", options={"num_ctx": requested}))
    assert result["changed"] is False and result["action"] == "none"
    assert posts(fake_server) == []


# --- case 10: credentials in the url ----------------------------------------------------------------------------


def test_url_credentials_never_appear(run_module, fake_server):
    url = fake_server.url.replace("http://", "http://keeper:s3cr3t-pw@")
    fake_server.route("GET", "/api/ps", payload={"models": []})
    fake_server.route("POST", "/api/show", payload=shows({}))
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_pin.main, dict(url=url, name="nope"))
    text = json.dumps(exc.value.result)
    assert "s3cr3t-pw" not in text and "***@127.0.0.1" in text
