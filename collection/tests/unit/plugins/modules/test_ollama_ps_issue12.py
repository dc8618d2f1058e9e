"""ollama_ps on real fleets' shapes (issue 12): blob matching and digests (3), a loading model (5), proxies and
credentials (6, 10), require_gpu without rounding (10). Over HTTP against a scripted loopback server."""

import json

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import parse_expires_at
from ansible_collections.keepwarm.ollama.plugins.module_utils._ps import describe, problems
from ansible_collections.keepwarm.ollama.plugins.modules import ollama_ps

from ...conftest import ModuleFail

FOREVER_AT = "2318-11-10T23:47:16.854775807Z"
BLOB = "/usr/share/ollama/.ollama/models/blobs/sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
DIGEST = "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"
NOW = parse_expires_at("2026-08-15T12:00:00Z")


def entry(name="llama3.2:latest", size=100, size_vram=100, digest=DIGEST):
    return {"name": name, "model": name, "size": size, "digest": digest, "details": {}, "expires_at": FOREVER_AT,
            "size_vram": size_vram, "context_length": 4096}  # fmt: skip


def show_route(fake_server, table):
    def answer(body):
        name = body["model"] if ":" in body["model"] else body["model"] + ":latest"
        if name in table:
            return 200, "application/json", {"modelfile": "FROM %s\n" % table[name], "capabilities": ["completion"]}
        return 404, "application/json", {"error": "model '%s' not found" % name}

    fake_server.route("POST", "/api/show", payload=answer)


def test_another_tag_of_the_loaded_blob_is_served(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": [entry()]})
    show_route(fake_server, {"llama3.2:latest": BLOB, "llama3.2:3b": BLOB})
    result = run_module(ollama_ps.main, dict(url=fake_server.url, models=["llama3.2:3b"], allow_unlisted=False))
    assert result["ok"] is True and result["problems"] == []


def test_a_different_blob_is_missing_and_the_loaded_one_unexpected(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": [entry()]})
    show_route(fake_server, {"llama3.2:latest": BLOB, "qwen2.5:7b": "/b/qwen"})
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_ps.main, dict(url=fake_server.url, models=["qwen2.5:7b"], allow_unlisted=False))
    assert [(p["model"], p["reason"]) for p in exc.value.result["problems"]] == [
        ("qwen2.5:7b", "missing"),
        ("llama3.2:latest", "unexpected"),
    ]


def test_missing_says_it_may_be_loading(run_module, fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": []})
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_ps.main, dict(url=fake_server.url, models=["llama3.2"]))
    assert "loading right now" in exc.value.result["msg"]
    assert [r["path"] for r in fake_server.requests] == ["/api/ps"]  # nothing waited for, no /api/show needed


@pytest.mark.parametrize("wanted, reasons", [
    ("llama3.2@sha256:" + DIGEST[:12], []),
    ("llama3.2@sha256:" + DIGEST.upper(), []),
    ("llama3.2@sha256:845dbda0ea48", ["digest"]),
])  # fmt: skip
def test_digest_is_checked_never_dropped(wanted, reasons):
    found = problems("u", [describe(entry(), NOW)], [wanted])
    assert [p["reason"] for p in found] == reasons


def test_malformed_digest_fails_the_task(run_module, fake_server):
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_ps.main, dict(url=fake_server.url, models=["llama3.2@latest"]))
    assert "'llama3.2@latest'" in exc.value.result["msg"] and fake_server.requests == []


def test_require_gpu_does_not_round():
    nearly = describe(entry(size=10_000_000_000, size_vram=9_999_600_000), NOW)
    assert nearly["gpu_fraction"] < 1.0
    assert [p["reason"] for p in problems("u", [nearly], ["llama3.2"], require_gpu=True)] == ["offloaded"]
    full = describe(entry(size=10_000_000_000, size_vram=10_000_000_000), NOW)
    assert problems("u", [full], ["llama3.2"], require_gpu=True) == []


def test_url_credentials_are_redacted_in_problems(run_module, fake_server):
    url = fake_server.url.replace("http://", "http://keeper:s3cr3t-pw@")
    fake_server.route("GET", "/api/ps", payload={"models": []})
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_ps.main, dict(url=url, models=["llama3.2"]))
    text = json.dumps(exc.value.result)
    assert "s3cr3t-pw" not in text and "***@127.0.0.1" in text
