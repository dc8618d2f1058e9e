"""The OpenAI-compatible `/v1` API end to end: a real emulator process, the official `openai` Python client (and
raw HTTP where the bytes matter), and the keep-alive consequences keepwarm depends on (ollama-behaviour.md §7
"OpenAI- and Anthropic-compatible routes"; upstream server/routes.go GenerateRoutes, middleware/openai.go,
openai/openai.go, server/sched.go needsReload). The translation rules themselves are unit-tested in
test_emu_openai_unit.py.

How a client reaches /v1: base URL `http://HOST:PORT/v1` (the same port as the native API), any API key."""

from __future__ import annotations

import base64
import http.client
import json
import struct
import time
from urllib.parse import urlsplit

import ollama
import openai
import pytest

from .conftest import FAST, MAX_INT64, NS, call, events, parse_time, ps_map, start_emulator, wait_for

USER_HI = [{"role": "user", "content": "Why is the sky blue?"}]
FAR_FUTURE = 2**62  # ns: any expires_at beyond this is a "forever" session (year 2116+)


@pytest.fixture(scope="module")
def emu():
    """Fast loads and tokens; scale 60 so that emulated minutes pass in real seconds."""
    e = start_emulator(OLLAMA_EMULATOR_TIME_SCALE="60", OLLAMA_EMULATOR_TOKEN_RATE="6000", **FAST)
    yield e
    e.stop()


@pytest.fixture(scope="module")
def oc(emu):
    """The official openai client pointed at the emulator: base URL <server>/v1, any API key."""
    with openai.OpenAI(base_url=emu.url + "/v1", api_key="ollama", max_retries=0, timeout=30) as c:
        yield c


def unload_all(emu) -> None:
    for name in list(ps_map(emu)):
        r = call(emu, "POST", "/api/generate", {"model": name, "keep_alive": 0})
        assert r.status == 200
    wait_for(lambda: not ps_map(emu))
    call(emu, "DELETE", "/emulator/events")


def sse_payloads(body: bytes) -> list:
    """`data: {json}\\n\\n` events (middleware/openai.go ChatWriter/CompleteWriter framing)."""
    assert body.endswith(b"data: [DONE]\n\n"), body[-80:]
    out = []
    for block in body[:-2].split(b"\n\n"):
        assert block.startswith(b"data: "), block
        payload = block[6:]
        out.append(payload.decode() if payload == b"[DONE]" else json.loads(payload))
    return out


def test_chat_completion_with_openai_client(emu, oc):
    """openai.go ToChatCompletion via ChatMiddleware -> ChatHandler: object chat.completion, id chatcmpl-N (N <
    999), system_fingerprint fp_ollama, the assistant message, finish_reason length when max_tokens (num_predict)
    cut the answer, usage = prompt_eval_count / eval_count, created = the response time in Unix seconds."""
    r = oc.chat.completions.with_raw_response.create(model="llama3.2", messages=USER_HI, max_tokens=4)
    now = parse_time(r.headers["x-ollama-emulator-now"]) // NS
    c = r.parse()
    assert c.object == "chat.completion" and c.system_fingerprint == "fp_ollama" and c.model == "llama3.2"
    assert c.id.startswith("chatcmpl-") and 0 <= int(c.id[9:]) < 999
    assert c.choices[0].message.role == "assistant" and c.choices[0].message.content == "The sky appears blue"
    assert c.choices[0].finish_reason == "length" and c.choices[0].index == 0
    assert c.usage.completion_tokens == 4 and c.usage.total_tokens == c.usage.prompt_tokens + 4
    assert now - 5 <= c.created <= now
    full = oc.chat.completions.create(model="llama3.2", messages=USER_HI)
    assert full.choices[0].finish_reason == "stop" and full.choices[0].message.content.startswith("The sky")


def test_chat_stream_with_openai_client(emu, oc):
    """middleware/openai.go ChatWriter: streamed chunks (object chat.completion.chunk) carry the same text as the
    non-streamed answer; the first delta has role assistant; one finish chunk with an empty delta; with
    stream_options.include_usage a last chunk with no choices carries usage."""
    chunks = list(
        oc.chat.completions.create(
            model="llama3.2", messages=USER_HI, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The sky appears blue because"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_wire_format(emu):
    """middleware/openai.go ChatWriter.writeResponse: Content-Type text/event-stream, every event `data: {json}`
    and a blank line, the finish chunk's delta is `{}`, the stream ends with `data: [DONE]`; no usage chunk
    without stream_options.include_usage."""
    body = {"model": "llama3.2", "messages": USER_HI, "max_tokens": 2, "stream": True}
    r = call(emu, "POST", "/v1/chat/completions", body)
    assert r.status == 200 and r.headers["content-type"] == "text/event-stream"
    events_ = sse_payloads(r.body)
    assert events_[-1] == "[DONE]"
    assert [e["choices"][0]["delta"] for e in events_[:-1]] == [
        {"role": "assistant", "content": "The"},
        {"content": " sky"},
        {},
    ]
    assert all("usage" not in e for e in events_[:-1])


def test_completions(emu, oc):
    """openai.go ToCompletion / ToCompleteChunk via CompletionsMiddleware -> GenerateHandler: object
    text_completion, id cmpl-N; streamed chunks each carry text, the last one the finish_reason."""
    c = oc.completions.create(model="llama3.2", prompt="Why is the sky blue?", max_tokens=3)
    assert c.object == "text_completion" and c.id.startswith("cmpl-") and c.choices[0].text == "The sky appears"
    assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 3
    chunks = list(oc.completions.create(model="llama3.2", prompt="x", max_tokens=2, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == "The sky"
    assert [ch.choices[0].finish_reason for ch in chunks] == [None, None, "length"]


def test_embeddings_float_and_base64(emu, oc):
    """openai.go ToEmbeddingList via EmbeddingsMiddleware -> EmbedHandler: one `embedding` object per input in
    order, model = the request's string, usage from prompt_eval_count; the vectors are /api/embed's; base64 is
    little-endian float32 (floatsToBase64)."""
    r = oc.embeddings.create(model="nomic-embed-text", input=["alpha", "beta"])
    assert r.object == "list" and r.model == "nomic-embed-text" and [d.index for d in r.data] == [0, 1]
    native = call(emu, "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["alpha", "beta"]}).json()
    # the openai client asks for base64 by default and decodes the float32s
    assert [d.embedding for d in r.data] == [pytest.approx(v, rel=1e-6) for v in native["embeddings"]]
    floats = call(emu, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": ["alpha", "beta"]}).json()
    assert [d["embedding"] for d in floats["data"]] == native["embeddings"]
    assert r.usage.prompt_tokens == r.usage.total_tokens == native["prompt_eval_count"]
    raw = call(
        emu, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": "alpha", "encoding_format": "base64"}
    )
    b64 = raw.json()["data"][0]["embedding"]
    vec = struct.unpack("<%df" % (len(base64.b64decode(b64)) // 4), base64.b64decode(b64))
    assert vec == pytest.approx(native["embeddings"][0], rel=1e-6)


def test_models_list_and_retrieve(emu, oc):
    """openai.go ToListCompletion via ListMiddleware -> ListHandler: the /api/tags models in the same order, id =
    model, owned_by = the name's namespace (library); ToModel via RetrieveMiddleware -> ShowHandler: id = the path
    parameter as sent; an unknown model is ShowHandler's 404 wrapped as not_found_error."""
    tags = call(emu, "GET", "/api/tags").json()["models"]
    listed = list(oc.models.list())
    assert [m.id for m in listed] == [t["model"] for t in tags]
    assert {m.object for m in listed} == {"model"} and {m.owned_by for m in listed} == {"library"}
    assert [m.created for m in listed] == [parse_time(t["modified_at"]) // NS for t in tags]
    m = oc.models.retrieve("llama3.2")
    assert (m.id, m.object, m.owned_by) == ("llama3.2", "model", "library")
    with pytest.raises(openai.NotFoundError) as e:
        oc.models.retrieve("no-such-model")
    assert e.value.body == {
        "message": "model 'no-such-model:latest' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }


def test_errors_through_the_native_handler(emu, oc):
    """middleware/openai.go BaseWriter.writeError: the native handler's error status and text, OpenAI-shaped
    (ChatHandler 404 `model 'x' not found` -> not_found_error; EmbedHandler 400 `invalid input type` ->
    invalid_request_error), Content-Type application/json."""
    with pytest.raises(openai.NotFoundError) as e:
        oc.chat.completions.create(model="nope", messages=USER_HI)
    assert e.value.body["message"] == "model 'nope' not found" and e.value.body["type"] == "not_found_error"
    r = call(emu, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": [1, 2]})
    assert (r.status, r.headers["content-type"]) == (400, "application/json")
    assert r.json() == {"error": {"message": "invalid input type", "type": "invalid_request_error", "param": None,
                                  "code": None}}  # fmt: skip


def test_routing(emu):
    """server/routes.go GenerateRoutes: /v1/models is GET only and /v1/chat/completions POST only (405 `405 method
    not allowed`, HandleMethodNotAllowed); /v1/models/:model is one path segment, so `a%2Fb` (decoded a/b) is 404."""
    assert call(emu, "GET", "/v1/chat/completions").status == 405
    assert call(emu, "HEAD", "/v1/models").status == 405
    assert call(emu, "POST", "/v1/models/llama3.2").status == 405
    r = call(emu, "GET", "/v1/models/acme%2Fcoder")
    assert (r.status, r.body) == (404, b"404 page not found")
    assert call(emu, "GET", "/v1/models/llama3.2%3Alatest").json()["id"] == "llama3.2:latest"


def test_kept_alive_connection_switches_between_v1_and_native(emu):
    """One HTTP/1.1 connection carrying /v1 then native requests (as the openai and ollama clients' pools do):
    each answer has its own route's format."""
    u = urlsplit(emu.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        for path, key in (("/v1/models", "data"), ("/api/tags", "models"), ("/v1/models", "data")):
            conn.request("GET", path)
            r = conn.getresponse()
            assert r.status == 200 and key in json.loads(r.read())
    finally:
        conn.close()


def test_no_messages_is_400_and_loads_nothing(emu, oc):
    """middleware/openai.go ChatMiddleware: no messages -> 400 `[] is too short - 'messages'` before ChatHandler
    runs, so /v1 cannot preload a model (contrast: the native empty-messages chat is the load request)."""
    unload_all(emu)
    with pytest.raises(openai.BadRequestError) as e:
        oc.chat.completions.create(model="llama3.2", messages=[])
    assert e.value.status_code == 400
    assert e.value.body == {"message": "[] is too short - 'messages'", "type": "invalid_request_error", "param": None,
                            "code": None}  # fmt: skip
    r = call(emu, "POST", "/v1/chat/completions", {"model": "llama3.2"})
    assert (r.status, r.headers["content-type"]) == (400, "application/json; charset=utf-8")
    assert ps_map(emu) == {} and events(emu) == []


def expires_in(emu, name: str) -> float:
    """Seconds from the emulated now to the model's expires_at in /api/ps."""
    r = call(emu, "GET", "/api/ps")
    (m,) = [m for m in r.json()["models"] if m["name"] == name]
    return (parse_time(m["expires_at"]) - r.now_ns) / NS


def test_v1_keep_alive_is_ignored(emu, oc):
    """openai.go ChatCompletionRequest/CompletionRequest/EmbedRequest have no keep_alive: a /v1 body's keep_alive
    is dropped and nil reaches the scheduler, so a cold load takes OLLAMA_KEEP_ALIVE (default 5m) whatever the body
    says (sched.go GetRunner: nil sessionDuration -> envconfig.KeepAlive)."""
    unload_all(emu)
    oc.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1, extra_body={"keep_alive": -1})
    # OLLAMA_KEEP_ALIVE 5m; the lower bound leaves 3 s real of slack at scale 60
    wait_for(lambda: 120 < expires_in(emu, "llama3.2:latest") <= 300)
    oc.completions.create(model="qwen2.5:7b", prompt="hi", max_tokens=1, extra_body={"keep_alive": "1h"})
    wait_for(lambda: 120 < expires_in(emu, "qwen2.5:7b") <= 300)
    oc.embeddings.create(model="nomic-embed-text", input="x", extra_body={"keep_alive": 0})
    wait_for(lambda: 120 < expires_in(emu, "nomic-embed-text:latest") <= 300)
    assert [e["event"] for e in events(emu)] == ["load", "load", "load"]


def test_v1_keeps_a_pin_and_restarts_the_idle_timer(emu, oc):
    """A runner reused by a /v1 request keeps its session length (nil keep_alive does not change it; sched.go
    useLoadedRunner) and the timer restarts: a pin (keep_alive -1, no num_ctx) survives /v1 traffic; a 10m session
    is pushed back to now+10m; no reload (the /v1 options match the automatic ones: sched.go needsReload)."""
    unload_all(emu)
    assert call(emu, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1}).status == 200
    assert call(emu, "POST", "/api/generate", {"model": "qwen2.5:7b", "keep_alive": "10m"}).status == 200
    before = expires_in(emu, "qwen2.5:7b")
    time.sleep(1.5)  # 90 emulated seconds
    assert expires_in(emu, "qwen2.5:7b") < before - 60
    oc.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1)
    oc.chat.completions.create(model="qwen2.5:7b", messages=USER_HI, max_tokens=1)
    models, now = ps_map(emu), call(emu, "GET", "/api/ps").now_ns
    assert parse_time(models["llama3.2:latest"]["expires_at"]) > FAR_FUTURE
    wait_for(lambda: 560 < expires_in(emu, "qwen2.5:7b") <= 600)  # restarted: was ~510 s left before
    assert now < MAX_INT64 and [e["event"] for e in events(emu)] == ["load", "load"]


def test_v1_reloads_a_runner_loaded_with_explicit_num_ctx(emu, oc):
    """/v1 requests carry no num_ctx (openai.go FromChatRequest builds no such option), so a runner loaded with an
    explicit num_ctx that differs from the automatic one is reloaded (sched.go needsReload: only "auto on both
    sides" keeps the old value), and the reload takes OLLAMA_KEEP_ALIVE: the pin is lost."""
    unload_all(emu)
    body = {"model": "llama3.2", "keep_alive": -1, "options": {"num_ctx": 2048}}
    assert call(emu, "POST", "/api/generate", body).status == 200
    assert ps_map(emu)["llama3.2:latest"]["context_length"] == 2048
    oc.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1)
    m = ps_map(emu)["llama3.2:latest"]
    assert m["context_length"] != 2048
    wait_for(lambda: 120 < expires_in(emu, "llama3.2:latest") <= 300)
    evs = [(e["event"], e["reason"], e["model"]) for e in events(emu)]
    assert [e for e in evs if e[0] != "unload"] == [
        ("load", "cold", "llama3.2:latest"),
        ("reload", "reload", "llama3.2:latest"),
    ]
    assert ("unload", "reload", "llama3.2:latest") in evs


def test_ollama_client_still_works_beside_openai(emu, oc):
    """The same server serves the native API to the official `ollama` client and /v1 to the `openai` client: a
    model loaded through /v1 is in ollama's ps, and ollama's chat/generate/embed answer as before."""
    unload_all(emu)
    oc.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1)
    with ollama.Client(host=emu.url) as oll:
        assert [m.model for m in oll.ps().models] == ["llama3.2:latest"]
        assert oll.chat(model="llama3.2", messages=USER_HI, options={"num_predict": 2}).message.content == "The sky"
        assert oll.generate(model="llama3.2", prompt="x", options={"num_predict": 1}).response == "The"
        assert len(oll.embed(model="nomic-embed-text", input="x").embeddings) == 1
        assert "llama3.2:latest" in [m.model for m in oll.list().models]


def test_completions_without_prompt_loads(emu, oc):
    """openai.go FromCompleteRequest copies an empty prompt, and GenerateHandler treats an empty prompt as the
    load request: /v1/completions with no prompt loads the model (finish_reason "load", zero usage) with
    OLLAMA_KEEP_ALIVE, unlike /v1/chat/completions, which refuses empty messages."""
    unload_all(emu)
    c = oc.completions.create(model="llama3.2", prompt="", extra_body={"keep_alive": 0})
    assert c.choices[0].finish_reason == "load" and c.choices[0].text == "" and c.usage.total_tokens == 0
    wait_for(lambda: 120 < expires_in(emu, "llama3.2:latest") <= 300)
    assert [e["event"] for e in events(emu)] == ["load"]


def test_embeddings_dimensions(emu, oc):
    """EmbeddingsMiddleware passes `dimensions` to EmbedHandler, which truncates each normalized vector to that many
    values and normalizes again (routes.go EmbedHandler); 0 or a value >= the length leaves it whole."""
    full = call(emu, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": "alpha"}).json()
    full = full["data"][0]["embedding"]
    short = oc.embeddings.create(model="nomic-embed-text", input="alpha", dimensions=8, encoding_format="float")
    vec = short.data[0].embedding
    assert len(vec) == 8 and sum(v * v for v in vec) == pytest.approx(1.0, abs=1e-5)
    scale = sum(v * v for v in full[:8]) ** 0.5
    assert vec == pytest.approx([v / scale for v in full[:8]], abs=1e-5)
    big = call(emu, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "alpha", "dimensions": 10**6}).json()
    assert big["embeddings"][0] == full


def test_v1_num_ctx_rules_with_forever_default():
    """sched.go needsReload compares the runner options after resolving the automatic num_ctx: a runner loaded with
    an explicit num_ctx EQUAL to the automatic one is reused by /v1 (no reload, the pin stays); a different one is
    reloaded, and with OLLAMA_KEEP_ALIVE=-1 the reloaded runner is pinned again (nil keep_alive -> the default)."""
    e = start_emulator(OLLAMA_KEEP_ALIVE="-1", OLLAMA_EMULATOR_TIME_SCALE="60", **FAST)
    try:
        with openai.OpenAI(base_url=e.url + "/v1", api_key="k", max_retries=0, timeout=30) as c:
            c.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1)
            auto = ps_map(e)["llama3.2:latest"]["context_length"]
            call(e, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
            wait_for(lambda: not ps_map(e))
            call(e, "DELETE", "/emulator/events")
            body = {"model": "llama3.2", "keep_alive": "1h", "options": {"num_ctx": auto}}
            assert call(e, "POST", "/api/generate", body).status == 200
            c.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1)
            wait_for(lambda: 3000 < expires_in(e, "llama3.2:latest") <= 3600)  # reused: keeps its 1h session
            assert [ev["event"] for ev in events(e)] == ["load"]
            body["options"]["num_ctx"] = auto // 2
            assert call(e, "POST", "/api/generate", body).status == 200  # explicit, different: reload (1h)
            c.chat.completions.create(model="llama3.2", messages=USER_HI, max_tokens=1)
            assert ps_map(e)["llama3.2:latest"]["context_length"] == auto
            wait_for(lambda: parse_time(ps_map(e)["llama3.2:latest"]["expires_at"]) > FAR_FUTURE)
            assert [ev["event"] for ev in events(e) if ev["event"] != "unload"] == ["load", "reload", "reload"]
    finally:
        e.stop()
