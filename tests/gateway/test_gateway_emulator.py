"""keepwarm-gateway as a real process in front of a real emulator process: rogue clients against a pinned model.

Each test starts its own emulator (tests/conftest.py `emulator_factory`) and gateway (conftest `gateway_factory`).
"""

from __future__ import annotations

import datetime
import json
import socket
import time

import pytest
from gwhelpers import http_request, wait_for

PIN = ("--model", "llama3.2,num_ctx=8192", "--max-loaded-models", "1")
FOREVER_YEARS = 20


def pinned_forever(emu, name="llama3.2:latest"):
    now = datetime.datetime.now(datetime.timezone.utc)
    for m in emu.ps():
        if m["name"] == name:
            expires = datetime.datetime.fromisoformat(m["expires_at"][:26].rstrip("Z") + "+00:00")
            return (expires - now).days > FOREVER_YEARS * 365
    return False


def kinds(emu, model="llama3.2:latest"):
    return [e["event"] for e in emu.events() if e["model"] in (model, model.split(":")[0])]


@pytest.fixture
def pinned(emulator_factory, gateway_factory):
    """Emulator (cap 1, time scale 60) and a gateway pinning llama3.2 with num_ctx 8192; the pin is made through the
    gateway by a request without keep_alive or options (the gateway adds both)."""
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, *PIN)
    status, body = gw.json("POST", "/api/generate", {"model": "llama3.2"})
    assert status == 200 and body["done_reason"] == "load"
    assert wait_for(lambda: pinned_forever(emu))
    assert emu.ps()[0]["context_length"] == 8192
    return emu, gw


@pytest.mark.parametrize("keep_alive", [0, "5m", "30s", 1])
def test_rogue_keep_alive_cannot_shorten_the_pin(pinned, keep_alive):
    emu, gw = pinned
    status, body = gw.json("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False,
                                                      "keep_alive": keep_alive})  # fmt: skip
    assert status == 200 and body["done"] is True
    time.sleep(0.3)
    assert pinned_forever(emu)
    assert "unload" not in kinds(emu)
    decision = gw.decisions()[-1]
    assert decision["rule"] == "options.rewrite,keep_alive.force"  # no options sent: num_ctx 8192 added too
    assert f"keep_alive {json.dumps(keep_alive)} -> -1" in decision["detail"]


def test_unload_refused_with_json_error_and_model_stays(pinned):
    emu, gw = pinned
    status, headers, data = gw.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
    assert status == 403
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert "policy unload=refuse" in json.loads(data)["error"]
    status, _h, data = gw.request("POST", "/api/chat", {"model": "llama3.2", "messages": [], "keep_alive": "0s"})
    assert status == 403
    assert pinned_forever(emu)
    assert kinds(emu) == ["load"]
    assert [d["rule"] for d in gw.decisions()[-2:]] == ["unload.refuse", "unload.refuse"]


def test_unload_allowed_by_policy(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2,unload=allow")
    assert gw.json("POST", "/api/generate", {"model": "llama3.2"})[0] == 200
    status, body = gw.json("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
    assert status == 200 and body["done_reason"] == "unload"
    assert wait_for(lambda: emu.ps() == [])


def test_num_ctx_rewritten_so_the_pinned_runner_is_not_reloaded(pinned):
    emu, gw = pinned
    for num_ctx in (8192, 2048, 4096):
        status, _body = gw.json("POST", "/api/chat", {"model": "llama3.2", "stream": False,
                                                      "messages": [{"role": "user", "content": "x"}],
                                                      "options": {"num_ctx": num_ctx, "temperature": 0}})  # fmt: skip
        assert status == 200
    assert kinds(emu) == ["load"]  # no reload
    assert emu.ps()[0]["context_length"] == 8192
    rules = [d["rule"] for d in gw.decisions()[-3:]]
    assert rules == ["keep_alive.add", "options.rewrite,keep_alive.add", "options.rewrite,keep_alive.add"]


def test_num_ctx_passed_by_policy_reloads(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2,num_ctx=8192,options=pass")
    assert gw.json("POST", "/api/generate", {"model": "llama3.2", "options": {"num_ctx": 8192}})[0] == 200
    assert gw.json("POST", "/api/generate", {"model": "llama3.2", "options": {"num_ctx": 2048}})[0] == 200
    assert kinds(emu)[0] == "load" and kinds(emu)[-1] == "reload"
    assert pinned_forever(emu)  # the reload still carries the forced keep_alive


def test_another_model_refused_503_when_it_would_evict_the_pin(pinned):
    emu, gw = pinned
    status, headers, data = gw.request("POST", "/api/generate", {"model": "qwen2.5:7b", "prompt": "x"})
    assert status == 503
    assert headers["retry-after"] == "30"
    assert "would evict pinned model(s) llama3.2" in json.loads(data)["error"]
    assert [m["name"] for m in emu.ps()] == ["llama3.2:latest"]
    assert "eviction" not in kinds(emu)
    assert gw.decisions()[-1]["rule"] == "evict.refuse"


def test_eviction_allowed_or_queued_by_policy(emulator_factory, gateway_factory, tmp_path):
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TIME_SCALE="60")
    config = tmp_path / "gw.json"
    config.write_text(json.dumps({"models": [{"name": "llama3.2", "policy": {"evict": "queue"}}],
                                  "gateway": {"max_loaded_models": 1, "queue_timeout": 1}}))  # fmt: skip
    gw = gateway_factory(emu.url, "--config", str(config))
    assert gw.json("POST", "/api/generate", {"model": "llama3.2"})[0] == 200
    t0 = time.monotonic()
    status, _h, _d = gw.request("POST", "/api/generate", {"model": "qwen2.5:7b", "prompt": "x"})
    assert status == 503 and time.monotonic() - t0 >= 1.0  # queued for queue_timeout, then refused
    assert gw.decisions()[-1]["rule"] == "evict.queue_timeout"
    allow = gateway_factory(emu.url, "--model", "llama3.2,evict=allow", "--max-loaded-models", "1")
    status, body = allow.json("POST", "/api/generate", {"model": "qwen2.5:7b", "prompt": "x", "stream": False})
    assert status == 200
    assert [m["name"] for m in emu.ps()] == ["qwen2.5:7b"]
    assert allow.decisions()[-1]["rule"] == "pass.unpinned,evict.allow"


def test_unpinned_model_below_the_cap_passes(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="2", OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2", "--max-loaded-models", "2")
    assert gw.json("POST", "/api/generate", {"model": "llama3.2"})[0] == 200
    assert gw.json("POST", "/api/generate", {"model": "qwen2.5:7b"})[0] == 200
    assert sorted(m["name"] for m in emu.ps()) == ["llama3.2:latest", "qwen2.5:7b"]


def test_embed_keep_alive_forced(pinned):
    emu, gw = pinned
    status, _h, _d = gw.request("POST", "/api/embed", {"model": "llama3.2", "input": "x", "keep_alive": 0})
    assert status == 200
    time.sleep(0.3)
    assert pinned_forever(emu) and kinds(emu) == ["load"]


def test_streaming_is_forwarded_line_by_line(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="1")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    http_request(emu.port, "POST", "/api/generate", {"model": "llama3.2", "stream": False, "prompt": "warm"})
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        body = json.dumps({"model": "llama3.2", "prompt": "hi"}).encode()
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        f = s.makefile("rb")
        head = []
        while (line := f.readline()) != b"\r\n":
            head.append(line.lower())
        assert b"transfer-encoding: chunked\r\n" in head and b"content-type: application/x-ndjson\r\n" in head
        arrivals = []
        while True:
            size = int(f.readline(), 16)
            if size == 0:
                break
            chunk = f.read(size + 2)[:-2]
            arrivals.append((time.monotonic(), chunk))
    lines = [json.loads(c) for _t, c in arrivals]
    assert len(arrivals) >= 10 and lines[-1]["done"] is True
    assert all(c.count(b"\n") == 1 for _t, c in arrivals)  # one NDJSON line per chunk, as Ollama flushes them
    assert arrivals[-1][0] - arrivals[0][0] > 0.1  # the first line came long before the last: not buffered


def test_client_disconnect_aborts_a_cold_load(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="1")  # llama3.2 cold load takes ~2.5 s
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        body = json.dumps({"model": "llama3.2", "prompt": "hi"}).encode()
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.5)
    events = wait_for(lambda: [e for e in emu.events() if e["event"] == "load_aborted"], timeout=5)
    assert events and events[0]["reason"] == "client_disconnected"
    time.sleep(2.5)
    assert emu.ps() == []
    assert "load" not in kinds(emu)
    assert any(f.get("event") == "client_gone" for f in gw.log_lines())


MALFORMED = [
    b'{"model":"llama3.2", bad',
    b"",
    b"[]",
    b'{"model":5}',
    b'{"model":"llama3.2","keep_alive":"-1"}',
    b'{"model":"llama3.2","keep_alive":"1d","prompt":"x"}',
    b'{"model":"llama3.2","keep_alive":true}',
    b'{"model":"llama3.2","prompt":"x","options":{"num_ctx":"big"},"stream":false}',
    b'{"model":"llama3.2","prompt":"x","options":[1]}',
    b'{"model":"nope","prompt":"x"}',
    b'{"prompt":"x"}',
]


@pytest.mark.parametrize("route", ["/api/generate", "/api/chat"])
def test_malformed_bodies_get_ollamas_own_error(emulator_factory, gateway_factory, route):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    for raw in MALFORMED:
        direct = http_request(emu.port, "POST", route, raw=raw)
        via = gw.request("POST", route, raw=raw)
        assert (via[0], via[2]) == (direct[0], direct[2]), raw
        assert via[1]["content-type"] == direct[1]["content-type"]
    assert gw.proc.poll() is None


def test_case_folded_and_trailing_data_unloads_are_refused(pinned):
    emu, gw = pinned
    for raw in (b'{"model":"llama3.2","KEEP_ALIVE":0}', b'{"model":"llama3.2","keep_alive":0} {"x":1}'):
        assert gw.request("POST", "/api/generate", raw=raw)[0] == 403
    assert pinned_forever(emu)


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/"), ("GET", "/"), ("GET", "/api/version"),
                                              ("GET", "/api/tags"), ("GET", "/api/ps"), ("GET", "/nope"),
                                              ("POST", "/api/ps"), ("POST", "/api/show")])  # fmt: skip
def test_pass_through_is_untouched(emulator_factory, gateway_factory, method, path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    body = {"model": "llama3.2"} if method == "POST" else None
    direct = http_request(emu.port, method, path, body)
    via = gw.request(method, path, body)
    assert via[0] == direct[0]
    assert via[2] == direct[2]
    skip = {"date", "x-ollama-emulator-now"}
    assert {k: v for k, v in via[1].items() if k not in skip} == {k: v for k, v in direct[1].items() if k not in skip}


def test_host_header_rule_bearer_token_and_body_limit(emulator_factory, gateway_factory, tmp_path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = tmp_path / "gw.json"
    config.write_text(json.dumps({"models": ["llama3.2"], "gateway": {"max_body_bytes": 1000}}))
    gw = gateway_factory(emu.url, "--config", str(config), "--token-file", str(token))
    auth = {"Authorization": "Bearer s3cret"}
    assert gw.request("GET", "/api/version")[0] == 401
    assert gw.request("GET", "/api/version", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert gw.request("GET", "/api/version", headers=auth)[0] == 200
    # routes.go allowedHostsMiddleware: the gateway listens on loopback, so Host is checked as Ollama does
    for host, status in [("evil.example.com", 403), ("198.18.0.5:11434", 403), ("localhost:11434", 200),
                         ("10.1.2.3", 200), ("box.internal", 200), ("[::1]:11434", 200)]:  # fmt: skip
        assert gw.request("GET", "/api/version", headers={**auth, "Host": host})[0] == status, host
    big = {"model": "llama3.2", "prompt": "x" * 2000}
    status, _h, data = gw.request("POST", "/api/generate", big, headers=auth)
    assert status == 413 and "max_body_bytes" in json.loads(data)["error"]
    rules = [f.get("rule") for f in gw.log_lines() if f.get("event") == "refuse"]
    assert rules.count("auth") == 2 and rules.count("host") == 2 and rules.count("body_size") == 1


def test_header_timeout_drops_a_slow_client(emulator_factory, gateway_factory, tmp_path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    config = tmp_path / "gw.json"
    config.write_text(json.dumps({"gateway": {"header_timeout": 0.5, "idle_timeout": 1}}))
    gw = gateway_factory(emu.url, "--config", str(config))
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: local")
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert 0.4 < time.monotonic() - t0 < 2
    with socket.create_connection(("127.0.0.1", gw.port)) as s:  # idle: nothing sent at all
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert 0.9 < time.monotonic() - t0 < 3


def test_metrics_count_requests_rewrites_and_refusals(pinned):
    emu, gw = pinned
    gw.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
    gw.request("POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False, "keep_alive": "5m"})
    gw.request("POST", "/api/generate", {"model": "qwen2.5:7b", "prompt": "x"})
    gw.request("GET", "/api/tags")
    status, headers, data = gw.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = data.decode()
    assert 'keepwarm_gateway_requests_total{route="/api/generate",model="llama3.2"} 3' in text
    assert 'keepwarm_gateway_requests_total{route="/api/tags",model=""} 1' in text
    assert 'keepwarm_gateway_refusals_total{reason="unload.refuse"} 1' in text
    assert 'keepwarm_gateway_refusals_total{reason="evict.refuse"} 1' in text
    assert 'keepwarm_gateway_rewrites_total{reason="keep_alive.force"} 1' in text
    count = [ln for ln in text.splitlines() if ln.startswith("keepwarm_gateway_added_latency_seconds_count")]
    assert int(count[0].split()[1]) >= 3
    # one decision line per policy-route request (the fixture's pin + the three above), none for /api/tags
    assert [d["rule"] for d in gw.decisions()] == [
        "options.rewrite,keep_alive.add",
        "unload.refuse",
        "options.rewrite,keep_alive.force",
        "evict.refuse",
    ]


def test_bad_config_exits_2_naming_the_field(tmp_path):
    import subprocess
    import sys

    from gwhelpers import ROOT

    out = subprocess.run([sys.executable, "-m", "gateway", "--model", "llama3.2,unload=maybe", "--check"],
                         check=False, capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 2
    assert "field=models[0].policy.unload" in out.stdout and "maybe" in out.stdout


def test_another_tag_of_the_pinned_blob_meets_the_pin(pinned):
    """llama3.2:3b is the same blob as llama3.2 (one runner, sched.go schedulerModelKey): same policy, no 503."""
    emu, gw = pinned
    line = wait_for(lambda: [f for f in gw.log_lines() if f.get("event") == "aliases"])
    assert line and line[0]["aliases"] == "llama3.2:3b=llama3.2"
    assert gw.request("POST", "/api/generate", {"model": "llama3.2:3b", "keep_alive": 0})[0] == 403
    body = {"model": "llama3.2:3b", "prompt": "x", "stream": False, "options": {"num_ctx": 2048}, "keep_alive": "1m"}
    status, reply = gw.json("POST", "/api/generate", body)
    assert status == 200 and reply["model"] == "llama3.2:3b"
    decision = gw.decisions()[-1]
    assert decision["pinned"] == "llama3.2" and decision["rule"] == "options.rewrite,keep_alive.force"
    time.sleep(0.3)
    assert kinds(emu) == ["load"] and pinned_forever(emu)


def test_queued_load_goes_through_once_the_pinned_slot_frees(emulator_factory, gateway_factory, tmp_path):
    import threading

    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TIME_SCALE="60")
    config = tmp_path / "gw.json"
    config.write_text(json.dumps({"models": [{"name": "llama3.2", "policy": {"evict": "queue", "unload": "allow"}}],
                                  "gateway": {"max_loaded_models": 1, "queue_timeout": 10}}))  # fmt: skip
    gw = gateway_factory(emu.url, "--config", str(config))
    assert gw.json("POST", "/api/generate", {"model": "llama3.2"})[0] == 200
    result = {}

    def other() -> None:
        result["status"] = gw.request("POST", "/api/generate", {"model": "qwen2.5:7b", "prompt": "x", "stream": False})[
            0
        ]

    worker = threading.Thread(target=other)
    worker.start()
    time.sleep(1.0)
    assert "status" not in result  # still queued: the pinned model holds the only slot
    assert gw.json("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})[1]["done_reason"] == "unload"
    worker.join(timeout=15)
    assert result["status"] == 200
    queued = [d for d in gw.decisions() if d.get("model") == "qwen2.5:7b"]
    assert queued[0]["rule"] == "pass.unpinned,evict.queue" and queued[0]["detail"] == "slot freed"
    assert "eviction" not in kinds(emu, "llama3.2:latest")
