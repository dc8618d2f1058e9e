"""Ollama's side of the gateway: a pool of kept-alive connections and a lean HTTP/1.1 response reader.

Ollama is on loopback behind the gateway and is trusted (it is the server the gateway protects, not a client), so its
responses are not re-validated or re-encoded: the reader finds the status line, the header lines and the framing
(``Content-Length``, ``chunked``, or until close; none for ``HEAD``, 1xx, 204 and 304, RFC 9112 §6.3), and hands on
the body's bytes exactly as they came, chunk-size lines included, so one socket read from Ollama (one NDJSON line or
SSE event: Ollama flushes per token) becomes one write to the client. It tracks the chunk boundaries only to know
where the response ends (so the connection can be reused) and, for an HTTP/1.0 client or the gateway's own JSON
look-ups, to hand on the payload without the chunk framing. Anything it cannot read (a bad status line, a header
line without a colon, a bad chunk size, a head over 64 KiB) ends the connection with an :class:`UpstreamError`.

The owner of a response (a client connection, or :class:`JsonRequest`) gets ``upstream_data(up, head, body, done)``
once per socket read and ``upstream_lost(up, why)`` if the connection ends first.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, List, Optional, Tuple

__all__ = ["Head", "JsonRequest", "Pool", "Upstream", "UpstreamError"]

MAX_HEAD = 64 * 1024
MAX_LINE = 4096
MAX_IDLE = 64

_HEAD, _LENGTH, _SIZE, _DATA, _CRLF, _TRAILER, _UNTIL_CLOSE, _DONE, _IDLE = range(9)
_HEX = frozenset(b"0123456789abcdefABCDEF")


class UpstreamError(Exception):
    """Ollama could not be reached, closed the connection before answering, or sent what is not HTTP/1.1."""


def nodelay(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class Head:
    """A response head as Ollama sent it: status, reason, and its header lines (lower-case name, the line itself)."""

    __slots__ = ("chunked", "close", "headers", "reason", "status", "tokens", "until_close")

    def __init__(self, status: int, reason: bytes, headers: List[Tuple[bytes, bytes]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.chunked = False
        self.close = False
        self.until_close = False
        self.tokens: Tuple[bytes, ...] = ()


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t")
    if not size or len(size) > 16 or not _HEX.issuperset(size):
        raise UpstreamError(f"bad chunk size line {line[:40]!r}")
    return int(size, 16)


class Upstream(asyncio.Protocol):
    """One connection to Ollama, reading one response at a time for its current owner."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.owner: Any = None
        self.state = _IDLE
        self.buf = b""
        self.remaining = 0
        self.raw = True
        self.head_request = False
        self.reused = False
        self.alive = True
        self.got_bytes = False
        self.keep = True
        self.request_done = True

    # ---- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        nodelay(transport)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.alive = False
        self.pool.discard(self)
        owner, self.owner = self.owner, None
        if owner is not None:
            why = f"{self.pool.url}: " + (str(exc) if exc else "closed the connection without a response")
            owner.upstream_lost(self, why)

    def eof_received(self) -> bool:
        if self.owner is not None and self.state == _UNTIL_CLOSE:  # a close-delimited body ends here
            owner, self.owner = self.owner, None
            self.state = _IDLE
            self.keep = False
            body, self.buf = self.buf, b""
            owner.upstream_data(self, None, body, True)
        return False  # close the transport; connection_lost tells an owner still waiting

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_pause()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resume()

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:  # bytes nobody asked for: the connection is out of step, never reuse it
            self.keep = False
            self.abort()
            return
        self.got_bytes = True
        if self.buf:
            data = self.buf + data
            self.buf = b""
        try:
            head, body, done = self._parse(data)
        except (UpstreamError, ValueError) as exc:
            self.owner = None
            self.keep = False
            self.abort()
            owner.upstream_lost(self, f"{self.pool.url}: {exc}")
            return
        if done:
            self.owner = None
            self.state = _IDLE
            self.pool.release(self)
        if head is not None or body or done:
            owner.upstream_data(self, head, body, done)

    # ---- use ------------------------------------------------------------------------------------------------------
    def start(self, owner: Any, data: bytes, *, head_request: bool = False, raw: bool = True) -> None:
        """Send one request (head, and body when it is whole) and read its response for ``owner``. ``raw``: hand
        on the body's bytes with their framing (chunk-size lines), else the payload alone."""
        self.owner = owner
        self.state = _HEAD
        self.buf = b""
        self.raw = raw
        self.head_request = head_request
        self.got_bytes = False
        self.request_done = True
        self.transport.write(data)

    def abort(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.abort()

    # ---- the reader ---------------------------------------------------------------------------------------------
    def _parse(self, buf: bytes) -> Tuple[Optional[Head], bytes, bool]:
        """Consume what this read brought: (the head if it completed now, the body bytes to hand on, done)."""
        head = None
        pos = 0
        start = 0
        end = len(buf)
        raw = self.raw
        out: List[bytes] = []
        state = self.state
        while pos < end or state == _DONE:
            if state == _HEAD:
                i = buf.find(b"\r\n\r\n", pos)
                if i < 0:
                    if end - pos > MAX_HEAD:
                        raise UpstreamError(f"response head larger than {MAX_HEAD} bytes")
                    break
                head = self._head(buf[pos:i])
                pos = start = i + 4
                if head is None:  # 1xx interim response (100 Continue): the gateway answered the client's itself
                    state = _HEAD
                    continue
                state = self._framing(head)
            elif state in (_LENGTH, _DATA):
                take = min(end - pos, self.remaining)
                if not raw:
                    out.append(buf[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining:
                    break
                state = _DONE if state == _LENGTH else _CRLF
            elif state == _SIZE:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > MAX_LINE:
                        raise UpstreamError("chunk size line too long")
                    break
                self.remaining = _chunk_size(buf[pos:i])
                pos = i + 2
                state = _DATA if self.remaining else _TRAILER
            elif state == _CRLF:
                if end - pos < 2:
                    if buf[pos:end] != b"\r":
                        raise UpstreamError("chunk not followed by CRLF")
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise UpstreamError("chunk not followed by CRLF")
                pos += 2
                state = _SIZE
            elif state == _TRAILER:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > MAX_LINE:
                        raise UpstreamError("trailer line too long")
                    break
                line = buf[pos:i]
                pos = i + 2
                if not line:
                    state = _DONE
            elif state == _UNTIL_CLOSE:
                if not raw:
                    out.append(buf[pos:])
                pos = end
            else:  # _DONE
                if pos < end:  # bytes after the end of the response: Ollama does not do that, so never reuse
                    self.keep = False
                return head, (buf[start:pos] if raw else b"".join(out)), True
        self.state = state
        if pos < end:
            self.buf = buf[pos:]
        if head is None and start == 0 and self.state == _HEAD:
            return None, b"", False
        return head, (buf[start:pos] if raw else b"".join(out)), False

    def _head(self, block: bytes) -> Optional[Head]:
        lines = block.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise UpstreamError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return None
        headers = []
        head = Head(status, parts[2] if len(parts) == 3 else b"", headers)
        length = -1
        close = parts[0] != b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                raise UpstreamError(f"bad header line {line[:80]!r}")
            lname = name.lower()
            if lname == b"transfer-encoding":
                head.chunked = value.strip(b" \t").lower().endswith(b"chunked")
            elif lname == b"content-length":
                length = int(value)
            elif lname == b"connection":
                head.tokens = tuple(t.strip(b" \t").lower() for t in value.split(b","))
                close = close or b"close" in head.tokens
            headers.append((lname, line))
        head.close = close
        self.remaining = length
        return head

    def _framing(self, head: Head) -> int:
        """RFC 9112 §6.3: which bytes after the head are the body."""
        if head.close:
            self.keep = False
        if self.head_request or head.status in (204, 304):
            return _DONE
        if head.chunked:
            return _SIZE
        if self.remaining >= 0:
            return _LENGTH if self.remaining else _DONE
        head.until_close = True
        self.keep = False
        return _UNTIL_CLOSE


class Pool:
    """Kept-alive connections to Ollama, up to MAX_IDLE of them idle."""

    def __init__(self, url: str, host: str, port: int) -> None:
        self.url = url
        self.host = host
        self.port = port
        self.idle: List[Upstream] = []

    def take(self) -> Optional[Upstream]:
        """An idle connection, or None (then ``await connect()``)."""
        while self.idle:
            up = self.idle.pop()
            if up.alive and not up.transport.is_closing():
                up.reused = True
                up.keep = True
                up.transport.resume_reading()  # paused for a slow client whose response then ended: read again
                return up
        return None

    async def connect(self) -> Upstream:
        loop = asyncio.get_running_loop()
        try:
            _t, up = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.url}: {exc.strerror or exc}") from None
        return up

    async def get(self) -> Upstream:
        return self.take() or await self.connect()

    def release(self, up: Upstream) -> None:
        if up.keep and up.alive and up.request_done and len(self.idle) < MAX_IDLE:
            self.idle.append(up)
        else:
            up.abort()

    def discard(self, up: Upstream) -> None:
        if up in self.idle:
            self.idle.remove(up)

    def close(self) -> None:
        for up in self.idle:
            up.abort()
        self.idle.clear()


class JsonRequest:
    """The gateway's own look-ups (``GET /api/ps``, ``/api/tags``): the status and the payload of one response."""

    def __init__(self) -> None:
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.status = 0
        self.chunks: List[bytes] = []

    def upstream_data(self, up: Upstream, head: Optional[Head], body: bytes, done: bool) -> None:
        if head is not None:
            self.status = head.status
        if body:
            self.chunks.append(body)
        if done and not self.future.done():
            self.future.set_result((self.status, b"".join(self.chunks)))

    def upstream_lost(self, up: Upstream, why: str) -> None:
        if not self.future.done():
            self.future.set_exception(UpstreamError(why))

    def upstream_pause(self) -> None:
        pass

    def upstream_resume(self) -> None:
        pass
