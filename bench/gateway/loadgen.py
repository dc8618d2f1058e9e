"""HTTP/1.1 load generator: C clients per target, each on its own kept-alive connection, targets interleaved in blocks.

    python bench/gateway/loadgen.py HOST:PORT[,HOST:PORT...] REQUEST_FILE CONCURRENCY TOTAL
        [--ttfb] [--gaps] [--stamps] [--interval S] [--blocks B]

TOTAL requests per target, run in B blocks (default 1) of TOTAL/B: block 1 runs on the first target, then the
second, ..., then block 2 with the order rotated by one, and so on, so a slow spell of the shared machine hits every
target alike. Connections are opened once per target and kept for all blocks.

Prints one JSON object per target, keyed "HOST:PORT": latencies in seconds (the full response, or with --ttfb the
time to the first body line: the first NDJSON line or SSE event), with --gaps the time between consecutive chunks of
each streamed response, with --stamps the delivery delay of every line (the moment the client has it minus the
`created_at` the emulator stamped it with just before writing it: at time scale 1 that is its wall clock, the same
as this process's), of the first line of each response apart, bytes, lines and chunks received, errors, and wall (the
sum of the target's blocks). With
--interval each client starts a request every S seconds (or at once when the previous one ended late): a paced load
of CONCURRENCY/S requests per second instead of a closed loop. Raw sockets and a minimal parser, so the client costs
as little as possible and the same for every target.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import socket
import sys
import time

_SECONDS: dict = {}


def created_at_ns(data: bytes) -> int | None:
    """The emulator's `created_at` (RFC 3339 with nanoseconds, UTC at time scale 1: its wall clock) in Unix ns."""
    i = data.rfind(b'"created_at":"')
    if i < 0:
        return None
    text = data[i + 14 : data.index(b'"', i + 14)].decode()
    head, frac = text[:19], text[19:].rstrip("Z")
    sec = _SECONDS.get(head)
    if sec is None:
        sec = _SECONDS[head] = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return sec * 1_000_000_000 + (int(frac[1:].ljust(9, "0")) if frac.startswith(".") else 0)


class Stats:
    def __init__(self) -> None:
        self.latencies: list = []
        self.gaps: list = []
        self.errors = 0
        self.wall = 0.0
        self.bytes = 0
        self.chunks = 0
        self.lines = 0
        self.delays: list = []
        self.first_delays: list = []

    def as_dict(self) -> dict:
        return {"latencies": self.latencies, "gaps": self.gaps, "errors": self.errors, "wall": self.wall,
                "bytes": self.bytes, "chunks": self.chunks, "lines": self.lines, "delays": self.delays,
                "first_delays": self.first_delays}  # fmt: skip


async def _read_response(reader: asyncio.StreamReader, t0: float, stats: Stats, *, ttfb: bool, gaps: bool,
                         stamps: bool = False) -> float:  # fmt: skip
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    first = None
    last = None
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size + 2)
            now = time.perf_counter()
            stats.bytes += size
            stats.chunks += 1
            stats.lines += data.count(b"\n", 0, size)
            if stamps:  # delivery delay of each line: now minus the time the emulator stamped it with
                wall = time.time_ns()
                for line in data[:size].splitlines():
                    made = created_at_ns(line)
                    if made is not None:
                        stats.delays.append((wall - made) / 1e9)
                        if first is None:
                            stats.first_delays.append((wall - made) / 1e9)
            if first is None and b"\n" in data[:-2]:
                first = now
            if gaps and last is not None:
                stats.gaps.append(now - last)
            last = now
    elif length:
        data = await reader.readexactly(length)
        stats.bytes += length
        if stamps:
            made = created_at_ns(data)
            if made is not None:
                stats.delays.append((time.time_ns() - made) / 1e9)
    end = time.perf_counter()
    if status >= 400:
        raise RuntimeError(f"HTTP {status}")
    return (first if ttfb and first is not None else end) - t0


async def _connect(host: str, port: int) -> tuple:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _block(conns: list, target: tuple, request: bytes, total: int, stats: Stats, *, ttfb: bool, gaps: bool,
                 interval: float, stamps: bool) -> None:  # fmt: skip
    host, port = target
    remaining = total
    concurrency = len(conns)

    async def client(index: int) -> None:
        nonlocal remaining
        reader, writer = conns[index]
        next_send = time.perf_counter() + interval * index / concurrency  # spread the clients over one interval
        while remaining > 0:
            remaining -= 1
            if interval:
                delay = next_send - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_send += interval
            t0 = time.perf_counter()
            writer.write(request)
            try:
                stats.latencies.append(await _read_response(reader, t0, stats, ttfb=ttfb, gaps=gaps, stamps=stamps))
            except (RuntimeError, asyncio.IncompleteReadError, ConnectionError, ValueError):
                stats.errors += 1
                writer.close()
                reader, writer = await _connect(host, port)
                conns[index] = (reader, writer)

    t_start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    stats.wall += time.perf_counter() - t_start


async def run(targets: list, request: bytes, concurrency: int, total: int, *, ttfb: bool = False,
              gaps: bool = False, interval: float = 0.0, blocks: int = 1, stamps: bool = False) -> dict:  # fmt: skip
    """{"host:port": stats} for TOTAL requests per target, in BLOCKS interleaved blocks."""
    conns = {t: [await _connect(*t) for _ in range(concurrency)] for t in targets}
    stats = {t: Stats() for t in targets}
    per_block = [total // blocks + (1 if b < total % blocks else 0) for b in range(blocks)]
    for b in range(blocks):
        order = targets[b % len(targets) :] + targets[: b % len(targets)]
        for t in order:
            await _block(conns[t], t, request, per_block[b], stats[t], ttfb=ttfb, gaps=gaps, interval=interval,
                         stamps=stamps)  # fmt: skip
    for pairs in conns.values():
        for _reader, writer in pairs:
            writer.close()
    return {f"{h}:{p}": s.as_dict() for (h, p), s in stats.items()}


def main() -> int:
    hostports, request_file, concurrency, total = sys.argv[1:5]
    targets = []
    for hostport in hostports.split(","):
        host, _, port = hostport.rpartition(":")
        targets.append((host, int(port)))
    with open(request_file, "rb") as fh:
        request = fh.read()

    def opt(name: str, default: str) -> str:
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

    result = asyncio.run(
        run(targets, request, int(concurrency), int(total), ttfb="--ttfb" in sys.argv, gaps="--gaps" in sys.argv,
            interval=float(opt("--interval", "0")), blocks=int(opt("--blocks", "1")), stamps="--stamps" in sys.argv)
    )  # fmt: skip
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
