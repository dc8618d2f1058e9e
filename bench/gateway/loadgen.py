"""Closed-loop HTTP/1.1 load generator: C clients, each on its own kept-alive connection, N requests in total.

    python bench/gateway/loadgen.py HOST:PORT REQUEST_FILE CONCURRENCY TOTAL [--ttfb] [--interval S]

Prints one JSON object: latencies in seconds (full response, or with --ttfb the time to the first body line:
the first NDJSON line or SSE event). With --interval each client starts a request every S seconds (or at once when
the previous one ended late): a paced load of CONCURRENCY/S requests per second instead of a closed loop. Raw
sockets and a minimal parser, so the client costs as little as possible and the same for every target.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time


async def _read_response(reader: asyncio.StreamReader, t0: float, ttfb: bool) -> float:
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
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size + 2)
            if first is None and b"\n" in data[:-2]:
                first = time.perf_counter()
    elif length:
        await reader.readexactly(length)
    end = time.perf_counter()
    if status >= 400:
        raise RuntimeError(f"HTTP {status}")
    return (first if ttfb and first is not None else end) - t0


async def run(
    host: str, port: int, request: bytes, concurrency: int, total: int, *, ttfb: bool, interval: float = 0.0
) -> dict:
    latencies: list = []
    errors = 0
    remaining = total

    async def client(index: int) -> None:
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
                latencies.append(await _read_response(reader, t0, ttfb))
            except (RuntimeError, asyncio.IncompleteReadError, ConnectionError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        writer.close()

    t_start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    wall = time.perf_counter() - t_start
    return {"latencies": latencies, "errors": errors, "wall": wall}


def main() -> int:
    hostport, request_file, concurrency, total = sys.argv[1:5]
    host, _, port = hostport.rpartition(":")
    with open(request_file, "rb") as fh:
        request = fh.read()
    interval = float(sys.argv[sys.argv.index("--interval") + 1]) if "--interval" in sys.argv else 0.0
    result = asyncio.run(
        run(host, int(port), request, int(concurrency), int(total), ttfb="--ttfb" in sys.argv, interval=interval)
    )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
