"""The gateway on the wire, byte by byte: Ollama's side read by the lean response reader (gateway/_http_upstream.py)
against a scripted upstream (a real TCP server in this process that answers with exact bytes, split as a test
chooses), and the client side's strictness (h11 plus the gateway's own CL+TE rule) with raw requests."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from gwhelpers import wait_for


class Scripted:
    """A stand-in for Ollama on loopback: every accepted connection is handed to `handler(conn, index)`; requests
    read with `read_request` are recorded as (connection index, raw bytes)."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.requests: list = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                self.handler(_Conn(conn, index, self), index)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


class _Conn:
    def __init__(self, sock: socket.socket, index: int, owner: Scripted) -> None:
        self.sock = sock
        self.index = index
        self.owner = owner
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def read_request(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        body = b""
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            while not self.buf.endswith(b"0\r\n\r\n"):
                self._fill()
            body, self.buf = self.buf, b""
        elif b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        request = head + b"\r\n\r\n" + body
        self.owner.requests.append((self.index, request))
        return request

    def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        for piece in pieces:
            self.sock.sendall(piece)
            if pause:
                time.sleep(pause)


def serve_each(*answers):
    """A handler that answers the requests of every connection with `answers` in turn, each a tuple of pieces sent
    0.02 s apart (so each piece is its own read on the gateway's side)."""

    def handler(conn: _Conn, _index: int) -> None:
        for pieces in answers:
            if conn.read_request() is None:
                return
            conn.send(*pieces, pause=0.02)

    return handler


def exchange(port: int, request: bytes, *, timeout: float = 10) -> tuple[bytes, bool]:
    """Send raw bytes; (everything received until the gateway closes or goes quiet for 1 s, closed?)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        s.settimeout(1.0)
        data = b""
        while True:
            try:
                part = s.recv(65536)
            except TimeoutError:
                return data, False
            if not part:
                return data, True
            data += part


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        line, _, body = body.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]


@pytest.fixture
def scripted():
    made: list = []

    def make(handler) -> Scripted:
        up = Scripted(handler)
        made.append(up)
        return up

    yield make
    for up in made:
        up.close()


GET = b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n"
LINE = b'{"response":"x","done":false}\n'


def test_content_length_body_split_in_small_pieces(scripted, gateway_factory):
    body = b'{"version":"0.30.0"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(body)
    whole = head + body
    up = scripted(serve_each(tuple(whole[i : i + 7] for i in range(0, len(whole), 7)), (whole,)))
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, GET + GET)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type: application/json; charset=utf-8" in first
    assert rest == body + head + body and not closed  # both answered in order, the connection kept
    assert [i for i, _ in up.requests] == [0, 0]  # one upstream connection, reused


def test_chunked_stream_forwarded_with_its_framing_as_it_comes(scripted, gateway_factory):
    """Chunk-size lines split from their data, an extension and a trailer: the client gets Ollama's bytes, and each
    line as soon as it was sent (before the next one exists)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [b"%x" % len(LINE), b";ext=1\r\n" + LINE[:5], LINE[5:] + b"\r\n", b"%x\r\n%s\r\n" % (len(LINE), LINE)]
    gate = threading.Event()

    def handler(conn: _Conn, _index: int) -> None:
        conn.read_request()
        conn.send(head, *chunks, pause=0.02)
        gate.wait(10)  # the last chunk and the trailer only once the client has seen the first two lines
        conn.send(b"0\r\nX-Trailer: t\r\n\r\n")

    up = scripted(handler)
    gw = gateway_factory(up.url)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"POST /api/pull HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
        data = b""
        while data.count(LINE) < 2:
            data += s.recv(65536)
        gate.set()
        while not data.endswith(b"\r\n\r\n") or b"X-Trailer" not in data:
            data += s.recv(65536)
    resp_head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in resp_head
    assert body == b"".join(chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    assert dechunk(body) == LINE * 2


def test_http10_client_gets_the_payload_without_chunk_framing(scripted, gateway_factory):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    up = scripted(
        serve_each((head, b"%x\r\n" % len(LINE), LINE + b"\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(LINE), LINE)))
    )
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, b"GET /api/version HTTP/1.0\r\n\r\n")
    resp_head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in resp_head.lower() and b"Connection: close" in resp_head
    assert body == LINE * 2 and closed


@pytest.mark.parametrize(
    ("method", "answer", "expect_body"),
    [
        ("GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        ("GET", b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", b""),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n", b""),
    ],
    ids=["interim-100", "204", "HEAD"],
)
def test_bodiless_and_interim_responses_keep_the_connection(scripted, gateway_factory, method, answer, expect_body):
    up = scripted(serve_each((answer,), (answer,)))
    gw = gateway_factory(up.url)
    req = b"%s /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n" % method.encode()
    data, closed = exchange(gw.port, req + req)
    parts = data.split(b"HTTP/1.1 ")
    assert parts[0] == b"" and len(parts) == 3, data  # two final responses, no interim one
    for part in parts[1:]:
        assert part.split(b"\r\n\r\n", 1)[1] == expect_body
    assert not closed and [i for i, _ in up.requests] == [0, 0]


def test_close_delimited_body_ends_with_the_connection(scripted, gateway_factory):
    def handler(conn: _Conn, _index: int) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"until ", b"close", pause=0.02)

    up = scripted(handler)
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, GET)
    resp_head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in resp_head and body == b"until close" and closed


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", b"SSH-2.0-OpenSSH\r\n\r\n"],
    ids=["status", "header", "not-http"],
)
def test_unreadable_upstream_head_gives_502(scripted, gateway_factory, answer):
    up = scripted(serve_each((answer,)))
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, GET)
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and closed
    assert up.url.split("//")[1] in json.loads(data.partition(b"\r\n\r\n")[2])["error"]
    assert wait_for(lambda: [f for f in gw.log_lines() if f.get("event") == "upstream_error"])
    assert gw.request("GET", "/metrics")[0] == 200  # the gateway itself is fine


def test_bad_chunk_or_death_mid_stream_cuts_the_response_short(scripted, gateway_factory):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = b"%x\r\n%s\r\n" % (len(LINE), LINE)

    def handler(conn: _Conn, index: int) -> None:
        conn.read_request()
        conn.send(head, first, pause=0.02)
        if index == 0:
            conn.send(b"zz\r\n")  # not a chunk size
        # index 1: the connection just ends mid-stream

    up = scripted(handler)
    gw = gateway_factory(up.url)
    for _ in range(2):
        data, closed = exchange(gw.port, GET)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(first) and closed
    assert up.connections == 2


def test_kept_alive_connection_closed_by_ollama_is_retried_once(scripted, gateway_factory):
    """Ollama reads the second request on a kept-alive connection and closes it unanswered: the gateway sends the
    whole request once more on a fresh connection; the client sees one answer."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def handler(conn: _Conn, index: int) -> None:
        conn.read_request()
        if index == 0:
            conn.send(ok)
            conn.read_request()  # ... and close without an answer
        else:
            conn.send(ok)

    up = scripted(handler)
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, GET)
    assert data.endswith(b"\r\n\r\nok") and not closed
    data, closed = exchange(gw.port, GET)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"ok")
    assert [i for i, _ in up.requests] == [0, 0, 1] and up.requests[1][1] == up.requests[2][1]


def test_streamed_request_body_reaches_ollama_rechunked(scripted, gateway_factory):
    """A non-policy route's chunked body goes on as it arrives (re-chunked); hop-by-hop fields are dropped."""
    up = scripted(serve_each((b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",)))
    gw = gateway_factory(up.url)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"POST /api/blobs/sha256:00 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-End: 2\r\n\r\n")  # fmt: skip
        for part in (b"hello ", b"blob ", b"world"):
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.02)
        s.sendall(b"0\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 201 Created\r\n")
    head, _, body = up.requests[0][1].partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"X-End: 2" in head
    assert b"X-Hop" not in head and b"keep-alive" not in head.lower() and b"Host: 127.0.0.1:" in head
    assert dechunk(body) == b"hello blob world"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"POST /api/show HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
            400,
        ),  # CL+TE: the gateway's own rule (RFC 9112 6.3: smuggling), h11 would pass it
        (b"POST /api/show HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        (b"POST /api/show HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /api/version HTTP/1.1\r\nHost : localhost\r\n\r\n", 400),
        (b"GET /api/version HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (
            b"POST /api/show HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 30 + b"\r\n",
            400,
        ),
        (b"POST /api/show HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ],
    ids=["cl+te", "dup-cl", "neg-cl", "nul-byte", "space-colon", "no-host", "chunk-overflow", "te-gzip", "head-size"],
)
def test_malformed_requests_are_refused_and_never_reach_ollama(scripted, gateway_factory, request_bytes, status):
    up = scripted(serve_each((b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",)))
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, request_bytes)
    assert data.startswith(b"HTTP/1.1 %d " % status) and b"Connection: close" in data and closed, data[:200]
    assert up.requests == []


def test_obs_fold_is_unfolded_before_forwarding(scripted, gateway_factory):
    """RFC 9112 5.2: a proxy replaces obs-fold with a space (h11 does) or refuses; Ollama never sees a fold."""
    up = scripted(serve_each((b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",)))
    gw = gateway_factory(up.url)
    data, _closed = exchange(gw.port, b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nX-F: a\r\n b\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"X-F: a b\r\n" in up.requests[0][1]


def test_pipelined_requests_behind_a_stream_are_answered_in_order(scripted, gateway_factory):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    stream = (head, *[b"%x\r\n%s\r\n" % (len(LINE), LINE)] * 3, b"0\r\n\r\n")
    up = scripted(serve_each(stream, (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo",),
                             (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree",)))  # fmt: skip
    gw = gateway_factory(up.url)
    data, closed = exchange(gw.port, GET * 3)
    first, second, third = data.split(b"HTTP/1.1 200 OK")[1:]
    assert dechunk(first.partition(b"\r\n\r\n")[2]) == LINE * 3
    assert second.endswith(b"two") and third.endswith(b"three") and not closed


def test_slow_client_is_fed_as_it_reads_and_the_connection_is_reused(scripted, gateway_factory):
    """8 MiB from Ollama to a client that reads slowly: the gateway stops reading Ollama while the client's socket
    is full (its RSS does not grow by the body), and the upstream connection serves the next request afterwards."""
    size = 8 << 20
    piece = b"x" * 65536

    def handler(conn: _Conn, _index: int) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size, *[piece] * (size // len(piece)))
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    up = scripted(handler)
    gw = gateway_factory(up.url)

    def rss_kib() -> int:
        with open(f"/proc/{gw.proc.pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    before = rss_kib()
    peak = before
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(GET)
        got = 0
        while got < size:
            got += len(s.recv(65536))
            if got % (1 << 20) < 65536:
                time.sleep(0.05)
                peak = max(peak, rss_kib())
        s.sendall(GET)
        data = b""
        while not data.endswith(b"ok"):
            data += s.recv(65536)
    assert peak - before < 4096, (before, peak)  # KiB: well under the 8 MiB body
    assert [i for i, _ in up.requests] == [0, 0]


def test_large_upload_on_a_fresh_upstream_connection_streams_through(scripted, gateway_factory):
    """A 4 MiB blob upload (non-policy route) as the first request: its body arrives while the gateway is still
    connecting to Ollama, and all of it reaches Ollama."""
    size = 4 << 20
    got = []

    def handler(conn: _Conn, _index: int) -> None:
        request = conn.read_request()
        got.append(len(request.partition(b"\r\n\r\n")[2]))
        conn.send(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    up = scripted(handler)
    gw = gateway_factory(up.url)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
        head = b"POST /api/blobs/sha256:00 HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % size
        s.sendall(head + b"b" * size)
        assert s.recv(65536).startswith(b"HTTP/1.1 201 Created\r\n")
    assert got == [size]


class _Owner:
    def __init__(self) -> None:
        self.heads: list = []
        self.body = b""
        self.done = 0
        self.lost: list = []

    def upstream_data(self, up, head, body, done) -> None:
        if head is not None:
            self.heads.append(head)
        self.body += body
        self.done += done

    def upstream_lost(self, up, why) -> None:
        self.lost.append(why)


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str):
        return None


@pytest.mark.parametrize("raw", [True, False], ids=["framing-kept", "payload-only"])
def test_reader_at_every_split_point(raw):
    """gateway/_http_upstream.py's reader fed a response cut in two at every byte, and in random small pieces: the
    same head, the same body (with its chunk framing, or the payload alone), one `done`, the connection reusable."""
    import random

    from gateway._http_upstream import Pool, Upstream

    body = b"".join(b"%x;e=1\r\n%s\r\n" % (len(p), p) for p in (LINE, b"x" * 300, LINE)) + b"0\r\nT: 1\r\n\r\n"
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    payload = LINE + b"x" * 300 + LINE
    rng = random.Random(7)
    splits = [[i] for i in range(1, len(wire))]
    splits += [sorted(rng.sample(range(1, len(wire)), rng.randint(2, 40))) for _ in range(200)]
    for cuts in splits:
        pool = Pool("http://x", "127.0.0.1", 1)
        up = Upstream(pool)
        up.transport = _Transport()
        owner = _Owner()
        up.start(owner, b"", raw=raw)
        for a, b in zip([0, *cuts], [*cuts, len(wire)]):
            up.data_received(wire[a:b])
        assert [h.status for h in owner.heads] == [200] and owner.lost == [], cuts
        assert owner.body == (body if raw else payload) and owner.done == 1, cuts
        assert pool.idle == [up] and not up.transport.aborted, cuts
