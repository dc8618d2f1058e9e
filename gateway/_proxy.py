"""The reverse proxy: asyncio streams and h11 (pure-Python HTTP/1.1) on both sides.

One task per client connection. A request on a policy route (_policy.POLICY_ROUTES) is read whole (a rewrite needs
the JSON) up to ``max_body_bytes``; every other request body is streamed to Ollama as it arrives. Responses are
forwarded event by event as h11 parses them (each NDJSON line or SSE event goes out when Ollama flushes it); nothing
is buffered beyond one socket read. While Ollama works on a request, a watcher reads the client socket: EOF there
aborts the upstream connection, which Ollama sees as the client going away (a cold load is aborted: llm/
llama_server.go ``WaitUntilRunning``), exactly as if the client had talked to Ollama directly.
"""

from __future__ import annotations

import asyncio
import hmac
from http import HTTPStatus
import json
import socket
import time
from typing import Any, Callable, List, Optional, Tuple

import h11

from ._config import GatewayConfig
from ._hosts import host_allowed
from ._metrics import Metrics
from ._policy import POLICY_ROUTES, Decision, decide, error_body

__all__ = ["Gateway"]

READ_SIZE = 65536
MAX_IDLE_UPSTREAM = 64
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
JSON_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]


def _raw(headers: Any) -> List[Tuple[bytes, bytes, bytes]]:
    """(name as sent, lower-case name, value): headers go on with the peer's own spelling (Go's Content-Type)."""
    return [(raw, raw.lower(), value) for raw, value in headers.raw_items()]


class UpstreamError(Exception):
    """Ollama could not be reached, or closed the connection before answering."""


class ClientGone(Exception):
    """The client disconnected while its request was in flight."""


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


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

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(READ_SIZE)
            self.conn.receive_data(data)


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

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> Tuple[str, int]:
        self.server = await asyncio.start_server(
            self._client, self.cfg.listen_host, self.cfg.listen_port, backlog=1024, reuse_address=True
        )
        sockname = self.server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def close(self) -> None:
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
        _nodelay(writer)
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
        """GET a small JSON document from Ollama (used for /api/ps by the eviction rule)."""
        for attempt in (0, 1):
            up = await self._acquire()
            try:
                headers = [(b"host", self._authority), (b"accept", b"application/json")]
                up.writer.write(up.conn.send(h11.Request(method="GET", target=path, headers=headers)))
                up.writer.write(up.conn.send(h11.EndOfMessage()))
                chunks = []
                status = 0
                while True:
                    event = await up.next_event()
                    if isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        chunks.append(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
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
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        self.metrics.open_connections += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.cfg.max_header_bytes)
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        try:
            while True:
                event = await self._read_request(conn, reader)
                if not isinstance(event, h11.Request):
                    break
                await self._handle(conn, reader, writer, event, client)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                try:
                    body = f"{status} Bad Request".encode() if status == 400 else b""
                    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
                    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                    writer.write(conn.send(h11.Data(data=body)))
                    writer.write(conn.send(h11.EndOfMessage()))
                except h11.LocalProtocolError:
                    pass
        except (OSError, asyncio.TimeoutError, ClientGone, h11.LocalProtocolError):
            pass
        finally:
            self.metrics.open_connections -= 1
            try:
                writer.close()
            except OSError:
                pass

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        first = True
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            # idle timeout while nothing of the next request has arrived, header timeout once it has started
            fresh = first and not conn.trailing_data[0]
            timeout = self.cfg.idle_timeout if fresh else self.cfg.header_timeout
            first = False
            data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
            conn.receive_data(data)

    async def _read_body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Optional[bytes]:
        """The whole request body, or None when it passes max_body_bytes."""
        chunks = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(READ_SIZE), self.cfg.header_timeout)
                conn.receive_data(data)
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

    async def _respond(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: Optional[List[Tuple[bytes, bytes]]] = None,
        close: bool = False,
    ) -> None:
        hdrs = list(headers if headers is not None else JSON_HEADERS)
        hdrs.append((b"content-length", b"%d" % len(body)))
        if close:
            hdrs.append((b"connection", b"close"))
        reason = HTTPStatus(status).phrase.encode() if status in _STATUSES else b""
        writer.write(conn.send(h11.Response(status_code=status, headers=hdrs, reason=reason)))
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _handle(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: h11.Request,
        client: str,
    ) -> None:  # fmt: skip
        target = req.target.decode("latin-1")
        path = target.split("?", 1)[0]
        method = req.method.decode("latin-1")
        route = path if path in KNOWN_ROUTES else "other"
        headers = req.headers
        if self.cfg.listen_is_loopback:
            host = next((v for n, v in headers if n == b"host"), b"").decode("latin-1")
            if not host_allowed(host):
                self.metrics.refusals["host"] = self.metrics.refusals.get("host", 0) + 1
                self.log(event="refuse", rule="host", client=client, route=route, host=host, status=403)
                await self._respond(conn, writer, 403, b"", headers=[], close=True)
                return
            if method == "OPTIONS" and not any(n == b"origin" for n, _v in headers):
                await self._respond(conn, writer, 204, b"", headers=[])
                await self._drain_body(conn, reader)
                return
        if self._token is not None:
            auth = next((v for n, v in headers if n == b"authorization"), b"")
            if not hmac.compare_digest(auth, self._token):
                self.metrics.refusal("auth")
                self.log(event="refuse", rule="auth", client=client, route=route, status=401)
                body = error_body("openai" if path.startswith("/v1/") else "ollama", "unauthorized", 401)
                hdrs = JSON_HEADERS + [(b"www-authenticate", b'Bearer realm="keepwarm-gateway"')]
                await self._respond(conn, writer, 401, body, headers=hdrs, close=True)
                return
        if path == "/metrics" and method in ("GET", "HEAD"):
            body = self.metrics.render()
            await self._respond(conn, writer, 200, body, headers=[(b"content-type", b"text/plain; version=0.0.4")])
            await self._drain_body(conn, reader)
            return
        length = next((v for n, v in headers if n == b"content-length"), None)
        if length is not None and int(length) > self.cfg.max_body_bytes:
            self.metrics.refusal("body_size")
            self.log(event="refuse", rule="body_size", client=client, route=route, bytes=int(length), status=413)
            msg = f"keepwarm-gateway: request body of {int(length)} bytes exceeds max_body_bytes"
            await self._respond(conn, writer, 413, error_body("ollama", msg, 413), close=True)
            return
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        if method == "POST" and path in POLICY_ROUTES:
            body = await self._read_body(conn, reader)
            t0 = time.perf_counter()
            if body is None:
                self.metrics.refusal("body_size")
                self.log(event="refuse", rule="body_size", client=client, route=route, status=413)
                msg = "keepwarm-gateway: request body exceeds max_body_bytes"
                await self._respond(conn, writer, 413, error_body("ollama", msg, 413), close=True)
                return
            decision = decide(self.cfg, path, body)
            self.metrics.request(route, decision.model or "")
            decision = await self._evict_rule(decision, path)
            self._log_decision(decision, client, route)
            if decision.action == "refuse":
                for rule in decision.rules:
                    self.metrics.refusal(rule)
                extra = []
                if decision.status == 503:
                    extra = [(b"retry-after", b"%d" % self.cfg.retry_after)]
                await self._respond(conn, writer, decision.status, decision.body or b"", headers=JSON_HEADERS + extra)
                return
            for rule in decision.rules:
                if not rule.startswith("pass") and rule not in ("unload.allow", "evict.allow", "evict.queue"):
                    self.metrics.rewrite(rule)
            await self._forward(conn, reader, writer, req, decision.body if decision.body is not None else body, t0)
            return
        self.metrics.request(route, "")
        await self._forward(conn, reader, writer, req, None, time.perf_counter())

    async def _drain_body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> None:
        if conn.their_state is h11.SEND_BODY:
            await self._read_body(conn, reader)

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
            except (UpstreamError, AttributeError):
                return forward  # Ollama will answer the request itself (or the forward fails with 502)
            from ._rules import names

            key = names.name_key(decision.model)
            if any(names.name_key(m.get("name", "")) == key for m in loaded):
                return forward
            pinned = [self.cfg.policy_for(m.get("name", "")) for m in loaded]
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

    async def _forward(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: h11.Request,
        body: Optional[bytes], t0: float,
    ) -> None:  # fmt: skip
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
        added = 0.0
        up: Optional[_Upstream] = None
        for attempt in (0, 1):
            try:
                up = await self._acquire()
            except UpstreamError as exc:
                await self._bad_gateway(conn, writer, req, str(exc))
                return
            try:
                up.writer.write(up.conn.send(h11.Request(method=req.method, target=req.target, headers=headers)))
                if body is not None:
                    if body:
                        up.writer.write(up.conn.send(h11.Data(data=body)))
                    up.writer.write(up.conn.send(h11.EndOfMessage()))
                    added = time.perf_counter() - t0
                    await up.writer.drain()
                else:
                    added = time.perf_counter() - t0
                    await self._pipe_body(conn, reader, up)
                break
            except (OSError, h11.ProtocolError) as exc:
                up.abort()
                if attempt == 0 and up.reused and body is not None:
                    continue
                await self._bad_gateway(conn, writer, req, f"{self.cfg.upstream}: {exc}")
                return
        assert up is not None
        await self._relay_response(conn, reader, writer, req, up, body, headers, added)

    async def _pipe_body(self, conn: h11.Connection, reader: asyncio.StreamReader, up: _Upstream) -> None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(READ_SIZE), self.cfg.header_timeout)
                if not data:
                    up.abort()
                    raise ClientGone()
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                up.writer.write(up.conn.send(h11.Data(data=event.data)))
                await up.writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                up.writer.write(up.conn.send(h11.EndOfMessage()))
                return
            else:
                up.abort()
                raise ClientGone()

    async def _bad_gateway(self, conn: h11.Connection, writer: asyncio.StreamWriter, req: h11.Request, why: str):
        self.metrics.upstream_errors += 1
        self.log(event="upstream_error", target=req.target.decode("latin-1"), error=why, status=502)
        if conn.our_state is h11.SEND_RESPONSE:
            msg = f"keepwarm-gateway: Ollama is not reachable: {why}"
            await self._respond(conn, writer, 502, error_body("ollama", msg, 502), close=True)

    async def _relay_response(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: h11.Request,
        up: _Upstream, body: Optional[bytes], headers: List[Tuple[bytes, bytes]], added: float,
    ) -> None:  # fmt: skip
        gone = False

        async def watch() -> None:
            nonlocal gone
            try:
                while True:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        break
                    conn.receive_data(data)  # a pipelined next request: h11 keeps it for the next cycle
            except OSError:
                pass
            gone = True
            up.abort()

        watcher = asyncio.ensure_future(watch())
        started = False
        try:
            while True:
                try:
                    event = await up.next_event()
                except (OSError, h11.ProtocolError) as exc:
                    if gone:
                        raise ClientGone() from None
                    if not started:
                        await self._bad_gateway(conn, writer, req, f"{self.cfg.upstream}: {exc}")
                        return
                    raise ClientGone() from None  # cut the client's response short: it sees the same as from Ollama
                if gone:
                    raise ClientGone()
                if isinstance(event, h11.Response):
                    t1 = time.perf_counter()
                    out = [(raw, v) for raw, n, v in _raw(event.headers) if n not in HOP_BY_HOP]
                    writer.write(conn.send(h11.Response(status_code=event.status_code, headers=out,
                                                        reason=event.reason)))  # fmt: skip
                    self.metrics.added_latency(added + time.perf_counter() - t1)
                    started = True
                elif isinstance(event, h11.Data):
                    writer.write(conn.send(h11.Data(data=event.data)))
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    break
                elif isinstance(event, h11.InformationalResponse):
                    continue
                else:  # ConnectionClosed before a response
                    if gone:
                        raise ClientGone()
                    if not started:
                        await self._bad_gateway(conn, writer, req, f"{self.cfg.upstream}: closed the connection")
                        return
                    raise ClientGone()
        except ClientGone:
            self.metrics.client_disconnects += 1 if gone else 0
            if gone:
                self.log(event="client_gone", target=req.target.decode("latin-1"), action="upstream_aborted")
            up.abort()
            raise
        except (OSError, asyncio.CancelledError):
            self.metrics.client_disconnects += 1
            up.abort()
            raise
        finally:
            watcher.cancel()
            try:
                await watcher  # the connection's reader must be free before the next request is read
            except asyncio.CancelledError:
                pass
        self._release(up)
