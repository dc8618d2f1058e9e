"""The stack the gateway did NOT choose, for the measurement in gateway/README.md: a stdlib-only threaded reverse
proxy (http.server.ThreadingHTTPServer + http.client, one kept-alive upstream connection per thread), forwarding
bodies and streaming responses chunk by chunk. No policy logic: pure pass-through cost.

    python bench/gateway/stdlib_proxy.py LISTEN_PORT UPSTREAM_PORT
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
_local = threading.local()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(_local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _local.conn = conn
        return conn

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = self._upstream()
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response_only(resp.status, resp.reason)
        chunked = resp.getheader("Transfer-Encoding", "").lower() == "chunked"
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
        self.end_headers()
        if chunked:
            while True:
                data = resp.read1(65536)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(resp.read())
        self.wfile.flush()

    do_GET = do_POST = do_HEAD = _proxy


def main() -> int:
    Handler.upstream_port = int(sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
