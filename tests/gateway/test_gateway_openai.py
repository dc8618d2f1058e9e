"""The OpenAI-compatible /v1 routes through the gateway, with the official `openai` client (dev extra) and raw SSE.

/v1 requests carry no keep_alive and no runner options (ollama-behaviour.md §7): reuse keeps the runner's pin, so the
gateway's job there is the eviction rule and auth; errors it makes itself use the OpenAI error shape.
"""

from __future__ import annotations

import json

import openai
import pytest
from gwhelpers import http_request


@pytest.fixture
def setup(emulator_factory, gateway_factory, tmp_path):
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TIME_SCALE="60")
    token = tmp_path / "token"
    token.write_text("sk-keepwarm-test")
    gw = gateway_factory(emu.url, "--model", "llama3.2", "--max-loaded-models", "1", "--token-file", str(token))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-keepwarm-test", max_retries=0, timeout=30)
    assert client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "pin"}])
    return emu, gw, client


def test_openai_client_chat_and_stream_keep_the_pin(setup):
    emu, gw, client = setup
    http_request(emu.port, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1})  # the heartbeat's pin
    reply = client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert reply.object == "chat.completion" and reply.choices[0].message.content
    chunks = list(client.chat.completions.create(model="llama3.2", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))  # fmt: skip
    assert len(chunks) > 3 and chunks[0].object == "chat.completion.chunk"
    done = client.completions.create(model="llama3.2", prompt="hi")
    assert done.object == "text_completion"
    emb = client.embeddings.create(model="llama3.2", input="hi")
    assert emb.data[0].embedding
    assert [e["event"] for e in emu.events() if e["model"].startswith("llama3.2")] == ["load"]  # never reloaded
    assert emu.ps()[0]["expires_at"][:2] == "23"  # still forever
    assert {d["route"] for d in gw.decisions()} >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}


def test_openai_client_gets_503_in_openai_shape_instead_of_evicting(setup):
    emu, gw, client = setup
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="qwen2.5:7b", messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 503
    assert exc.value.response.headers["retry-after"] == "30"
    err = exc.value.response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and "would evict pinned" in err["message"]
    assert [m["name"] for m in emu.ps()] == ["llama3.2:latest"]


def test_openai_client_without_the_token_is_refused(setup):
    _emu, gw, _client = setup
    bad = openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_sse_stream_forwarded_event_by_event(setup):
    emu, gw, _client = setup
    body = {"model": "llama3.2", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": "Bearer sk-keepwarm-test"}
    status, headers, data = gw.request("POST", "/v1/chat/completions", body, headers=auth)
    direct = http_request(emu.port, "POST", "/v1/chat/completions", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["content-type"] == direct[1]["content-type"]
    events = [e for e in data.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert len(events) == len([e for e in direct[2].decode().split("\n\n") if e])
    assert json.loads(events[0][len("data: ") :])["object"] == "chat.completion.chunk"
