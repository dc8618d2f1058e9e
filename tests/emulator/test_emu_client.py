"""Conformance with the official `ollama` Python client: every call parses and returns its documented fields."""

from __future__ import annotations

import datetime

import ollama
import pytest

from .conftest import FAST


@pytest.fixture
def client(emulator_factory):
    emu = emulator_factory(**FAST)
    c = ollama.Client(host=emu.url)
    yield c
    c._client.close()


def test_generate_and_ps(client):
    r = client.generate(model="llama3.2", keep_alive=-1)  # empty prompt: load only
    assert r.done and r.done_reason == "load" and r.model == "llama3.2"
    r = client.generate(model="llama3.2", prompt="Why is the sky blue?")
    assert r.done and r.done_reason == "stop" and r.response and r.eval_count > 0 and r.context
    chunks = list(client.generate(model="llama3.2", prompt="hi", stream=True))
    assert chunks[-1].done and not chunks[0].done
    ps = client.ps()
    m = ps.models[0]
    assert m.model == "llama3.2:latest" and m.name == "llama3.2:latest"
    assert m.size_vram == m.size > 0 and m.context_length == 4096 and len(m.digest) == 64
    assert m.details.family == "llama" and m.details.parameter_size
    assert isinstance(m.expires_at, datetime.datetime) and m.expires_at.year >= 2316


def test_chat(client):
    r = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], keep_alive="10m")
    assert r.message.role == "assistant" and r.message.content and r.done_reason == "stop"
    chunks = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.message.content for c in chunks) == r.message.content
    r = client.chat(model="llama3.2", messages=[], keep_alive=0)
    assert r.done_reason == "unload"


def test_list_show_pull(client):
    names = {m.model for m in client.list().models}
    assert {"llama3.2:latest", "qwen2.5:7b", "nomic-embed-text:latest"} <= names
    m = next(m for m in client.list().models if m.model == "llama3.2:latest")
    assert m.size > 0 and m.digest and isinstance(m.modified_at, datetime.datetime) and m.details.format == "gguf"
    s = client.show("llama3.2")
    assert s.modelfile and s.template and s.details.family == "llama" and "completion" in s.capabilities
    assert s.modelinfo["llama.context_length"] == 131072
    statuses = [p.status for p in client.pull("llama3.2", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.pull("llama3.2").status == "success"
    with pytest.raises(ollama.ResponseError):
        list(client.pull("nope", stream=True))


def test_embed(client):
    r = client.embed(model="nomic-embed-text", input=["hello", "world"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 768 and r.model == "nomic-embed-text"
    single = client.embed(model="nomic-embed-text", input="hello")
    assert single.embeddings[0] == r.embeddings[0]


def test_version_and_errors(client):
    # client 0.6.x has no version(); use its own transport and request path like the other methods do
    v = client._request_raw("GET", "/api/version").json()
    assert v["version"].count(".") == 2
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="nope", prompt="x")
    assert e.value.status_code == 404 and e.value.error == "model 'nope' not found"


def test_client_reads_ollama_host(emulator_factory, monkeypatch):
    """The client reads OLLAMA_HOST (host:port form, like ollama's own CLI) when no host= is given."""
    emu = emulator_factory(**FAST)
    monkeypatch.setenv("OLLAMA_HOST", emu.url.removeprefix("http://"))
    c = ollama.Client()
    try:
        assert c.ps().models == []
    finally:
        c._client.close()
