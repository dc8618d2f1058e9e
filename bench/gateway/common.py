"""Helpers shared by the gateway benchmarks: free ports, process start/stop, load runs, percentiles."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start(cmd: list, port: int, env: dict | None = None, log=subprocess.DEVNULL, cwd: Path | None = None
          ) -> subprocess.Popen:  # fmt: skip
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd or ROOT)
    try:
        wait_port(port)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request_bytes(method: str, path: str, body: dict | None = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: keepwarm-bench\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


def load(port: int, request: bytes, concurrency: int, total: int, *, ttfb: bool = False, interval: float = 0.0) -> dict:
    """One target: TOTAL requests from CONCURRENCY clients (loadgen.py in its own process)."""
    return load_many([port], request, concurrency, total, ttfb=ttfb, interval=interval)[port]


def load_many(ports: list, request: bytes, concurrency: int, total: int, *, ttfb: bool = False, gaps: bool = False,
              interval: float = 0.0, blocks: int = 1, stamps: bool = False) -> dict:  # fmt: skip
    """{port: result}: TOTAL requests per target, the targets interleaved in BLOCKS alternating blocks."""
    with tempfile.NamedTemporaryFile(suffix=".http", delete=False) as fh:
        fh.write(request)
        path = fh.name
    try:
        hostports = ",".join(f"127.0.0.1:{p}" for p in ports)
        cmd = [PY, str(HERE / "loadgen.py"), hostports, path, str(concurrency), str(total), "--blocks", str(blocks)]
        if ttfb:
            cmd.append("--ttfb")
        if gaps:
            cmd.append("--gaps")
        if stamps:
            cmd.append("--stamps")
        if interval:
            cmd += ["--interval", str(interval)]
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=900).stdout
    finally:
        os.unlink(path)
    result = json.loads(out)
    return {p: result[f"127.0.0.1:{p}"] for p in ports}


def cpu_seconds(pids: list) -> float:
    """CPU seconds these processes (all their threads) have run so far: /proc/PID/task/TID/schedstat's first field
    (nanoseconds on a CPU, user and system alike; /proc/PID/stat counts in 10 ms ticks)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    total += int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def children(pid: int) -> list:
    """The process and its direct children (nginx: master and worker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [pid] + [int(x) for x in fh.read().split()]
    except OSError:
        return [pid]


def pct(values: list, p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def summary(run: dict, key: str = "latencies", prefix: str = "") -> dict:
    """p50/p99/mean/max in ms (of the latencies, or of `key`) and requests per second of one load run."""
    lat = run[key]
    out = {
        prefix + "p50_ms": pct(lat, 50) * 1e3,
        prefix + "p99_ms": pct(lat, 99) * 1e3,
        prefix + "mean_ms": sum(lat) / len(lat) * 1e3 if lat else float("nan"),
        prefix + "max_ms": max(lat) * 1e3 if lat else float("nan"),
    }
    if not prefix:
        out.update({"rps": len(run["latencies"]) / run["wall"], "errors": run["errors"], "n": len(run["latencies"])})
    return out
