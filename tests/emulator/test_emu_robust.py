"""Bad input never crashes or hangs the server; it serves 200 concurrent /api/ps; resident memory stays small;
the zipapp the lab installs runs on the oldest supported Python (3.9)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

from lab.emulator import build

from .conftest import EMULATOR_CMD, FAST, Emulator, call, load, ps

ENDPOINTS = ["/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show", "/api/pull"]
VALID = [
    {"model": "llama3.2", "prompt": "hi", "stream": False, "keep_alive": "5m", "options": {"num_ctx": 4096}},
    {"model": "llama3.2", "messages": [{"role": "user", "content": "hi", "images": ["aGk="]}], "keep_alive": -1},
    {"model": "nomic-embed-text", "input": ["a", "b"], "keep_alive": 0},
    {"model": "qwen2.5:7b", "stream": True, "options": {"num_predict": 2, "stop": ["x"]}},
]
ATOMS = [None, True, False, 0, -1, 1.5, 1e308, -0.0, "", "x", "5m", "-1", "\u00b5s", "\ud800", [], {}, [1, "a"]]
KEYS = ["model", "prompt", "messages", "keep_alive", "options", "stream", "input", "format", "images", "context"]


def random_value(rng, depth=0):
    if depth > 2 or rng.random() < 0.6:
        return rng.choice(ATOMS)
    if rng.random() < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS + ["num_ctx", "role", "content"]): random_value(rng, depth + 1) for _ in range(3)}


def random_body(rng) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    valid = json.dumps(rng.choice(VALID)).encode()
    if kind == 1:  # truncated valid JSON
        return valid[: rng.randint(0, len(valid) - 1)]
    if kind == 2:  # one byte flipped
        i = rng.randrange(len(valid))
        return valid[:i] + bytes([rng.randrange(256)]) + valid[i + 1 :]
    body = dict(rng.choice(VALID))
    for _ in range(rng.randint(1, 3)):  # wrong types in known fields
        body[rng.choice(KEYS)] = random_value(rng)
    if kind == 3:
        body["model"] = rng.choice(["llama3.2", "nope", "", "a" * 300, "Llama3.2:LATEST", "x/y/z/w", "llama3.2:3b"])
    return json.dumps(body).encode()


ALLOWED_500 = ('option "', "pull model manifest")


def test_fuzz_bodies_never_break_the_server(emulator_factory):
    """A few hundred random, truncated and mistyped bodies: every answer is a well-formed HTTP response with an
    upstream-style status and `{"error": ...}` body, no 500 outside the documented FromMap/pull cases, and the
    server still answers afterwards."""
    emu = emulator_factory(OLLAMA_EMULATOR_TOKEN_RATE="100000", OLLAMA_EMULATOR_MAX_BODY="4096", **FAST)
    rng = random.Random(20260815)
    statuses = {}
    for _ in range(300):
        path = rng.choice(ENDPOINTS)
        raw = random_body(rng)
        r = call(emu, "POST", path, raw=raw, timeout=10)
        statuses[r.status] = statuses.get(r.status, 0) + 1
        assert r.status in (200, 400, 404, 413, 500), (path, raw, r.status, r.body)
        if r.status != 200:
            err = json.loads(r.body)["error"]
            assert isinstance(err, str) and err
            if r.status == 500:
                assert err.startswith(ALLOWED_500), (path, raw, err)
        elif r.headers.get("content-type") == "application/x-ndjson":
            assert all(isinstance(x, dict) for x in r.lines())
        else:
            json.loads(r.body)
    print("fuzz statuses", statuses)
    assert statuses[400] > 50 and statuses.get(200, 0) > 5
    # raw garbage on the socket: not HTTP at all, headers cut off, a body shorter than its Content-Length
    port = int(emu.url.rsplit(":", 1)[1])
    for junk in (
        b"\x00\xff garbage\r\n\r\n",
        b"POST /api/generate HTTP/1.1\r\nContent-Le",
        b'POST /api/generate HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"model"',
        b"POST /api/generate HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/generate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(65536)
            except OSError:
                pass
    assert call(emu, "GET", "/").body == b"Ollama is running"
    load(emu, "llama3.2")
    assert "llama3.2:latest" in [m["name"] for m in ps(emu)[0]]
    assert emu.proc.poll() is None


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_200_concurrent_ps_and_memory(emulator_factory):
    """200 simultaneous /api/ps connections all succeed; peak RSS (VmHWM) stays under 40 MB."""
    emu = emulator_factory(**FAST)
    for name in ("llama3.2", "qwen2.5:7b", "llama3"):
        load(emu, name, keep_alive=-1)
    barrier = threading.Barrier(200)
    results: list = []

    def one():
        barrier.wait()
        try:
            r = call(emu, "GET", "/api/ps", timeout=30)
            results.append((r.status, len(r.json()["models"])))
        except Exception as e:  # collected and asserted below
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [(200, 3)] * 200
    hwm = vm_hwm_kb(emu.proc.pid)
    print(f"emulator VmHWM after 200 concurrent /api/ps: {hwm} kB")
    assert hwm < 40 * 1024


@pytest.mark.parametrize("version", ["3.9.18", "3.13.0"])
def test_runs_on_target_pythons(version, tmp_path):
    """Lab hosts run /usr/local/bin/ollama (the zipapp from lab/emulator/build.py) with their system python3: prove
    3.9 (oldest supported) and 3.13 run the zipapp's server and the checkout's `python -m lab.emulator ps`."""
    python = f"/root/.pyenv/versions/{version}/bin/python{version.rsplit('.', 1)[0]}"
    app = build.build(tmp_path / "ollama")
    emu = Emulator(
        {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "1", **FAST}, python=python, command=[str(app)]
    )
    try:
        load(emu, "llama3.2")
        assert call(emu, "POST", "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False}).status == 200
        for argv in ([python, *EMULATOR_CMD, "ps"], [python, str(app), "ps"]):
            out = subprocess.run(argv, env=emu.env, capture_output=True, text=True, timeout=30, check=True).stdout
            assert out.splitlines()[1].split()[-1] == "Forever", argv
        emu.proc.terminate()
        assert emu.proc.wait(10) == 0
    finally:
        emu.stop()


def test_zipapp_is_reproducible_and_self_contained(tmp_path):
    """The lab installs one executable: two builds give the same bytes, it starts with a shebang, and it holds only
    the package's modules (stdlib only: nothing outside `emulator/` but the zip's __main__.py)."""
    a, b = build.build(tmp_path / "a"), build.build(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert a.stat().st_mode & 0o777 == 0o755
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
    assert names[0] == "__main__.py"
    assert {"emulator/api.py", "emulator/scheduler.py", "emulator/cli.py", "emulator/server.py"} <= set(names)
    assert all(n == "__main__.py" or n.startswith("emulator/") and n.endswith(".py") for n in names), names
