"""Helpers for keepwarm-gateway tests: the real gateway process (`python -m gateway`) in front of a real emulator
process (tests/conftest.py `emulator_factory`), both on loopback; requests are raw HTTP over sockets."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A running keepwarm-gateway: `log_lines()` parses its logfmt stdout, `request()` gives (status, headers, body)."""

    def __init__(self, upstream: str, args: list[str], log_path: Path, python: str = sys.executable,
                 command: list[str] | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = command or [python, "-m", "gateway"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [*cmd, "--listen", f"127.0.0.1:{self.port}", "--upstream", upstream, *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"gateway did not start: {log_path.read_text()}") from None
                time.sleep(0.05)

    def request(self, method: str, path: str, body: object = None, *, headers: dict | None = None,
                raw: bytes | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:  # fmt: skip
        return http_request(self.port, method, path, body, headers=headers, raw=raw, timeout=timeout)

    def json(self, method: str, path: str, body: object = None, **kw) -> tuple[int, object]:
        status, _headers, data = self.request(method, path, body, **kw)
        return status, json.loads(data) if data else None

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            fields = {}
            for part in _split_logfmt(line):
                key, _, value = part.partition("=")
                fields[key] = value
            out.append(fields)
        return out

    def decisions(self) -> list[dict]:
        return [f for f in self.log_lines() if f.get("event") == "decision"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _split_logfmt(line: str) -> list[str]:
    parts, cur, quoted, escape = [], "", False, False
    for ch in line:
        if escape:
            cur += ch
            escape = False
        elif ch == "\\" and quoted:
            escape = True
        elif ch == '"':
            quoted = not quoted
        elif ch == " " and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p]


def http_request(port: int, method: str, path: str, body: object = None, *, headers: dict | None = None,
                 raw: bytes | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    """Poll until predicate() is truthy (upstream updates /api/ps after the response ends); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
