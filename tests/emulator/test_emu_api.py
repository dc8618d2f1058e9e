"""HTTP contract: routing, status codes and error bodies (§0 routes.go GenerateRoutes, gin ShouldBindJSON over Go
encoding/json; §5 GenerateHandler/ChatHandler/handleScheduleError; §7 other endpoints)."""

from __future__ import annotations

import json

import pytest

from .conftest import FAST, call, load, ps_map, start_emulator

JSON_CT = "application/json; charset=utf-8"


@pytest.fixture(scope="module")
def emu():
    e = start_emulator(OLLAMA_EMULATOR_MAX_BODY="100000", **FAST)
    yield e
    e.stop()


G, C = "/api/generate", "/api/chat"
# (method, path, raw body, status, expected body: dict = JSON, str = text/plain), rule
ERRORS = [
    ("GET", "/nope", None, 404, "404 page not found", "§0 unknown path"),
    ("POST", "/api/ps", b"", 405, "405 method not allowed", "§0 HandleMethodNotAllowed"),
    ("GET", G, None, 405, "405 method not allowed", "§0 HandleMethodNotAllowed"),
    ("POST", G, b"", 400, {"error": "missing request body"}, "§0 empty body (io.EOF)"),
    ("POST", G, b" \n\t", 400, {"error": "missing request body"}, "§0 whitespace only is io.EOF too"),
    ("POST", G, b'{"model":', 400, {"error": "unexpected EOF"}, "§0 truncated JSON"),
    ("POST", G, b'{"model" "x"}', 400, {"error": "invalid character '\"' after object key"}, "§0 decoder message"),
    (
        "POST",
        G,
        b"{'model':1}",
        400,
        {"error": "invalid character '\\'' looking for beginning of object key string"},
        "§0 decoder message",
    ),
    ("POST", G, b"nulx", 400, {"error": "invalid character 'x' in literal null (expecting 'l')"}, "§0 decoder"),
    (
        "POST",
        G,
        b"[1,2]",
        400,
        {"error": "json: cannot unmarshal array into Go value of type api.GenerateRequest"},
        "§0 wrong top-level type",
    ),
    ("POST", G, b"null", 404, {"error": "model '' not found"}, "§0 null decodes to the zero request"),
    (
        "POST",
        G,
        b'{"model":1}',
        400,
        {"error": "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string"},
        "§0 field of the wrong type",
    ),
    (
        "POST",
        G,
        b'{"model":"llama3.2","stream":"yes"}',
        400,
        {"error": "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"},
        "§0",
    ),
    (
        "POST",
        G,
        b'{"model":"llama3.2","options":[]}',
        400,
        {
            "error": "json: cannot unmarshal array into Go struct field GenerateRequest.options of type "
            "map[string]interface {}"
        },
        "§0",
    ),
    (
        "POST",
        G,
        b'{"model":"llama3.2","context":[1.5]}',
        400,
        {"error": "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.context of type int"},
        "§0",
    ),
    (
        "POST",
        C,
        b'{"model":"llama3.2","messages":[{"role":1}]}',
        400,
        {"error": "json: cannot unmarshal number into Go struct field Message.messages.role of type string"},
        "§0",
    ),
    (
        "POST",
        C,
        b'{"model":"llama3.2","messages":{}}',
        400,
        {"error": "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message"},
        "§0",
    ),
    ("POST", G, b'{"MODEL":"nope"}', 404, {"error": "model 'nope' not found"}, "§0 keys match ignoring case"),
    ("POST", G, b'{"model":"llama3.2","model":"nope"}', 404, {"error": "model 'nope' not found"}, "§0 last key wins"),
    (
        "POST",
        G,
        b'{"model":"nope","extra":{"a":[1]}}',
        404,
        {"error": "model 'nope' not found"},
        "§0 unknown keys ignored",
    ),
    ("POST", G, b"{}", 404, {"error": "model '' not found"}, "§5 generate: model missing"),
    ("POST", C, b"{}", 400, {"error": "model is required"}, "§5 chat: model missing"),
    ("POST", G, b'{"model":"nope:7b"}', 404, {"error": "model 'nope:7b' not found"}, "§5 name exactly as sent"),
    ("POST", C, b'{"model":"Nope"}', 404, {"error": "model 'Nope' not found"}, "§5 name exactly as sent"),
    (
        "POST",
        G,
        b'{"model":"llama3.2","options":{"num_ctx":"8k"}}',
        500,
        {"error": 'option "num_ctx" must be of type integer'},
        "§5 Options.FromMap wrong type -> 500",
    ),
    (
        "POST",
        G,
        b'{"model":"llama3.2","options":{"stop":"x"}}',
        500,
        {"error": 'option "stop" must be of type array'},
        "§5 Options.FromMap wrong type -> 500",
    ),
    (
        "POST",
        G,
        b'{"model":"nomic-embed-text","prompt":"x"}',
        400,
        {"error": '"nomic-embed-text" does not support generate'},
        "§5 capability missing -> 400",
    ),
    (
        "POST",
        C,
        b'{"model":"nomic-embed-text","messages":[{"role":"user","content":"x"}]}',
        400,
        {"error": '"nomic-embed-text" does not support chat'},
        "§5 capability missing -> 400",
    ),
    ("POST", "/api/show", b"{}", 400, {"error": "model is required"}, "§7 show"),
    (
        "POST",
        "/api/show",
        b'{"model":"nope"}',
        404,
        {"error": "model 'nope:latest' not found"},
        "§7 show: normalised name",
    ),
    ("DELETE", "/api/delete", b'{"model":"nope"}', 404, {"error": "model 'nope' not found"}, "§7 delete"),
    (
        "POST",
        "/api/pull",
        b'{"model":"nope","stream":false}',
        500,
        {"error": "pull model manifest: file does not exist"},
        "§7 pull stream:false",
    ),
    (
        "POST",
        "/api/embed",
        b'{"model":"nope","input":"x"}',
        404,
        {"error": 'model "nope" not found, try pulling it first'},
        "§5 handleScheduleError os.ErrNotExist",
    ),
    ("POST", "/api/embed", b'{"model":"llama3.2","input":5}', 400, {"error": "invalid input type"}, "embed input"),
    (
        "POST",
        G,
        b'{"model":"llama3.2","keep_alive":"1d"}',
        400,
        {"error": 'time: unknown unit "d" in duration "1d"'},
        "§2",
    ),
    (
        "POST",
        G,
        b'{"model":"llama3.2","pad":"' + b"x" * 200000 + b'"}',
        413,
        {"error": "request body too large"},
        "emulator body limit (deviation: gin has none)",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "expected", "rule"), ERRORS, ids=[f"{r[1]}:{r[5]}" for r in ERRORS]
)
def test_error_bodies(emu, method, path, raw, status, expected, rule):  # noqa: PLR0917
    r = call(emu, method, path, raw=raw)
    assert r.status == status, (rule, r.body)
    if isinstance(expected, dict):
        assert r.headers["content-type"] == JSON_CT, rule
        assert r.json() == expected, rule
    else:
        assert r.headers["content-type"] == "text/plain; charset=utf-8", rule
        assert r.body.decode() == expected, rule
    assert "llama3.2:latest" not in ps_map(emu), "errors happen before scheduling"


def test_trailing_data_after_the_first_value_is_ignored(emu):
    """§0 json.Decoder.Decode reads one value; whatever follows is never looked at."""
    r = call(emu, "POST", G, raw=b'{"model":"llama3.2","keep_alive":0} trailing garbage {')
    assert r.status == 200 and r.json()["done_reason"] == "unload"


def test_pull_streams_status_lines(emu):
    """§7 /api/pull: pulling manifest, per-layer progress, verifying, writing manifest, success; unknown model ->
    error line with status 200."""
    r = call(emu, "POST", "/api/pull", {"model": "llama3.2"})
    assert r.status == 200 and r.headers["content-type"] == "application/x-ndjson"
    statuses = [x["status"] for x in r.lines()]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    layer = next(x for x in r.lines() if x["status"].startswith("pulling ") and "digest" in x)
    assert layer["digest"].startswith("sha256:") and layer["status"] == "pulling " + layer["digest"][7:19]
    r = call(emu, "POST", "/api/pull", {"model": "nope"})
    assert r.status == 200 and r.lines()[-1] == {"error": "pull model manifest: file does not exist"}
    r = call(emu, "POST", "/api/pull", {"model": "llama3.2", "stream": False})
    assert r.json() == {"status": "success"}


def test_simple_endpoints(emu):
    """§7: GET/HEAD /, /api/version, /api/tags (newest first, 64-hex digests)."""
    r = call(emu, "GET", "/")
    assert (r.status, r.body, r.headers["content-type"]) == (200, b"Ollama is running", "text/plain; charset=utf-8")
    r = call(emu, "HEAD", "/")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "17"
    assert call(emu, "GET", "/api/version").json()["version"]
    assert call(emu, "HEAD", "/api/tags").status == 200
    tags = call(emu, "GET", "/api/tags").json()["models"]
    assert {"llama3.2:latest", "llama3:latest", "qwen2.5:7b", "nomic-embed-text:latest", "llama3.1:70b"} <= {
        m["name"] for m in tags
    }
    assert [m["modified_at"] for m in tags] == sorted((m["modified_at"] for m in tags), reverse=True)
    for m in tags:
        assert list(m) == ["name", "model", "modified_at", "size", "digest", "details", "capabilities"]
        assert len(m["digest"]) == 64


def test_load_and_unload_answers_are_single_objects(emu):
    """§5: load and unload answers are one JSON object whatever `stream` says; `model` echoes the request."""
    for stream in (True, False, None):
        extra = {} if stream is None else {"stream": stream}
        r = call(emu, "POST", G, dict(model="llama3.2", **extra))
        assert r.headers["content-type"] == JSON_CT
        assert list(r.json()) == ["model", "created_at", "response", "done", "done_reason"]
        assert r.json()["model"] == "llama3.2" and r.json()["done_reason"] == "load"
        r = call(emu, "POST", C, dict(model="llama3.2", messages=[], **extra))
        assert list(r.json()) == ["model", "created_at", "message", "done_reason", "done"]
        assert r.json()["message"] == {"role": "assistant", "content": ""}
        r = call(emu, "POST", C, dict(model="llama3.2", keep_alive=0, **extra))
        assert r.headers["content-type"] == JSON_CT and r.json()["done_reason"] == "unload"


def test_streaming_and_aggregated_generation(emu):
    """§5 streaming NDJSON (done:false lines, then done:true with metrics in ns and context) vs stream:false."""
    r = call(emu, "POST", G, {"model": "llama3.2", "prompt": "why?"})
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = r.lines()
    assert all(x["done"] is False for x in lines[:-1]) and len(lines) > 2
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop" and "context" in last
    for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count"):
        assert isinstance(last[k], int) and last[k] > 0
    whole = call(emu, "POST", G, {"model": "llama3.2", "prompt": "why?", "stream": False, "raw": True}).json()
    assert whole["response"] == "".join(x["response"] for x in lines) and "context" not in whole
    short = call(emu, "POST", G, {"model": "llama3.2", "prompt": "x", "stream": False, "options": {"num_predict": 3}})
    assert short.json()["done_reason"] == "length" and short.json()["eval_count"] == 3
    chat = call(emu, "POST", C, {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}).lines()
    assert chat[-1]["done_reason"] == "stop" and chat[0]["message"]["role"] == "assistant"
    emb = call(emu, "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}).json()
    assert len(emb["embeddings"]) == 2 and len(emb["embeddings"][0]) == 768


CORS_HOST = [
    ({"Origin": "http://evil.example"}, 403, "§0 CORS: Origin not allowed -> 403 empty body"),
    ({"Origin": "http://localhost:3000"}, 200, "§0 CORS: built-in localhost:* origin"),
    ({"Origin": "vscode-webview://abc"}, 200, "§0 CORS: built-in extension scheme"),
    ({"Host": "evil.example"}, 403, "§0 allowedHostsMiddleware on a loopback bind"),
    ({"Host": "localhost:11434"}, 200, "§0 Host localhost allowed"),
    ({"Host": "box.internal"}, 200, "§0 Host *.internal allowed"),
    ({"Host": "10.1.2.3"}, 200, "§0 Host private IP allowed"),
]


@pytest.mark.parametrize(("headers", "status", "rule"), CORS_HOST, ids=[r[2] for r in CORS_HOST])
def test_cors_and_host_checks(emu, headers, status, rule):
    r = call(emu, "GET", "/api/version", headers=headers)
    assert r.status == status, rule
    if status == 403:
        assert r.body == b"", rule


def test_emulator_events_endpoint(emu):
    """Emulator-only: GET lists events with emulated time, DELETE clears."""
    load(emu, "qwen2.5:7b")
    evs = call(emu, "GET", "/emulator/events").json()["events"]
    ev = next(e for e in evs if e["model"] == "qwen2.5:7b")
    assert list(ev) == ["time", "event", "reason", "model", "load_duration"] and ev["load_duration"] > 0
    assert call(emu, "DELETE", "/emulator/events").status == 200
    assert call(emu, "GET", "/emulator/events").json() == {"events": []}
    assert json.loads(call(emu, "GET", "/api/ps").body)["models"]
