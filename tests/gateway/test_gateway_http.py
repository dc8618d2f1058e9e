"""HTTP edge cases through the gateway: chunked request bodies on a policy route, Expect: 100-continue, pipelining,
HTTP/1.0, and Ollama being down (502 naming the upstream)."""

from __future__ import annotations

import json
import socket

from gwhelpers import free_port, wait_for


def read_response(f) -> tuple[int, dict, bytes]:
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while (size := int(f.readline(), 16)) != 0:
            body += f.read(size + 2)[:-2]
        f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    else:
        body = f.read()
    return status, headers, body


def test_chunked_unload_body_is_read_whole_and_refused(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    body = json.dumps({"model": "llama3.2", "keep_alive": 0}).encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (body[:10], body[10:]):  # the key and the value arrive in different chunks
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        status, _headers, data = read_response(s.makefile("rb"))
    assert status == 403 and "unload=refuse" in json.loads(data)["error"]


def test_expect_continue_and_pipelined_requests(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    body = json.dumps({"model": "llama3.2", "prompt": "x", "stream": False, "keep_alive": "1m"}).encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        f = s.makefile("rb")
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        assert f.readline().startswith(b"HTTP/1.1 100 ")
        assert f.readline() == b"\r\n"
        s.sendall(body)
        status, _h, data = read_response(f)
        assert status == 200 and json.loads(data)["done"] is True
        # three requests in one write: answered in order on the same connection
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2
                  + b"GET /api/tags HTTP/1.1\r\nHost: localhost\r\n\r\n")  # fmt: skip
        answers = [read_response(f) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200]
    assert "version" in json.loads(answers[0][2]) and "models" in json.loads(answers[2][2])
    assert gw.decisions()[-1]["rule"] == "keep_alive.force"


def test_http10_client_gets_a_complete_response(emulator_factory, gateway_factory):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    body = json.dumps({"model": "llama3.2", "prompt": "x"}).encode()  # streamed (chunked) upstream
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /api/generate HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        status, headers, data = read_response(s.makefile("rb"))
    lines = [json.loads(x) for x in data.splitlines()]
    assert status == 200 and "transfer-encoding" not in headers and lines[-1]["done"] is True


def test_ollama_down_gives_502_naming_the_upstream(gateway_factory):
    port = free_port()  # nothing listens there
    gw = gateway_factory(f"http://127.0.0.1:{port}", "--model", "llama3.2")
    status, headers, data = gw.request("GET", "/api/version")
    assert status == 502 and headers["content-type"] == "application/json; charset=utf-8"
    assert f"127.0.0.1:{port}" in json.loads(data)["error"]
    status, _h, _d = gw.request("POST", "/api/generate", {"model": "llama3.2", "prompt": "x"})
    assert status == 502
    assert wait_for(lambda: [f for f in gw.log_lines() if f.get("event") == "upstream_error"])
    assert gw.proc.poll() is None


def test_encoded_and_absolute_form_paths_meet_the_policy(emulator_factory, gateway_factory):
    """Go decodes the path and takes absolute-form targets; gin routes on the result, and so does the policy."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url, "--model", "llama3.2")
    body = json.dumps({"model": "llama3.2", "keep_alive": 0}).encode()
    for target in (b"/api/%67enerate", b"/api/generate?x=1", b"http://localhost:11434/api/generate"):
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(
                b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (target, len(body), body)
            )
            status, _h, data = read_response(s.makefile("rb"))
        assert status == 403, target
        assert "unload=refuse" in json.loads(data)["error"]


def test_absolute_form_host_is_the_one_checked(emulator_factory, gateway_factory):
    """net/http readRequest: for an absolute-form target, Request.Host is the URL's host, not the Host header."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    gw = gateway_factory(emu.url)
    for target, host, status in [(b"http://evil.example/api/version", b"localhost", 403),
                                 (b"http://localhost/api/version", b"evil.example", 200)]:  # fmt: skip
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host))
            assert read_response(s.makefile("rb"))[0] == status, target
