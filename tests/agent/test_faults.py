"""Faults at the HTTP edge (httpx.MockTransport): each ends with its exit code and one clear line, no traceback."""

from __future__ import annotations

import json

import httpx
import pytest

PINNED = {
    "name": "llama3.2:latest",
    "model": "llama3.2:latest",
    "size": 3583106048,
    "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
    "expires_at": "2318-11-10T23:47:16.854775807Z",
    "size_vram": 3583106048,
    "context_length": 4096,
}


def transport(ps, generate=None):
    """A MockTransport: `ps`/`generate` are httpx.Response objects, exceptions to raise, or callables."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.content))
        answer = ps if request.url.path == "/api/ps" else generate
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    t = httpx.MockTransport(handler)
    t.seen = seen
    return t


ARGS = ("--url", "http://ollama.test:11434", "--model", "llama3.2", "--interval", "1")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy error</html>"),
        httpx.Response(200, text='{"models": [{"name": "llama3.2:lat'),
        httpx.Response(200, json={"model": []}),
        httpx.Response(200, json={"models": [{"size": 1}]}),
        httpx.Response(200, text=""),
    ],
    ids=["html", "truncated-json", "no-models-key", "unnamed-entry", "empty"],
)
def test_bad_ps_body_exit_1(cli, response):
    run = cli(*ARGS, "once", transport=transport(response))
    assert run.code == 1
    assert run.beat["error"] == "bad_response"
    assert "GET /api/ps" in run.beat["message"]


def test_ps_server_error_exit_1(cli):
    run = cli(*ARGS, "once", transport=transport(httpx.Response(500, json={"error": "boom"})))
    assert run.code == 1
    assert run.beat["error"] == "request_failed" and "boom" in run.beat["message"]


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["refused", "truncated-body", "read-timeout"],
)
def test_transport_failures_retry_then_exit_3(cli, exc):
    t = transport(exc)
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 3
    beat = run.beat
    assert beat["error"] == "unreachable"
    assert int(beat["attempts"]) == len(t.seen) >= 2  # retried, and bounded
    assert float(beat["retry_seconds"]) < 0.5  # the budget: half of --interval 1


def test_recovers_when_the_server_comes_back(cli):
    answers = [httpx.ConnectError("refused"), httpx.Response(200, json={"models": [PINNED]})]
    run = cli(*ARGS, "once", transport=transport(lambda request: answers.pop(0)))
    assert run.code == 0
    assert run.beat["gets"] == "2" and run.beat["posts"] == "0"


def test_load_timeout_exit_1(cli):
    t = transport(httpx.Response(200, json={"models": []}), httpx.ReadTimeout("timed out"))
    run = cli(*ARGS, "--load-timeout", "7", "once", transport=t)
    assert run.code == 1
    (load,) = run.actions("load")
    assert load["error"] == "load_timeout" and "load_timeout=7s" in load["message"]
    assert [m for m, _, _ in t.seen].count("POST") == 1  # a timed-out load is not retried


def test_generate_non_json_exit_1(cli):
    t = transport(httpx.Response(200, json={"models": []}), httpx.Response(200, text="ok"))
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 1
    assert run.actions("load")[0]["error"] == "bad_response"


def test_error_line_after_load(cli):
    """An error can arrive as a JSON body with status 200 (server/routes.go streamResponse)."""
    t = transport(httpx.Response(200, json={"models": []}), httpx.Response(200, json={"error": "llama runner died"}))
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 1
    assert "llama runner died" in run.actions("load")[0]["message"]


def test_repin_sends_runner_options_and_forever(cli):
    expiring = {**PINNED, "expires_at": "2020-01-01T00:00:00Z", "context_length": 2048}
    states = [[expiring], [PINNED]]
    t = transport(
        lambda r: httpx.Response(200, json={"models": states.pop(0)}),
        httpx.Response(200, json={"model": "llama3.2", "done": True, "done_reason": "load"}),
    )
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 0
    (post,) = [json.loads(body) for m, _, body in t.seen if m == "POST"]
    assert post == {"model": "llama3.2", "keep_alive": -1, "options": {"num_ctx": 2048}}
    assert run.actions("repin")[0]["reason"] == "expiring"


def test_status_unreachable_exit_3(cli):
    run = cli(*ARGS, "status", transport=transport(httpx.ConnectError("refused")))
    assert run.code == 3
    assert run.log[-1]["error"] == "unreachable"
