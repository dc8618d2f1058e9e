"""Helpers for the emulator's own tests: raw HTTP calls that keep status codes, and the emulator module itself.

Every test talks real HTTP to a real `python -m lab.emulator serve` process on loopback (the shared
`emulator_factory` fixture from tests/conftest.py, or `start_emulator` below when a test needs another Python or a
module-scoped server). Rules are cited as "§<section> <upstream file/function>" of /work/shared/ollama-behaviour.md.
"""

from __future__ import annotations

import datetime
import http.client
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]

# tests/conftest.py is loaded by pytest as a plugin; load a private copy only to reuse its Emulator class.
_spec = importlib.util.spec_from_file_location("_keepwarm_shared_conftest", ROOT / "tests" / "conftest.py")
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
Emulator = _shared.Emulator
EMULATOR_CMD = _shared.EMULATOR_CMD  # [python, *EMULATOR_CMD, ...] with env=emu.env runs the `ollama` CLI

# Fast loads at scale 1: emulated time equals real time, a 2.8 GB load takes 2.8 ms, and an evicted runner's VRAM
# counts as recovered at once (sched.go waitForVRAMRecovery; test_emu_sched_upstream.py tests the wait itself).
FAST = {"OLLAMA_EMULATOR_LOAD_BPS": "1e12", "OLLAMA_EMULATOR_VRAM_RECOVERY": "0"}
MAX_INT64 = 2**63 - 1
NS = 10**9


def start_emulator(python: str = sys.executable, **env: str) -> Emulator:
    return Emulator({k: str(v) for k, v in env.items()}, python=python)


class Response:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def lines(self) -> list[dict]:
        return [json.loads(x) for x in self.body.splitlines() if x.strip()]

    @property
    def now_ns(self) -> int:
        """The emulated clock at the time of the response (X-Ollama-Emulator-Now)."""
        return parse_time(self.headers["x-ollama-emulator-now"])


def call(emu, method: str, path: str, body=None, *, raw: bytes | None = None, headers=None, timeout: float = 30):
    u = urlsplit(emu.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    try:
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def generate(emu, **body) -> Response:
    return call(emu, "POST", "/api/generate", body)


def load(emu, model: str, **body) -> dict:
    """Load-only request: empty-prompt /api/generate, or empty-input /api/embed for embedding-only models."""
    if "embed" in model:
        r = call(emu, "POST", "/api/embed", dict(body, model=model, input=[]))
    else:
        r = generate(emu, model=model, **body)
    assert r.status == 200, r.body
    return r.json()


def ps(emu, timeout: float = 30) -> tuple[list[dict], int]:
    """(/api/ps models, emulated now in ns)."""
    r = call(emu, "GET", "/api/ps", timeout=timeout)
    assert r.status == 200, r.body
    return r.json()["models"], r.now_ns


def ps_map(emu) -> dict:
    return {m["name"]: m for m in ps(emu)[0]}


def session_left(emu, name: str) -> float | None:
    """Seconds between the model's expires_at and the emulated now, or None if it is not loaded."""
    models, now = ps(emu)
    for m in models:
        if m["name"] == name:
            return (parse_time(m["expires_at"]) - now) / NS
    return None


def events(emu) -> list[dict]:
    return call(emu, "GET", "/emulator/events").json()["events"]


def cold_starts(emu) -> list[dict]:
    return [e for e in events(emu) if e["event"] in ("load", "reload")]


def wait_for(pred, timeout: float = 15, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(interval)


RFC3339_GO = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_time(s: str) -> int:
    """Go RFC 3339 (nano) -> Unix ns. Independent of the emulator's own parser; rejects anything Go would not emit
    (trailing zeros in the fraction, a dot with no digits, `+00:00` instead of `Z`)."""
    m = RFC3339_GO.match(s)
    assert m, "not Go RFC 3339: %r" % s
    y, mo, d, h, mi, sec, frac, off = m.groups()
    assert frac is None or not frac.endswith("0"), "Go trims trailing zeros: %r" % s
    assert off not in {"+00:00", "-00:00"}, "Go prints a zero offset as Z: %r" % s
    days = (datetime.date(int(y), int(mo), int(d)) - datetime.date(1970, 1, 1)).days
    secs = days * 86400 + int(h) * 3600 + int(mi) * 60 + int(sec)
    if off != "Z":
        sign = 1 if off[0] == "+" else -1
        secs -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
    return secs * NS + int((frac or "").ljust(9, "0"))
