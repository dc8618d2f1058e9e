"""Smoke runs of the benchmarks: each one's --smoke mode still executes and produces its table.

No timing is asserted (speed is what bench/ measures, not what tests check); only that each benchmark ran to the
end against real processes (emulators, the agent, the lab) and wrote a table with the expected columns and rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
