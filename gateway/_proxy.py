"""The reverse proxy: asyncio Protocols on both sides, h11 for what clients send, a lean reader for Ollama's answers.

The client side is the network-facing surface, so every request is parsed by h11 (pure-Python HTTP/1.1, no I/O of
its own; a fresh state machine per request, fed what the previous one left over, so pipelined requests are served
in order), with its limits: request line and headers validated, conflicting or invalid framing refused with 400, a
head over ``max_header_bytes`` refused with 431. The gateway writes its responses itself (status line, headers,
framing) instead of re-encoding them through h11. Ollama's side (gateway/_http_upstream.py) is trusted: its
response bytes are handed on as they come.

No task per connection: callbacks on the event loop do the work, and a coroutine runs only where the gateway must
wait for something else (connecting to Ollama when no kept-alive connection is idle, the eviction rule's
``/api/ps``). A request on a policy route (_policy.POLICY_ROUTES) is read whole (a rewrite needs the JSON) up to
``max_body_bytes``; every other request body goes to Ollama as it arrives. Whatever one socket read from Ollama
brought (one NDJSON line or SSE event when Ollama flushes per token) goes to the client in one write before the next
read, so nothing is held back and nothing whole is buffered. When the client's side of the connection ends while
Ollama works on its request, the upstream connection is aborted at once, which Ollama sees as the client going
away (a cold load is aborted: llm/llama_server.go ``WaitUntilRunning``), exactly as if the client had talked to
Ollama directly.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from http import HTTPStatus
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

import h11

from ._config import GatewayConfig, ModelPolicy
from ._hosts import host_allowed
from ._http_upstream import Head, JsonRequest, Pool, Upstream, UpstreamError, nodelay
from ._metrics import Metrics
from ._policy import POLICY_ROUTES, Decision, decide, error_body
from ._rules import names

__all__ = ["Gateway", "UpstreamError", "route_path"]

TAGS_TTL = 10.0
ALIAS_REFRESH = 30.0
MAX_UNREAD = 64 * 1024  # bytes a client may send ahead (pipelining) while its request is served: then stop reading
# RFC 9110 §7.6.1 hop-by-hop fields, plus Expect (the gateway answers 100-continue itself) and Host (rewritten).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"proxy-authenticate",
     b"proxy-authorization", b"expect", b"host"}
)  # fmt: skip
KNOWN_ROUTES = frozenset(
    {"/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/pull", "/api/push", "/api/create", "/api/copy",
     "/api/delete", "/v1/models", "/metrics"} | set(POLICY_ROUTES)
)  # fmt: skip
_REASONS = {int(s): s.phrase.encode() for s in HTTPStatus}
JSON_HEADERS = [(b"Content-Type", b"application/json; charset=utf-8")]
CLOSE = [(b"Connection", b"close")]
NOT_FORWARDED = ("pass", "unload.allow", "evict.allow", "evict.queue")
_PATHS: Dict[bytes, str] = {}


def route_path(target: bytes) -> str:
    """The path Ollama routes on: Go's net/http parses the request target (an absolute-form
    `http://host/api/generate` included) and gin matches the percent-decoded `URL.Path` (`/api/%67enerate` is
    `/api/generate`), so the policy must see the same, or an encoded path would walk past it."""
    path = _PATHS.get(target)
    if path is not None:
        return path
    text = target.decode("latin-1")
    if text.lower().startswith(("http://", "https://")):
        rest = text.split("://", 1)[1]
        text = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    path = unquote(text.split("?", 1)[0], errors="surrogateescape")
    if len(_PATHS) < 1024:  # clients choose targets: a bounded cache
        _PATHS[target] = path
    return path


def _response(status: int, body: bytes, headers: List[Tuple[bytes, bytes]], head_only: bool = False) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    if not head_only:
        lines.append(body)
    return b"".join(lines)


class _Client(asyncio.Protocol):
    """One client connection: h11 parses its requests; callbacks forward them and relay Ollama's answers."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.cfg = gw.cfg
        self.transport: Any = None
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=gw.cfg.max_header_bytes)
        self.name = "?"
        self.deadline = 0.0
        self.closed = False
        self.pumping = False
        self.again = False
        self.reading = True  # parsing the client's request (head, then body); False while it is served
        self.waiting = True  # between requests: the idle timeout runs
        self.unread = 0
        self.head_bytes = 0  # bytes received since this request began, while its head is incomplete
        self.pauses: set = set()  # why the client socket is not read now
        self.task: Optional[asyncio.Future] = None
        self._reset()

    def _reset(self) -> None:
        self.req: Any = None
        self.path = ""
        self.route = ""
        self.fwd: List[Tuple[bytes, bytes, bytes]] = []
        self.tokens: Tuple[bytes, ...] = ()
        self.body: Optional[List[bytes]] = None  # a policy route's body, read whole
        self.size = 0
        self.pipe = False  # the request body goes to Ollama as it arrives
        self.chunked = False
        self.complete = False  # the whole request has been read
        self.out: List[bytes] = []  # bytes for Ollama not written yet
        self.up: Optional[Upstream] = None
        self.sent = False
        self.replay: Optional[bytes] = None  # the whole request: resent once if a kept-alive connection was stale
        self.retried = False
        self.started = False  # the response head went to the client
        self.close_after = False
        self.keep_alive = True
        self.http10 = False
        self.t0 = 0.0
        self.added = 0.0

    # ---- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        nodelay(transport)
        peer = transport.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self.gw.metrics.open_connections += 1
        self.gw.clients.add(self)
        self._arm(self.cfg.idle_timeout)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.closed and self.transport is None:
            return
        self.closed = True
        self.reading = False
        self.transport = None
        self.gw.metrics.open_connections -= 1
        self.gw.clients.discard(self)
        self._disarm()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._client_gone()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self.req is None:
            self.head_bytes += len(data)
        if self.waiting:
            self.waiting = False
            self._arm(self.cfg.header_timeout)  # the request has started: the header timeout runs from here
        if self.reading:
            self._pump()
        else:
            self.unread += len(data)
            if self.unread > MAX_UNREAD:
                self._pause("unread")

    def eof_received(self) -> bool:
        if self.up is not None or self.task is not None:  # the client left while its request is in flight
            self._client_gone()
            self._close()
        else:
            self.conn.receive_data(b"")
            self._pump()
        return False

    def pause_writing(self) -> None:  # the client reads slower than Ollama writes: stop reading Ollama
        if self.up is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.transport.resume_reading()

    # ---- Ollama's side (gateway/_http_upstream.py calls these) --------------------------------------------------
    def upstream_data(self, up: Upstream, head: Optional[Head], body: bytes, done: bool) -> None:
        try:
            if head is not None:
                t1 = time.perf_counter()
                if self.reading or not self.keep_alive or head.until_close:
                    self.close_after = True
                self.started = True
                self.transport.write(self._head_bytes(head) + body)
                self.gw.metrics.added_latency(self.added + time.perf_counter() - t1)
            elif body:
                self.transport.write(body)
            if done:
                self.up = None
                if self.close_after:
                    self._close()
                else:
                    self._next()
        except Exception as exc:  # a gateway bug must cost one connection, never the process  # noqa: BLE001
            self._internal_error(exc)

    def upstream_lost(self, up: Upstream, why: str) -> None:
        if up is not self.up:
            return
        self.up = None
        if self.closed:
            return
        if self.started:
            self._close()  # cut the response short, as the client would see it from Ollama
        elif self.replay is not None and up.reused and not up.got_bytes and not self.retried:
            self.retried = True  # a kept-alive connection Ollama had closed: once more on a fresh one
            self.out = [self.replay]
            self.sent = False
            self._send()
            self._flush()
        else:
            self._bad_gateway(why)

    def upstream_pause(self) -> None:  # Ollama reads a streamed request body slower than the client sends it
        self._pause("upstream")

    def upstream_resume(self) -> None:
        self._resume("upstream")

    # ---- the client's requests -----------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Handle the events h11 has parsed; then write what is for Ollama in one go."""
        if self.pumping:
            self.again = True
            return
        self.pumping = True
        try:
            while True:
                self.again = False
                while self.reading:
                    event = self.conn.next_event()
                    kind = type(event)
                    if kind is h11.Data:
                        self._on_data(event.data)
                    elif kind is h11.Request:
                        self._on_request(event)
                    elif kind is h11.EndOfMessage:
                        self._on_end()
                    elif event is h11.NEED_DATA or event is h11.PAUSED:
                        break
                    else:  # ConnectionClosed: the client ended the connection between requests
                        self._close()
                self._flush()
                if not self.again:
                    break
        except h11.RemoteProtocolError as exc:
            self._bad_request(exc)
        except Exception as exc:  # a gateway bug must cost one connection, never the process  # noqa: BLE001
            self._internal_error(exc)
        finally:
            self.pumping = False

    def _on_request(self, req: h11.Request) -> None:
        gw = self.gw
        self.req = req
        if self.head_bytes > self.cfg.max_header_bytes:  # h11 limits incomplete heads only: a whole one can be big
            size = self.head_bytes - len(self.conn.trailing_data[0])
            if size > self.cfg.max_header_bytes:
                raise h11.RemoteProtocolError("request head larger than max_header_bytes", error_status_hint=431)
        self.path = path = route_path(req.target)
        self.route = route = path if path in KNOWN_ROUTES else "other"
        method = req.method
        self.http10 = req.http_version != b"1.1"
        host = b""
        auth = b""
        length = None
        origin = False
        fwd = self.fwd
        for raw, value in req.headers.raw_items():
            name = raw.lower()
            if name == b"host":
                host = host or value
            elif name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                self.chunked = True
            elif name == b"connection":
                self.tokens += tuple(t.strip(b" \t").lower() for t in value.split(b","))
            elif name == b"origin":
                origin = True
            fwd.append((raw, name, value))
        if self.chunked and length is not None:  # RFC 9112 §6.3: a smuggling attempt; h11 would take the chunks
            raise h11.RemoteProtocolError("Transfer-Encoding and Content-Length both present", error_status_hint=400)
        self.keep_alive = not self.http10 and b"close" not in self.tokens
        if gw.loopback:
            text = host.decode("latin-1")
            if req.target[:8].lower().startswith((b"http://", b"https://")):  # absolute-form: Host is the URL's
                text = req.target.split(b"://", 1)[1].split(b"/", 1)[0].decode("latin-1") or text
            if not host_allowed(text):
                gw.metrics.refusal("host")
                gw.log(event="refuse", rule="host", client=self.name, route=route, host=text, status=403)
                self._answer(403, b"", [], close=True)
                return
            if method == b"OPTIONS" and not origin:
                self._answer(204, b"", [])
                return
        if gw.token is not None and not hmac.compare_digest(auth, gw.token):
            gw.metrics.refusal("auth")
            gw.log(event="refuse", rule="auth", client=self.name, route=route, status=401)
            body = error_body("openai" if path.startswith("/v1/") else "ollama", "unauthorized", 401)
            challenge = (b"WWW-Authenticate", b'Bearer realm="keepwarm-gateway"')
            self._answer(401, body, [*JSON_HEADERS, challenge], close=True)
            return
        if path == "/metrics" and method in (b"GET", b"HEAD"):
            self._answer(200, gw.metrics.render(), [(b"Content-Type", b"text/plain; version=0.0.4")])
            return
        policy_route = method == b"POST" and path in POLICY_ROUTES
        if policy_route and length is not None and int(length) > self.cfg.max_body_bytes:
            self._too_large(int(length))
            return
        if self.conn.they_are_waiting_for_100_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.t0 = time.perf_counter()
        if policy_route:
            self.body = []
            return
        gw.metrics.request(route, "")
        self.pipe = True
        self.out.append(self._upstream_head(None))
        self._send()

    def _on_data(self, data: bytes) -> None:
        if self.body is not None:
            self.size += len(data)
            if self.size > self.cfg.max_body_bytes:
                self._too_large(None)
                return
            self.body.append(data)
        elif self.pipe:
            self.out.append(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            self.replay = None
            self._arm(self.cfg.header_timeout)
        # else: the request was answered already (OPTIONS, /metrics); the rest of its body is dropped

    def _on_end(self) -> None:
        self.complete = True
        if self.body is not None:
            body = b"".join(self.body)
            self.body = None
            self.reading = False
            self._disarm()
            self._decide(body)
        elif self.pipe:
            if self.chunked:
                self.out.append(b"0\r\n\r\n")
            self.reading = False
            self._disarm()
            if self.up is not None:
                self.up.request_done = True
        else:
            self._next()

    def _decide(self, body: bytes) -> None:
        gw = self.gw
        self.t0 = time.perf_counter()
        decision = decide(self.cfg, self.path, body, gw._aliases)
        gw.metrics.request(self.route, decision.model or "")
        if decision.action == "check_evict":
            self.task = asyncio.ensure_future(self._evict(decision, body))
        else:
            self._decided(decision, body)

    async def _evict(self, decision: Decision, body: bytes) -> None:
        try:
            decision = await self.gw._evict_rule(decision, self.path)
            self.task = None
            if not self.closed:
                self._decided(decision, body)
                self._flush()
        except Exception as exc:  # noqa: BLE001
            self.task = None
            self._internal_error(exc)

    def _decided(self, decision: Decision, body: bytes) -> None:
        gw = self.gw
        gw._log_decision(decision, self.name, self.route)
        if decision.action == "refuse":
            for rule in decision.rules:
                gw.metrics.refusal(rule)
            extra = [(b"Retry-After", b"%d" % self.cfg.retry_after)] if decision.status == 503 else []
            self._answer(decision.status, decision.body or b"", JSON_HEADERS + extra)
            return
        for rule in decision.rules:
            if not rule.startswith(NOT_FORWARDED):
                gw.metrics.rewrite(rule)
        payload = decision.body if decision.body is not None else body
        self.out.append(self._upstream_head(payload) + payload)
        self._send()

    def _upstream_head(self, body: Optional[bytes]) -> bytes:
        """The request line and headers for Ollama: hop-by-hop fields dropped, Host set to Ollama's, and with a body
        the gateway read whole (and may have rewritten), its own Content-Length."""
        req = self.req
        parts = [req.method, b" ", req.target, b" HTTP/1.1\r\n", self.gw.host_line]
        tokens = self.tokens
        strip_auth = self.gw.token is not None  # the gateway's own token is not Ollama's business
        for raw, name, value in self.fwd:
            if name in HOP_BY_HOP or name in tokens:
                continue
            if body is not None and name in (b"content-length", b"transfer-encoding"):
                continue
            if strip_auth and name == b"authorization":
                continue
            parts += (raw, b": ", value, b"\r\n")
        if body is not None:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts.append(b"\r\n")
        return b"".join(parts)

    def _send(self) -> None:
        """Take a kept-alive connection to Ollama, or connect (the request waits in self.out meanwhile)."""
        up = self.gw.pool.take()
        if up is not None:
            self.up = up
            return
        if self.pipe:
            self.reading = False  # the body waits in the socket until the connection is there
        self.task = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            up = await self.gw.pool.connect()
        except UpstreamError as exc:
            self.task = None
            self._bad_gateway(str(exc))
            return
        self.task = None
        if self.closed:
            self.gw.pool.release(up)
            return
        self.up = up
        if self.pipe and not self.complete:
            self.reading = True
            self.unread = 0
            self._resume("unread")
            self._pump()
        else:
            self._flush()

    def _flush(self) -> None:
        up = self.up
        if up is None or not self.out:
            return
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        if self.sent:
            up.transport.write(data)
            return
        self.sent = True
        self.replay = data if self.complete else None
        up.start(self, data, head_request=self.req.method == b"HEAD", raw=not self.http10)
        up.request_done = self.complete
        self.added = time.perf_counter() - self.t0

    def _head_bytes(self, head: Head) -> bytes:
        """Ollama's status and header lines as it sent them, without hop-by-hop fields; an HTTP/1.0 client gets the
        payload without chunk framing, delimited by the connection's end."""
        parts = [b"HTTP/1.1 %d %s\r\n" % (head.status, head.reason)]
        tokens = head.tokens
        http10 = self.http10
        for name, line in head.headers:
            if name in HOP_BY_HOP or name in tokens or (http10 and name == b"transfer-encoding"):
                continue
            parts += (line, b"\r\n")
        if self.close_after:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    # ---- the gateway's own answers ------------------------------------------------------------------------------
    def _answer(self, status: int, body: bytes, headers: List[Tuple[bytes, bytes]], close: bool = False) -> None:
        """A response the gateway makes itself. Closing, it says so; keeping the connection, the rest of the request
        body is read and dropped before the next request."""
        if self.closed:
            return
        close = close or not self.keep_alive
        head_only = self.req is not None and self.req.method == b"HEAD"
        self.started = True
        self.transport.write(_response(status, body, headers + CLOSE if close else headers, head_only))
        if close:
            self._close()
        elif self.complete:
            self._next()
        else:
            self.reading = True  # the body's events are dropped until EndOfMessage starts the next request

    def _too_large(self, length: Optional[int]) -> None:
        gw = self.gw
        gw.metrics.refusal("body_size")
        gw.log(event="refuse", rule="body_size", client=self.name, route=self.route, bytes=length, status=413)
        msg = f"keepwarm-gateway: request body larger than max_body_bytes ({self.cfg.max_body_bytes})"
        self.body = None
        self._answer(413, error_body("ollama", msg, 413), JSON_HEADERS, close=True)

    def _bad_gateway(self, why: str) -> None:
        gw = self.gw
        gw.metrics.upstream_errors += 1
        gw.log(event="upstream_error", target=self.req.target.decode("latin-1"), error=why, status=502)
        if not self.started and not self.closed:
            msg = f"keepwarm-gateway: Ollama is not reachable: {why}"
            self._answer(502, error_body("ollama", msg, 502), JSON_HEADERS, close=True)
        else:
            self._close()

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        """What Go's net/http answers to a request it cannot parse (400, or 431 for a head over the limit)."""
        if self.started or self.closed:
            self._close()
            return
        status = exc.error_status_hint
        body = b"400 Bad Request" if status == 400 else b""
        self.req = None
        self._answer(status, body, [(b"Content-Type", b"text/plain; charset=utf-8")], close=True)

    def _internal_error(self, exc: BaseException) -> None:
        self.gw.log(event="internal_error", client=self.name, error=f"{type(exc).__name__}: {exc}")
        if not self.started and not self.closed:
            msg = f"keepwarm-gateway: internal error: {type(exc).__name__}"
            self._answer(500, error_body("ollama", msg, 500), JSON_HEADERS, close=True)
        self._close()

    # ---- connection state -----------------------------------------------------------------------------------------
    def _next(self) -> None:
        """The response is complete and the connection stays: a fresh h11 state machine gets what the client sent
        after this request (pipelining)."""
        data, closed = self.conn.trailing_data
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.cfg.max_header_bytes)
        self._reset()
        self.reading = True
        self.unread = 0
        self.head_bytes = len(data)
        if self.pauses:  # whatever paused the client socket belonged to the request that is over
            self.pauses.clear()
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        if data:
            self.conn.receive_data(data)
            self.waiting = False
            self._arm(self.cfg.header_timeout)
        else:
            self.waiting = True
            self._arm(self.cfg.idle_timeout)
        if closed:
            self.conn.receive_data(b"")
        self._pump()

    def _drop_upstream(self) -> Optional[Upstream]:
        """Abort the request in flight at Ollama, if any (Ollama sees its client leave, as when the client talks to
        it directly); the connection is not reused."""
        up = self.up
        if up is not None:
            self.up = None
            up.owner = None
            up.abort()
        return up

    def _client_gone(self) -> None:
        if self._drop_upstream() is None:
            return
        self.gw.metrics.client_disconnects += 1
        self.gw.log(event="client_gone", target=self.req.target.decode("latin-1"), action="upstream_aborted",
                    client=self.name)  # fmt: skip

    def _close(self) -> None:
        """End the connection (what was written is still sent); a request still in flight is aborted upstream."""
        self.reading = False
        self._disarm()
        self._drop_upstream()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        """(Re)start the timeout: past it the connection is dropped, as Go's ReadHeaderTimeout/IdleTimeout do (the
        gateway's sweep checks every tenth of the shortest timeout, so no timer is made per request)."""
        self.deadline = self.gw.loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = 0.0

    def _timeout(self) -> None:
        self.deadline = 0.0
        if self.transport is not None:
            self.transport.abort()

    def _pause(self, why: str) -> None:
        if not self.pauses and self.transport is not None:
            self.transport.pause_reading()
        self.pauses.add(why)

    def _resume(self, why: str) -> None:
        if why in self.pauses:
            self.pauses.discard(why)
            if not self.pauses and self.transport is not None and not self.closed:
                self.transport.resume_reading()


class Gateway:
    def __init__(self, cfg: GatewayConfig, log: Callable[..., None], metrics: Optional[Metrics] = None) -> None:
        self.cfg = cfg
        self.log = log
        self.metrics = metrics or Metrics()
        host = cfg.upstream_host
        self._authority = (f"[{host}]" if ":" in host else host).encode() + b":%d" % cfg.upstream_port
        self.host_line = b"Host: " + self._authority + b"\r\n"
        self.token = b"Bearer " + cfg.token.encode() if cfg.token else None
        self.loopback = cfg.listen_is_loopback
        self.pool = Pool(cfg.upstream, cfg.upstream_host, cfg.upstream_port)
        self.loop: Any = None
        self.clients: set = set()
        self._sweep_every = max(0.01, min(1.0, cfg.header_timeout / 10, cfg.idle_timeout / 10))
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self.server: Optional[asyncio.AbstractServer] = None
        self._tags: Optional[Tuple[float, dict]] = None
        self._aliases: Dict[Tuple[str, ...], ModelPolicy] = {}
        self._refresher: Optional[asyncio.Task] = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> Tuple[str, int]:
        self.loop = loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Client(self), self.cfg.listen_host, self.cfg.listen_port, backlog=1024, reuse_address=True
        )
        sockname = self.server.sockets[0].getsockname()
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        if self.cfg.models:
            self._refresher = asyncio.ensure_future(self._refresh_aliases())
        return sockname[0], sockname[1]

    async def _refresh_aliases(self) -> None:
        """Every ALIAS_REFRESH s: the other tags of each pinned model's blob (/api/tags digests), so that a client
        naming `llama3.2:3b` meets the policy of the pinned `llama3.2` when both are one blob (one runner)."""
        while True:
            try:
                tags = await self.upstream_json("/api/tags")
                digests = names.tags_digests(tags)
                self._tags = (time.monotonic(), digests)
                shown = {names.name_key(str(m["name"])): str(m["name"]) for m in tags.get("models") or []
                         if isinstance(m, dict) and m.get("name")}  # fmt: skip
                pinned_keys = {m.key for m in self.cfg.models}
                aliases: Dict[Tuple[str, ...], ModelPolicy] = {}
                for policy in self.cfg.models:
                    digest = digests.get(policy.key)
                    for key, other in digests.items():
                        if digest and other == digest and key not in pinned_keys:
                            aliases[key] = policy
                if aliases != self._aliases:
                    self._aliases = aliases
                    text = ",".join(f"{shown.get(k, k[2])}={p.name}" for k, p in sorted(aliases.items()))
                    self.log(event="aliases", result="ok", aliases=text or "-")
            except (UpstreamError, AttributeError, ValueError, OSError) as exc:
                self.log(event="aliases", result="error", error=str(exc))
            await asyncio.sleep(ALIAS_REFRESH)

    def _sweep(self) -> None:
        """Drop the connections past their header or idle timeout."""
        now = self.loop.time()
        for client in [c for c in self.clients if 0.0 < c.deadline <= now]:
            client._timeout()
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._refresher is not None:
            self._refresher.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.pool.close()

    # ---- the gateway's own look-ups ----------------------------------------------------------------------------
    async def upstream_json(self, path: str) -> Any:
        """GET a small JSON document from Ollama (/api/ps for the eviction rule, /api/tags for aliases)."""
        request = b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self.host_line)
        for attempt in (0, 1):
            up = await self.pool.get()
            job = JsonRequest()
            up.start(job, request)
            try:
                status, data = await job.future
            except UpstreamError:
                if attempt == 0 and up.reused and not up.got_bytes:
                    continue  # a kept-alive connection Ollama had closed
                raise
            if status != 200:
                raise UpstreamError(f"{self.cfg.upstream}{path}: HTTP {status}")
            try:
                return json.loads(data)
            except ValueError as exc:
                raise UpstreamError(f"{self.cfg.upstream}{path}: {exc}") from None
        raise UpstreamError("unreachable")

    def _log_decision(self, decision: Decision, client: str, route: str) -> None:
        self.log(
            event="decision",
            action=decision.action,
            rule=",".join(decision.rules),
            route=route,
            model=decision.model,
            pinned=decision.policy.name if decision.policy else None,
            detail=decision.details or None,
            status=decision.status if decision.action == "refuse" else None,
            client=client,
        )

    async def _runner_keys(self) -> Callable[[str], Optional[str]]:
        """name -> runner key (the manifest digest from /api/tags, cached 10 s): tags of one blob share a runner."""
        now = time.monotonic()
        if self._tags is None or now - self._tags[0] > TAGS_TTL:
            self._tags = (now, names.tags_digests(await self.upstream_json("/api/tags")))
        digests = self._tags[1]

        def key_of(name: str) -> Optional[str]:
            digest = digests.get(names.name_key(name))
            return names.runner_key(digest=digest) if digest else None

        return key_of

    async def _evict_rule(self, decision: Decision, path: str) -> Decision:
        """Refuse (503), queue or allow a load that would evict a pinned model (sched.go ``processPending``: at the
        ``OLLAMA_MAX_LOADED_MODELS`` cap one runner is evicted; idle pinned runners go when nothing shorter is idle).
        """
        if decision.action != "check_evict" or decision.model is None:
            return decision
        forward = decision._replace(action="forward")
        cap = self.cfg.max_loaded_models
        assert cap is not None
        deadline = time.monotonic() + self.cfg.queue_timeout
        waited = False
        while True:
            try:
                loaded = (await self.upstream_json("/api/ps")).get("models") or []
                key_of = await self._runner_keys()
            except (UpstreamError, AttributeError):
                return forward  # Ollama will answer the request itself (or the forward fails with 502)
            if names.find_runner(loaded, decision.model, key_of) is not None:
                return forward  # loaded (under this name or another tag of the same blob): no load, no eviction
            pinned = [
                next((m for m in self.cfg.models if names.find_runner([e], m.name, key_of)), None) for e in loaded
            ]
            if len(loaded) < cap or not loaded or any(p is None for p in pinned):
                if waited:
                    return forward._replace(rules=[*decision.rules, "evict.queue"], details="slot freed")
                return forward
            strict = "allow"
            for p in pinned:
                assert p is not None
                if p.evict == "refuse" or (p.evict == "queue" and strict == "allow"):
                    strict = p.evict
            victims = ",".join(p.name for p in pinned if p is not None)
            if strict == "allow":
                return forward._replace(rules=[*decision.rules, "evict.allow"], details=f"may evict {victims}")
            if strict == "queue" and time.monotonic() < deadline:
                waited = True
                await asyncio.sleep(0.5)
                continue
            flavour = POLICY_ROUTES[path][0]
            msg = (
                f"keepwarm-gateway: loading {decision.model!r} would evict pinned model(s) {victims} "
                f"(OLLAMA_MAX_LOADED_MODELS={cap} reached): refused by policy evict={strict}; retry later"
            )
            return decision._replace(
                action="refuse", rules=["evict." + ("queue_timeout" if strict == "queue" else "refuse")],
                body=error_body(flavour, msg, 503), status=503, details=f"pinned loaded: {victims}",
            )  # fmt: skip
