"""The reverse proxy: asyncio and h11 (pure-Python HTTP/1.1, no I/O of its own) on both sides.

One task per client connection. A request on a policy route (_policy.POLICY_ROUTES) is read whole (a rewrite needs
the JSON) up to ``max_body_bytes``; every other request body is streamed to Ollama as it arrives. Responses are
forwarded as h11 parses them: whatever one socket read from Ollama brought (one NDJSON line or SSE event when Ollama
flushes per token) goes to the client before the next read, so nothing is held back and nothing whole is buffered.
When the client's side of the connection ends while Ollama works on its request, the upstream connection is aborted
at once, which Ollama sees as the client going away (a cold load is aborted: llm/llama_server.go
``WaitUntilRunning``), exactly as if the client had talked to Ollama directly.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import time
from http import HTTPStatus
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

import h11

from ._config import GatewayConfig, ModelPolicy
from ._hosts import host_allowed
from ._metrics import Metrics
from ._policy import POLICY_ROUTES, Decision, decide, error_body
from ._rules import names

__all__ = ["Gateway"]

READ_SIZE = 65536
MAX_IDLE_UPSTREAM = 64
TAGS_TTL = 10.0
ALIAS_REFRESH = 30.0
# RFC 9110 §7.6.1 hop-by-hop fields, plus Expect (the gateway answers 100-continue itself) and Host (rewritten).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"proxy-authenticate",
     b"proxy-authorization", b"expect", b"host"}
)  # fmt: skip
KNOWN_ROUTES = frozenset(
    {"/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/pull", "/api/push", "/api/create", "/api/copy",
     "/api/delete", "/v1/models", "/metrics"} | set(POLICY_ROUTES)
)  # fmt: skip
_STATUSES = frozenset(int(s) for s in HTTPStatus)
JSON_HEADERS = [(b"Content-Type", b"application/json; charset=utf-8")]
NOT_FORWARDED = ("pass", "unload.allow", "evict.allow", "evict.queue")


def _raw(headers: Any) -> List[Tuple[bytes, bytes, bytes]]:
    """(name as sent, lower-case name, value): headers go on with the peer's own spelling (Go's Content-Type)."""
    return [(raw, raw.lower(), value) for raw, value in headers.raw_items()]


def route_path(target: bytes) -> str:
    """The path Ollama routes on: Go's net/http parses the request target (an absolute-form
    `http://host/api/generate` included) and gin matches the percent-decoded `URL.Path` (`/api/%67enerate` is
    `/api/generate`), so the policy must see the same, or an encoded path would walk past it."""
    text = target.decode("latin-1")
    if text.lower().startswith(("http://", "https://")):
        rest = text.split("://", 1)[1]
        text = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return unquote(text.split("?", 1)[0], errors="surrogateescape")


class UpstreamError(Exception):
    """Ollama could not be reached, or closed the connection before answering."""


class ClientGone(Exception):
    """The client disconnected (or timed out) while its request was in flight."""


def _nodelay(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Reader(asyncio.StreamReader):
    """A StreamReader that reports the end of the peer's stream at once (``on_eof``), without a pending read."""

    on_eof: Optional[Callable[[], None]] = None

    def feed_eof(self) -> None:
        super().feed_eof()
        if self.on_eof is not None:
            self.on_eof()

    def set_exception(self, exc: BaseException) -> None:
        super().set_exception(exc)
        if self.on_eof is not None:
            self.on_eof()


class _Upstream:
    __slots__ = ("conn", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT)
        self.reused = False

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.abort()


class _Client:
    """One client connection: its h11 state, its socket, and the timer that enforces header/idle timeouts."""

    __slots__ = ("conn", "gone", "name", "reader", "timer", "upstream", "writer")

    def __init__(self, reader: _Reader, writer: asyncio.StreamWriter, max_header_bytes: int) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        peer = writer.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self.timer: Optional[asyncio.TimerHandle] = None
        self.gone = False
        self.upstream: Optional[_Upstream] = None

    def arm(self, seconds: float) -> None:
        """(Re)start the timeout: when it fires the connection is dropped, as Go's ReadHeaderTimeout/IdleTimeout do."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self.writer.transport.abort)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def eof(self) -> None:
        self.gone = True
        if self.upstream is not None:
            self.upstream.abort()

    def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)


class Gateway:
    def __init__(self, cfg: GatewayConfig, log: Callable[..., None], metrics: Optional[Metrics] = None) -> None:
        self.cfg = cfg
        self.log = log
        self.metrics = metrics or Metrics()
        self._idle: List[_Upstream] = []
        host = cfg.upstream_host
        self._authority = (f"[{host}]" if ":" in host else host).encode() + b":%d" % cfg.upstream_port
        self._token = b"Bearer " + cfg.token.encode() if cfg.token else None
        self.server: Optional[asyncio.AbstractServer] = None
        self._tags: Optional[Tuple[float, dict]] = None
        self._aliases: Dict[Tuple[str, ...], ModelPolicy] = {}
        self._refresher: Optional[asyncio.Task] = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> Tuple[str, int]:
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.StreamReaderProtocol:
            reader = _Reader(limit=READ_SIZE, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._client, loop=loop)

        self.server = await loop.create_server(
            factory, self.cfg.listen_host, self.cfg.listen_port, backlog=1024, reuse_address=True
        )
        sockname = self.server.sockets[0].getsockname()
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

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for up in self._idle:
            up.abort()
        self._idle.clear()

    # ---- upstream connections ----------------------------------------------------------------------------------
    async def _connect(self) -> _Upstream:
        try:
            reader, writer = await asyncio.open_connection(self.cfg.upstream_host, self.cfg.upstream_port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.cfg.upstream}: {exc.strerror or exc}") from None
        _nodelay(writer.transport)
        return _Upstream(reader, writer)

    async def _acquire(self) -> _Upstream:
        while self._idle:
            up = self._idle.pop()
            if up.reader.at_eof() or up.writer.is_closing():
                up.abort()
                continue
            up.reused = True
            return up
        return await self._connect()

    def _release(self, up: _Upstream) -> None:
        if up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE and len(self._idle) < MAX_IDLE_UPSTREAM:
            up.conn.start_next_cycle()
            self._idle.append(up)
        else:
            up.abort()

    async def upstream_json(self, path: str) -> Any:
        """GET a small JSON document from Ollama (/api/ps for the eviction rule)."""
        for attempt in (0, 1):
            up = await self._acquire()
            try:
                req = h11.Request(method="GET", target=path, headers=[(b"Host", self._authority)])
                up.writer.write(up.conn.send(req) + up.conn.send(h11.EndOfMessage()))
                chunks = []
                status = 0
                while True:
                    event = up.conn.next_event()
                    if event is h11.NEED_DATA:
                        up.conn.receive_data(await up.reader.read(READ_SIZE))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        chunks.append(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        raise UpstreamError(f"{self.cfg.upstream}{path}: connection closed")
                self._release(up)
                if status != 200:
                    raise UpstreamError(f"{self.cfg.upstream}{path}: HTTP {status}")
                return json.loads(b"".join(chunks))
            except (OSError, h11.ProtocolError, UpstreamError, ValueError) as exc:
                up.abort()
                if attempt == 0 and up.reused:
                    continue
                raise UpstreamError(str(exc)) from None
        raise UpstreamError("unreachable")

    # ---- client connections ------------------------------------------------------------------------------------
    async def _client(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer.transport)
        self.metrics.open_connections += 1
        c = _Client(reader, writer, self.cfg.max_header_bytes)
        try:
            while True:
                event = await self._read_request(c)
                if not isinstance(event, h11.Request):
                    break
                await self._handle(c, event)
                if c.conn.our_state is not h11.DONE or c.conn.their_state is not h11.DONE or c.gone:
                    break
                c.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if c.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                try:  # what Go's net/http answers to a request it cannot parse
                    body = b"400 Bad Request" if status == 400 else b""
                    hdrs = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Connection", b"close")]
                    self._respond(c, status, body, hdrs)
                except h11.LocalProtocolError:
                    pass
        except (OSError, ClientGone, h11.LocalProtocolError):
            pass
        except Exception as exc:  # a gateway bug must cost one connection, never the process  # noqa: BLE001
            self.log(event="internal_error", client=c.name, error=f"{type(exc).__name__}: {exc}")
            if c.conn.our_state is h11.SEND_RESPONSE:
                try:
                    msg = f"keepwarm-gateway: internal error: {type(exc).__name__}"
                    self._respond(c, 500, error_body("ollama", msg, 500), JSON_HEADERS + [(b"Connection", b"close")])
                except h11.LocalProtocolError:
                    pass
        finally:
            c.disarm()
            reader.on_eof = None
            self.metrics.open_connections -= 1
            try:
                writer.close()
            except OSError:
                pass

    async def _read_request(self, c: _Client) -> Any:
        c.arm(self.cfg.idle_timeout)
        first = True
        while True:
            event = c.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await c.reader.read(READ_SIZE)
            if first:
                c.arm(self.cfg.header_timeout)  # the request has started: the header timeout runs from here
                first = False
            c.conn.receive_data(data)

    async def _read_body(self, c: _Client) -> Optional[bytes]:
        """The whole request body, or None when it passes max_body_bytes."""
        chunks = []
        size = 0
        while True:
            event = c.conn.next_event()
            if event is h11.NEED_DATA:
                c.conn.receive_data(await c.reader.read(READ_SIZE))
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.cfg.max_body_bytes:
                    return None
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise ClientGone()

    def _respond(
        self, c: _Client, status: int, body: bytes, headers: Optional[List[Tuple[bytes, bytes]]] = None
    ) -> None:
        hdrs = list(JSON_HEADERS if headers is None else headers)
        hdrs.append((b"Content-Length", b"%d" % len(body)))
        reason = HTTPStatus(status).phrase.encode() if status in _STATUSES else b""
        data = c.conn.send(h11.Response(status_code=status, headers=hdrs, reason=reason))
        if body:
            data += c.conn.send(h11.Data(data=body))
        c.writer.write(data + c.conn.send(h11.EndOfMessage()))

    async def _handle(self, c: _Client, req: h11.Request) -> None:
        path = route_path(req.target)
        method = req.method
        route = path if path in KNOWN_ROUTES else "other"
        headers = req.headers
        if self.cfg.listen_is_loopback:
            host = next((v for n, v in headers if n == b"host"), b"").decode("latin-1")
            if req.target.lower().startswith((b"http://", b"https://")):  # absolute-form: Host comes from the URL
                host = req.target.split(b"://", 1)[1].split(b"/", 1)[0].decode("latin-1") or host
            if not host_allowed(host):
                self.metrics.refusal("host")
                self.log(event="refuse", rule="host", client=c.name, route=route, host=host, status=403)
                self._respond(c, 403, b"", [(b"Connection", b"close")])
                return
            if method == b"OPTIONS" and not any(n == b"origin" for n, _v in headers):
                self._respond(c, 204, b"", [])
                await self._drain_body(c)
                return
        if self._token is not None:
            auth = next((v for n, v in headers if n == b"authorization"), b"")
            if not hmac.compare_digest(auth, self._token):
                self.metrics.refusal("auth")
                self.log(event="refuse", rule="auth", client=c.name, route=route, status=401)
                body = error_body("openai" if path.startswith("/v1/") else "ollama", "unauthorized", 401)
                hdrs = JSON_HEADERS + [
                    (b"WWW-Authenticate", b'Bearer realm="keepwarm-gateway"'),
                    (b"Connection", b"close"),
                ]
                self._respond(c, 401, body, hdrs)
                return
        if path == "/metrics" and method in (b"GET", b"HEAD"):
            await self._drain_body(c)
            self._respond(c, 200, self.metrics.render(), [(b"Content-Type", b"text/plain; version=0.0.4")])
            return
        policy_route = method == b"POST" and path in POLICY_ROUTES
        length = next((v for n, v in headers if n == b"content-length"), None)
        if policy_route and length is not None and int(length) > self.cfg.max_body_bytes:
            self._too_large(c, route, int(length))
            return
        if c.conn.they_are_waiting_for_100_continue:
            c.send(h11.InformationalResponse(status_code=100, headers=[]))
        if policy_route:
            body = await self._read_body(c)
            c.disarm()
            t0 = time.perf_counter()
            if body is None:
                self._too_large(c, route, None)
                return
            decision = decide(self.cfg, path, body, self._aliases)
            self.metrics.request(route, decision.model or "")
            if decision.action == "check_evict":
                decision = await self._evict_rule(decision, path)
            self._log_decision(decision, c.name, route)
            if decision.action == "refuse":
                for rule in decision.rules:
                    self.metrics.refusal(rule)
                extra = [(b"Retry-After", b"%d" % self.cfg.retry_after)] if decision.status == 503 else []
                self._respond(c, decision.status, decision.body or b"", JSON_HEADERS + extra)
                return
            for rule in decision.rules:
                if not rule.startswith(NOT_FORWARDED):
                    self.metrics.rewrite(rule)
            await self._forward(c, req, decision.body if decision.body is not None else body, t0)
            return
        self.metrics.request(route, "")
        await self._forward(c, req, None, time.perf_counter())

    def _too_large(self, c: _Client, route: str, length: Optional[int]) -> None:
        self.metrics.refusal("body_size")
        self.log(event="refuse", rule="body_size", client=c.name, route=route, bytes=length, status=413)
        msg = f"keepwarm-gateway: request body larger than max_body_bytes ({self.cfg.max_body_bytes})"
        self._respond(c, 413, error_body("ollama", msg, 413), JSON_HEADERS + [(b"Connection", b"close")])

    async def _drain_body(self, c: _Client) -> None:
        if c.conn.their_state is h11.SEND_BODY:
            await self._read_body(c)

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

    async def _forward(self, c: _Client, req: h11.Request, body: Optional[bytes], t0: float) -> None:
        connection_tokens = set()
        for name, value in req.headers:
            if name == b"connection":
                connection_tokens.update(t.strip().lower() for t in value.split(b","))
        headers = [(b"Host", self._authority)]
        for raw_name, name, value in _raw(req.headers):
            if name in HOP_BY_HOP or name in connection_tokens:
                continue
            if body is not None and name in (b"content-length", b"transfer-encoding"):
                continue
            if name == b"authorization" and self._token is not None:
                continue  # the gateway's own token is not Ollama's business
            headers.append((raw_name, value))
        if body is not None:
            headers.append((b"Content-Length", b"%d" % len(body)))
        up: Optional[_Upstream] = None
        added = 0.0
        for attempt in (0, 1):
            try:
                up = await self._acquire()
            except UpstreamError as exc:
                self._bad_gateway(c, req, str(exc))
                return
            try:
                data = up.conn.send(h11.Request(method=req.method, target=req.target, headers=headers))
                if body is not None:
                    if body:
                        data += up.conn.send(h11.Data(data=body))
                    up.writer.write(data + up.conn.send(h11.EndOfMessage()))
                    added = time.perf_counter() - t0
                else:
                    up.writer.write(data)
                    added = time.perf_counter() - t0
                    await self._pipe_body(c, up)
                break
            except (OSError, h11.ProtocolError) as exc:
                up.abort()
                if attempt == 0 and up.reused and body is not None:
                    continue
                self._bad_gateway(c, req, f"{self.cfg.upstream}: {exc}")
                return
        assert up is not None
        await self._relay_response(c, req, up, added)

    async def _pipe_body(self, c: _Client, up: _Upstream) -> None:
        c.arm(self.cfg.header_timeout)
        try:
            while True:
                event = c.conn.next_event()
                if event is h11.NEED_DATA:
                    data = await c.reader.read(READ_SIZE)
                    if not data:
                        raise ClientGone()
                    c.conn.receive_data(data)
                    c.arm(self.cfg.header_timeout)
                elif isinstance(event, h11.Data):
                    up.writer.write(up.conn.send(h11.Data(data=event.data)))
                    await up.writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    up.writer.write(up.conn.send(h11.EndOfMessage()))
                    return
                else:
                    raise ClientGone()
        except ClientGone:
            up.abort()
            raise
        finally:
            c.disarm()

    def _bad_gateway(self, c: _Client, req: h11.Request, why: str) -> None:
        self.metrics.upstream_errors += 1
        self.log(event="upstream_error", target=req.target.decode("latin-1"), error=why, status=502)
        if c.conn.our_state is h11.SEND_RESPONSE:
            msg = f"keepwarm-gateway: Ollama is not reachable: {why}"
            self._respond(c, 502, error_body("ollama", msg, 502), JSON_HEADERS + [(b"Connection", b"close")])

    async def _relay_response(self, c: _Client, req: h11.Request, up: _Upstream, added: float) -> None:
        c.upstream = up
        c.reader.on_eof = c.eof
        if c.reader.at_eof():
            c.eof()
        started = False
        pending: List[bytes] = []
        try:
            while True:
                event = up.conn.next_event()
                if event is h11.NEED_DATA:
                    if pending:  # hand over what has arrived before waiting for more (streaming stays live)
                        c.writer.write(b"".join(pending))
                        pending.clear()
                        await c.writer.drain()
                    try:
                        data = await up.reader.read(READ_SIZE)
                    except OSError:
                        data = b""
                    if c.gone:
                        raise ClientGone()
                    up.conn.receive_data(data)
                elif isinstance(event, h11.Data):
                    pending.append(c.conn.send(h11.Data(data=event.data)))
                elif isinstance(event, h11.Response):
                    t1 = time.perf_counter()
                    out = [(raw, v) for raw, n, v in _raw(event.headers) if n not in HOP_BY_HOP]
                    resp = h11.Response(status_code=event.status_code, headers=out, reason=event.reason)
                    pending.append(c.conn.send(resp))
                    self.metrics.added_latency(added + time.perf_counter() - t1)
                    started = True
                elif isinstance(event, h11.EndOfMessage):
                    pending.append(c.conn.send(h11.EndOfMessage()))
                    c.writer.write(b"".join(pending))
                    await c.writer.drain()
                    break
                elif isinstance(event, h11.InformationalResponse):
                    continue
                else:  # ConnectionClosed: Ollama went away
                    if not started:
                        self._bad_gateway(c, req, f"{self.cfg.upstream}: closed the connection without a response")
                        return
                    raise ClientGone()  # cut the response short, as the client would see it from Ollama
        except h11.RemoteProtocolError as exc:
            up.abort()
            if not started:
                self._bad_gateway(c, req, f"{self.cfg.upstream}: {exc}")
                return
            raise ClientGone() from None
        except (ClientGone, OSError, asyncio.CancelledError):
            up.abort()
            if c.gone:
                self.metrics.client_disconnects += 1
                self.log(event="client_gone", target=req.target.decode("latin-1"), action="upstream_aborted",
                         client=c.name)  # fmt: skip
            raise
        finally:
            c.reader.on_eof = None
            c.upstream = None
        self._release(up)
