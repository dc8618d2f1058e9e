"""Smoke runs of the benchmarks: each one's --smoke mode (for bench/gateway/run.py, its measure() on a smaller plan)
still executes and produces its table.

No timing is asserted (speed is what bench/ measures, not what tests check); only that each benchmark ran to the
end against real processes (emulators, the agent, the lab) and wrote a table with the expected columns and rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@contextlib.contextmanager
def warm_hits_workdir():
    """bench/warm_hits/run.py and bench/gateway/warm_hits_f.py both keep logs in build/bench/warm_hits/ (the same
    watch-heartbeat.log name): one at a time, also across xdist workers."""
    work = ROOT / "build" / "bench" / "warm_hits"
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def table_rows(markdown: str, first_column: str) -> tuple[list[str], list[list[str]]]:
    """The markdown table whose header starts with `first_column`: (header cells, body rows as cells)."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_column:
            rows = []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                rows.append([c.strip() for c in body.strip().strip("|").split("|")])
            return cells, rows
    raise AssertionError(f"no table starting with {first_column!r} in:\n{markdown}")


def test_warm_hits_smoke(tmp_path):
    with warm_hits_workdir():
        proc = run("bench/warm_hits/run.py", "--smoke", "--out-dir", str(tmp_path))
    md = (tmp_path / "warm_hits.md").read_text()
    assert md in proc.stdout
    header, rows = table_rows(md, "Setup")
    assert header == [
        "Setup",
        "Requests",
        "Warm %",
        "Protectable warm",
        "Cold starts",
        "Cold-start s",
        "Heartbeat loads",
        "Heartbeat reloads",
        "Longest gap",
        "Loaded %",
    ]
    assert [r[0][:3] for r in rows] == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    # every setup got the same workload, every request was answered (a number, no "(+N errors)")
    assert len({r[1] for r in rows}) == 1 and rows[0][1].isdigit() and int(rows[0][1]) > 0
    for r in rows:
        assert 0.0 <= float(r[2]) <= 100.0
        warm, total = map(int, r[3].split("/"))
        assert 0 <= warm <= total
    # setups without a heartbeat have nothing to attribute to one
    assert rows[0][6] == rows[0][7] == rows[1][6] == rows[1][7] == "-"
    assert "Command: `/work/venv/bin/python bench/warm_hits/run.py --smoke" in md
    assert (tmp_path / "warm_hits.png").read_bytes()[:8] == PNG_MAGIC
    metrics = json.loads((tmp_path / "warm_hits.json").read_text())
    assert [m["setup"] for m in metrics] == ["defaults", "env", "article", "once", "watch"]
    assert all(m["heartbeat_loads"] == m["heartbeat_reloads"] == 0 for m in metrics[:2])


def test_gateway_warm_hits_f_smoke():
    """bench/gateway/warm_hits_f.py --smoke (~7 s): setup (f) with warm_hits' columns; the pinned model stays warm
    through the gateway and every decision the gateway logged is counted per client kind."""
    with warm_hits_workdir():
        proc = run("bench/gateway/warm_hits_f.py", "--smoke")
        md = (ROOT / "build" / "bench" / "smoke" / "gateway.warm_hits.md").read_text()
        result = json.loads((ROOT / "build" / "bench" / "smoke" / "gateway.warm_hits.json").read_text())
    assert md in proc.stdout
    header, rows = table_rows(md, "Setup")
    assert header[:4] == ["Setup", "Requests", "Warm %", "Protectable warm"]
    assert [r[0][:3] for r in rows] == ["(f)"]
    m = result["metrics"]
    assert m["requests"] == int(rows[0][1]) > 0 and m["errors"] == 0
    assert m["pinned"] == "llama3.2" and m["pinned_requests"] > 0
    # the gateway's decision log accounts for every request of the workload
    assert sum(sum(kind.values()) for kind in result["per_kind"].values()) == m["requests"]
    # the agent's first pin is a load; nothing evicted or unloaded the pinned model (OLLAMA_KEEP_ALIVE=-1 + gateway)
    assert result["pinned_events"].get("load", 0) >= 1
    assert not set(result["pinned_events"]) - {"load"}, result["pinned_events"]


GATEWAY_ROWS = textwrap.dedent(
    """
    import json, shutil, sys, tempfile
    from pathlib import Path

    sys.path.insert(0, "bench/gateway")
    import run

    tmp = Path(tempfile.mkdtemp(prefix="kw-bench-smoke-"))
    try:
        rows = run.measure("emulator", (1,), {1: 30}, tmp, shutil.which("nginx"), paced_s=0.5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ROWS " + json.dumps(rows))
    """
)


def test_gateway_bench_rows_smoke():
    """bench/gateway/run.py's measure() on its emulator upstream with 1 client and 30 requests a row (~4 s; run.py
    --smoke takes ~40 s): every case has a direct and a gateway row (and nginx when it is installed), every request
    answered, and the gateway's own latency histogram counted the requests it proxied."""
    proc = run("-c", GATEWAY_ROWS)
    rows = json.loads(next(line[5:] for line in proc.stdout.splitlines() if line.startswith("ROWS ")))
    targets = {"direct", "gateway"} | ({"nginx"} if shutil.which("nginx") else set())
    cases = ("non-streaming", "streaming TTFB", "streaming full")
    assert sorted((r["case"], r["target"]) for r in rows) == sorted((c, t) for c in cases for t in targets)
    for r in rows:
        assert (r["upstream"], r["clients"], r["n"], r["errors"]) == ("emulator", 1, 30, 0), r
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], r
    assert all(r["self_mean_ms"] > 0 for r in rows if r["target"] == "gateway"), rows


def test_emulator_latency_smoke(tmp_path):
    """bench/emulator_latency/run.py --smoke (20 requests a row, <1 s): the result file's rows and its table."""
    run("bench/emulator_latency/run.py", "--smoke", "--out-dir", str(tmp_path))
    result = json.loads((tmp_path / "emulator_latency.json").read_text())
    assert result["n"] == 20
    paths = [r["path"] for r in result["rows"]]
    assert paths[:3] == ["direct, new connection", "direct, kept-alive", "direct, kept-alive"]
    assert [r["request"] for r in result["rows"][:3]] == [
        "GET /api/ps",
        "GET /api/ps",
        "POST /api/generate (warm load-only)",
    ]
    if shutil.which("nginx"):
        assert paths[3:] == ["nginx (upstream keepalive), new connection", "nginx (upstream keepalive), kept-alive"]
    for r in result["rows"]:
        assert r["n"] == 20 and 0 < r["p50_ms"] <= r["p99_ms"], r
    header, rows = table_rows((tmp_path / "emulator_latency.md").read_text(), "emulator")
    assert header == ["emulator", "path", "request", "n", "p50 ms", "p99 ms", "mean ms"]
    assert [r[1] for r in rows] == paths


def test_agent_bench_smoke():
    proc = run("bench/agent/bench.py", "--smoke")
    header, rows = table_rows(proc.stdout, "Python")
    assert {"beat", "CPU median s", "peak RSS MiB"} <= set(header)
    assert rows, proc.stdout


@pytest.mark.lab
def test_fleet_smoke(lab_hosts, tmp_path):
    host = lab_hosts.hosts[0]
    run(
        "bench/fleet/run.py",
        "--smoke",
        "--inventory",
        str(lab_hosts.inventory),
        "--limit",
        host,
        "--out-dir",
        str(tmp_path),
        timeout=600,
    )
    header, rows = table_rows((tmp_path / "fleet.md").read_text(), "Hosts")
    assert header == [
        "Hosts",
        "Run",
        "Batches",
        "Wall s",
        "Controller CPU s",
        "CPU s per host",
        "Changed",
        "Failed",
        "rc",
    ]
    assert len(rows) == 1
    hosts, what, batches, wall, cpu, _, _, failed, rc = rows[0]
    assert (hosts, what, batches, failed, rc) == ("1", "site.yml (smoke)", "1", "0", "0")
    assert float(wall) > 0 and float(cpu) > 0
