"""Issue 17: the emulator writes like Go's net/http, so a kept-alive connection is as fast as a new one.

Go's net package sets TCP_NODELAY on every TCP connection, accepted ones included (net/tcpsock.go `newTCPConn` ->
`setNoDelay(true)`), and net/http buffers the header and a small body into one write (net/http/server.go
`response.finishRequest` flushes the bufio.Writer once). A response split into several small writes on a socket with
Nagle on waits for the peer's delayed ACK (~40 ms) on a kept-alive connection. Deterministic checks, no timing: the
server runs in this process (the package's own `make_app`/`make_server` and a real loopback socket) with a handler
subclass that records the accepted socket's TCP_NODELAY and every write it makes.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading

import pytest

from lab.emulator import api, server


class _RecordingWriter:
    def __init__(self, real, writes):
        self._real = real
        self._writes = writes

    def write(self, b):
        self._writes.append(bytes(b))
        return self._real.write(b)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def recorded(monkeypatch):
    for k in list(os.environ):
        if k.startswith("OLLAMA_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("OLLAMA_EMULATOR_LOAD_BPS", "1e12")
    monkeypatch.setenv("OLLAMA_EMULATOR_TOKEN_RATE", "100000")
    seen = {"nodelay": [], "writes": []}

    class Recording(api.Handler):
        def setup(self):
            super().setup()
            seen["nodelay"].append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            self.wfile = _RecordingWriter(self.wfile, seen["writes"])

    app = server.make_app()
    httpd = server.make_server(app, "127.0.0.1", 0, handler=Recording)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield httpd.server_address[1], seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.sched.unload_all("stopped")
        t.join(10)


def _exchange(conn, seen, method, path, body=None):
    """One request on the kept-alive connection: (status, body, the server's writes for it)."""
    del seen["writes"][:]
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data, list(seen["writes"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/ps", None, 200),
        ("GET", "/api/version", None, 200),
        ("GET", "/api/tags", None, 200),
        ("HEAD", "/", None, 200),
        ("POST", "/api/generate", {"model": "llama3.2"}, 200),  # load-only: one JSON object
        ("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False}, 200),
        ("POST", "/api/show", {"model": "llama3.2"}, 200),
        ("POST", "/api/generate", {"model": "nope"}, 404),
        ("GET", "/nope", None, 404),
        ("POST", "/api/ps", None, 405),
    ],
)
def test_every_response_is_one_write_with_nodelay(recorded, method, path, body, status):
    port, seen = recorded
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(3):  # the same kept-alive connection, three times
            got, data, writes = _exchange(conn, seen, method, path, body)
            assert got == status
            assert len(writes) == 1, writes
            head, _, rest = writes[0].partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 %d " % status)
            assert rest == data  # the whole body went out with the header
    finally:
        conn.close()
    assert seen["nodelay"] == [1], "one accepted connection, TCP_NODELAY set on it"


def test_streaming_flushes_each_ndjson_line_as_one_write(recorded):
    """Streaming keeps its shape: the header, then one write per NDJSON line (a whole chunk), then the terminator."""
    port, seen = recorded
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        status, data, writes = _exchange(conn, seen, "POST", "/api/generate", {"model": "llama3.2", "prompt": "hi"})
        lines = [json.loads(x) for x in data.splitlines()]
        assert status == 200 and lines[-1]["done"] is True and len(lines) > 5
        assert b"Transfer-Encoding: chunked" in writes[0] and writes[0].endswith(b"\r\n\r\n")
        assert writes[-1] == b"0\r\n\r\n"
        chunks = writes[1:-1]
        assert len(chunks) == len(lines)
        for chunk, line in zip(chunks, lines):
            size, _, payload = chunk.partition(b"\r\n")
            assert int(size, 16) == len(payload) - 2 and payload.endswith(b"\n\r\n")
            assert json.loads(payload) == line
        # and the connection is still good for a plain request, in one write
        assert len(_exchange(conn, seen, "GET", "/api/ps")[2]) == 1
    finally:
        conn.close()
    assert seen["nodelay"] == [1]
