"""A minimal HTTP/1.1 server that answers every request at once (fixed JSON, or 3 NDJSON chunks for `stream`),
so a proxy's own cost can be measured without an upstream's jitter. TCP_NODELAY, keep-alive. A streaming request
whose prompt is "long" gets LONG_LINES NDJSON lines, each its own chunk and its own write (as Ollama flushes per
token), as fast as the event loop goes: the streamed-throughput case.

    python bench/gateway/null_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import socket
import sys

BODY = b'{"model":"llama3.2","response":"ok","done":true}'
FIXED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
)
LINE = b'{"model":"llama3.2","response":"x","done":false}\n'
STREAM = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNK = b"%x\r\n%s\r\n" % (len(LINE), LINE)
LONG_LINES = 20000


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length) if length else b""
            if b'"prompt": "long"' in body or b'"prompt":"long"' in body:
                writer.write(STREAM)
                for i in range(LONG_LINES):
                    writer.write(CHUNK)
                    if i % 16 == 15:
                        await writer.drain()
                    await asyncio.sleep(0)  # one write per line reaches the socket on its own
                writer.write(b"0\r\n\r\n")
            elif b'"stream":true' in body or b'"stream": true' in body:
                writer.write(STREAM + CHUNK)
                await writer.drain()
                writer.write(CHUNK + CHUNK + b"0\r\n\r\n")
            else:
                writer.write(FIXED)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
