"""keepwarm-gateway against going direct and against a plain reverse proxy (Debian's nginx), side by side in one run.

    python bench/gateway/run.py [--smoke] [--out DIR] [--before REV|none]

Targets on loopback: direct (the upstream's port), the gateway (`python -m gateway --model llama3.2`: every request
takes the policy path, its body parsed and `keep_alive` rewritten), nginx (`proxy_pass`, `proxy_buffering off`,
`proxy_request_buffering off`, upstream keepalive, one worker) and, in the capacity rows, the gateway as it was at
git revision --before (default BEFORE_REV, the last asyncio-streams + h11-on-both-sides revision). Within each row
the targets run in alternating blocks (bench/gateway/loadgen.py --blocks), so the shared machine's noise hits them
alike; the 1-minute load average is recorded per row.

1. At an LLM's pace: the emulator at real time (OLLAMA_EMULATOR_TIME_SCALE=1, 100 tokens/s, OLLAMA_NUM_PARALLEL=64,
   llama3.2 loaded and pinned), 1/16/64 concurrent clients streaming (time to first byte; gap between tokens) and
   non-streaming.
2. Below saturation, null upstream (bench/gateway/null_upstream.py answers at once): 16 and 64 clients at a steady
   PACED_RATE requests/s in all.
3. Capacity, null upstream: 1/16/64 closed-loop clients (no think time: every target runs at its maximum rate).
4. Streamed throughput: one client, streams of 20,000 NDJSON lines written one per write by the null upstream.
5. Memory: the gateway's RSS while 64 clients keep 64 streams open (emulator at time scale 0.5), sampled every 0.25 s.

Each target's CPU time per request comes from /proc/PID/stat (nginx: master + worker), read before and after its
row. Writes DIR/gateway.{json,md,png} (default bench/results; --smoke: 1 and 4 clients, few requests, under
build/bench/smoke/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (
    HERE,
    PY,
    ROOT,
    children,
    cpu_seconds,
    free_port,
    load,
    load_many,
    request_bytes,
    start,
    stop,
    summary,
)

BEFORE_REV = "4089a57"  # gateway/_proxy.py before the Protocol rewrite: asyncio streams, h11 on both sides
PACED_RATE = 200  # requests/s in all: far above what one Ollama server completes, far below the proxies' limits
PACED_SECONDS = 3.0
BLOCKS = 5
TARGET_P99_MS = 1.0

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream ollama {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ollama;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{upstream};
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""
BODY = {"model": "llama3.2", "prompt": "hi", "keep_alive": -1}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metrics(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("keepwarm_gateway_added_latency_seconds_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def emulator(scale: str, env_extra: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update({"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_EMULATOR_TIME_SCALE": scale,
                "OLLAMA_MAX_LOADED_MODELS": "3", "PYTHONPATH": str(ROOT), **(env_extra or {})})  # fmt: skip
    log = open(tempfile.gettempdir() + f"/kw-bench-emulator-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([PY, "-m", "lab.emulator", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT)  # fmt: skip
    from common import wait_port

    wait_port(port)
    return proc, port


def pin(port: int) -> None:
    load(port, request_bytes("POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1}), 1, 1)


def checkout(rev: str, tmp: Path) -> Path | None:
    """The gateway (and the rulebook files it loads by path) as they were at `rev`, or None if git cannot."""
    dest = tmp / f"before-{rev}"
    dest.mkdir(parents=True, exist_ok=True)
    paths = ["gateway", "collection/plugins/module_utils", "heartbeat_agent"]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *paths], capture_output=True, check=False)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


class Targets:
    """The upstream and the proxies in front of it: name -> (port, pids whose CPU time is the target's)."""

    def __init__(self, up_port: int, tmp: Path, nginx: str | None, name: str, before: Path | None = None) -> None:
        self.procs: list = []
        self.ports = {"direct": up_port}
        self.pids: dict = {"direct": []}
        try:
            gw_port = free_port()
            gw = start([PY, "-m", "gateway", "--listen", f"127.0.0.1:{gw_port}", "--upstream",
                        f"http://127.0.0.1:{up_port}", "--model", "llama3.2"], gw_port)  # fmt: skip
            self.procs.append(gw)
            self.ports["gateway"] = gw_port
            self.pids["gateway"] = [gw.pid]
            if nginx:
                ng_port = free_port()
                ng_dir = tmp / name
                for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                    (ng_dir / d).mkdir(parents=True, exist_ok=True)
                (ng_dir / "nginx.conf").write_text(NGINX_CONF.format(dir=ng_dir, upstream=up_port, port=ng_port))
                ng = start([nginx, "-p", str(ng_dir), "-c", str(ng_dir / "nginx.conf")], ng_port)
                self.procs.append(ng)
                self.ports["nginx"] = ng_port
                self.pids["nginx"] = children(ng.pid)
            if before is not None:
                b_port = free_port()
                old = start([PY, "-m", "gateway", "--listen", f"127.0.0.1:{b_port}", "--upstream",
                             f"http://127.0.0.1:{up_port}", "--model", "llama3.2"], b_port,
                            env={"PYTHONPATH": str(before)}, cwd=before)  # fmt: skip
                self.procs.append(old)
                self.ports["gateway before"] = b_port
                self.pids["gateway before"] = [old.pid]
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop(p)

    def run(self, request: bytes, conc: int, total: int, *, blocks: int, ttfb: bool = False, gaps: bool = False,
            interval: float = 0.0, warmup: int = 0, stamps: bool = False) -> dict:  # fmt: skip
        """{name: (loadgen result, CPU ms per request, gateway's own ms per request or None)}, targets interleaved."""
        ports = list(self.ports.values())
        if warmup:
            load_many(ports, request, conc, warmup, ttfb=ttfb, blocks=1)  # connections, caches
        gw_port = self.ports["gateway"]
        before_m = metrics(gw_port)
        before_cpu = {n: cpu_seconds(p) for n, p in self.pids.items()}
        runs = load_many(ports, request, conc, total, ttfb=ttfb, gaps=gaps, interval=interval, blocks=blocks,
                         stamps=stamps)  # fmt: skip
        after_cpu = {n: cpu_seconds(p) for n, p in self.pids.items()}
        after_m = metrics(gw_port)
        out = {}
        for name, port in self.ports.items():
            run = runs[port]
            n = len(run["latencies"]) or 1
            cpu = (after_cpu[name] - before_cpu[name]) / n * 1e3 if self.pids[name] else None
            own = None
            if name == "gateway":
                cnt = after_m["keepwarm_gateway_added_latency_seconds_count"] - before_m[
                    "keepwarm_gateway_added_latency_seconds_count"]  # fmt: skip
                tot = after_m["keepwarm_gateway_added_latency_seconds_sum"] - before_m[
                    "keepwarm_gateway_added_latency_seconds_sum"]  # fmt: skip
                own = tot / cnt * 1e3 if cnt else None
            out[name] = (run, cpu, own)
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--before", default=BEFORE_REV, help="git revision of the gateway to compare ('none': skip)")
    args = ap.parse_args()
    out_dir = Path(args.out) if args.out else ROOT / ("build/bench/smoke" if args.smoke else "bench/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    smoke = args.smoke
    clients = (1, 4) if smoke else (1, 16, 64)
    totals = {1: 100, 4: 100} if smoke else {1: 1000, 16: 2000, 64: 3200}
    realistic = {1: 4, 4: 8} if smoke else {1: 30, 16: 96, 64: 256}
    t_start = time.monotonic()
    load_avg = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="kw-bench-gateway-"))
    nginx = shutil.which("nginx")
    result: dict = {}
    try:
        before = checkout(args.before, tmp) if args.before != "none" else None
        result["realistic"] = measure_realistic(clients, realistic, tmp, nginx, blocks=2 if smoke else BLOCKS)
        result["rows"] = measure("null", clients, totals, tmp, nginx, paced_s=0.5 if smoke else PACED_SECONDS,
                                 before=before, blocks=2 if smoke else BLOCKS)  # fmt: skip
        result["throughput"] = measure_throughput(tmp, nginx, streams=2 if smoke else 3)
        result["memory"] = measure_memory(64 * (1 if smoke else 5), "2" if smoke else "0.5")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.update({
        "command": "python bench/gateway/run.py" + (" --smoke" if smoke else ""),
        "before_rev": args.before if args.before != "none" else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "load_avg_start": load_avg, "load_avg_end": os.getloadavg(), "nginx": nginx_version()},
        "wall_s": time.monotonic() - t_start,
    })  # fmt: skip
    (out_dir / "gateway.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "gateway.md").write_text(render_md(result))
    chart(result, out_dir / "gateway.png")
    print((out_dir / "gateway.md").read_text())
    return 0


def _row(base: dict, run: dict, cpu: float | None, own: float | None) -> dict:
    row = {**base, **summary(run), "cpu_ms_per_req": cpu, "load1": round(os.getloadavg()[0], 2)}
    if own is not None:
        row["self_mean_ms"] = own
    return row


def measure(upstream: str, clients: tuple, totals: dict, tmp: Path, nginx: str | None, *, paced_s: float,
            before: Path | None = None, blocks: int = BLOCKS) -> list:  # fmt: skip
    """Closed-loop rows (capacity) for 1..64 clients and paced rows for more than one client, in front of one
    upstream (the null server, or the emulator at time scale 1000); targets interleaved within each row."""
    procs: list = []
    rows = []
    targets = None
    try:
        if upstream == "emulator":
            emu, up_port = emulator("1000", {"OLLAMA_NUM_PARALLEL": "64"})
            procs.append(emu)
            pin(up_port)
        else:
            up_port = free_port()
            procs.append(start([PY, str(HERE / "null_upstream.py"), str(up_port)], up_port))
        targets = Targets(up_port, tmp, nginx, upstream, before)
        cases = {
            "non-streaming": (request_bytes("POST", "/api/generate", {**BODY, "stream": False}), False),
            "streaming TTFB": (request_bytes("POST", "/api/generate", {**BODY, "stream": True}), True),
            "streaming full": (request_bytes("POST", "/api/generate", {**BODY, "stream": True}), False),
        }
        plan = [(case, req, ttfb, conc, 0.0) for case, (req, ttfb) in cases.items() for conc in clients]
        for case in ("non-streaming", "streaming TTFB"):  # the same at a steady PACED_RATE instead of a closed loop
            req, ttfb = cases[case]
            plan += [(f"{case}, paced {PACED_RATE} req/s", req, ttfb, c, c / PACED_RATE) for c in clients if c > 1]
        for case, req, ttfb, conc, interval in plan:
            total = int(paced_s * PACED_RATE) if interval else totals[conc]
            res = targets.run(req, conc, total, blocks=blocks, ttfb=ttfb, interval=interval,
                              warmup=max(conc * 3, 30))  # fmt: skip
            for name, (run, cpu, own) in res.items():
                row = _row({"upstream": upstream, "case": case, "clients": conc, "target": name}, run, cpu, own)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if targets is not None:
            targets.stop()
        for p in reversed(procs):
            stop(p)
    return rows


def measure_realistic(clients: tuple, totals: dict, tmp: Path, nginx: str | None, *, blocks: int) -> list:
    """The emulator at real time (100 tokens/s, 26 tokens a response): C clients streaming and non-streaming, each
    target in alternating blocks. Besides the client's own TTFB, every line's delivery delay (the client's clock when
    it has the line minus the emulator's `created_at` on it, stamped just before the write): the proxy's share
    without the emulator's generation jitter, which is the same for every target and cancels out."""
    emu, up_port = emulator("1", {"OLLAMA_NUM_PARALLEL": "64"})
    rows = []
    targets = None
    try:
        pin(up_port)
        targets = Targets(up_port, tmp, nginx, "realistic")
        stream = request_bytes("POST", "/api/generate", {**BODY, "stream": True})
        whole = request_bytes("POST", "/api/generate", {**BODY, "stream": False})
        for conc in clients:
            for case, req, ttfb in (("streaming", stream, True), ("non-streaming", whole, False)):
                res = targets.run(req, conc, totals[conc], blocks=blocks, ttfb=ttfb, stamps=True, warmup=conc)
                for name, (run, cpu, own) in res.items():
                    base = {"upstream": "emulator, real time", "case": case, "clients": conc, "target": name}
                    row = _row(base, run, cpu, own)
                    row.update(summary(run, "delays", "line_"))
                    row["lines"] = len(run["delays"])
                    if ttfb:
                        row.update(summary(run, "first_delays", "first_"))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        if targets is not None:
            targets.stop()
        stop(emu)
    return rows


def measure_throughput(tmp: Path, nginx: str | None, *, streams: int) -> list:
    """One client, `streams` streams of null_upstream.LONG_LINES lines per target (interleaved): lines/s and MB/s as
    the client receives them, and each proxy's CPU time per line."""
    up_port = free_port()
    up = start([PY, str(HERE / "null_upstream.py"), str(up_port)], up_port)
    targets = None
    rows = []
    try:
        targets = Targets(up_port, tmp, nginx, "throughput")
        req = request_bytes("POST", "/api/generate", {"model": "llama3.2", "prompt": "long", "stream": True})
        res = targets.run(req, 1, streams, blocks=streams, warmup=1)
        for name, (run, cpu, _own) in res.items():
            n = len(run["latencies"]) or 1
            rows.append({
                "target": name, "streams": len(run["latencies"]), "errors": run["errors"], "lines": run["lines"],
                "chunks": run["chunks"], "lines_per_s": run["lines"] / run["wall"],
                "mb_per_s": run["bytes"] / run["wall"] / 1e6,
                "cpu_us_per_line": cpu * n * 1e3 / run["lines"] if cpu is not None and run["lines"] else None,
                "load1": round(os.getloadavg()[0], 2),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if targets is not None:
            targets.stop()
        stop(up)
    return rows


def nginx_version() -> str | None:
    nginx = shutil.which("nginx")
    if not nginx:
        return None
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().split("/")[-1]


def measure_memory(total: int, scale: str) -> dict:
    """The gateway's RSS while 64 clients keep 64 streams open: emulator at time scale 0.5 with 64 parallel slots, so
    every stream is live for at least ~0.7 s (26 tokens 26 ms apart); `total` streams in all."""
    emu, emu_port = emulator(scale, {"OLLAMA_NUM_PARALLEL": "64"})
    procs = [emu]
    try:
        pin(emu_port)
        gw_port = free_port()
        gw = start([PY, "-m", "gateway", "--listen", f"127.0.0.1:{gw_port}", "--upstream",
                    f"http://127.0.0.1:{emu_port}", "--model", "llama3.2"], gw_port)  # fmt: skip
        procs.append(gw)
        idle = rss_kib(gw.pid)
        req = request_bytes("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": True})
        samples: list = []
        done = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not done.is_set():
                samples.append((round(time.monotonic() - t0, 2), rss_kib(gw.pid)))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        run = load(gw_port, req, 64, total)
        done.set()
        sampler.join()
        half = len(samples) // 2
        return {
            "idle_kib": idle,
            "streams": 64,
            "requests": len(run["latencies"]),
            "errors": run["errors"],
            "seconds": run["wall"],
            "first_half_max_kib": max(v for _t, v in samples[:half]),
            "second_half_max_kib": max(v for _t, v in samples[half:]),
            "end_kib": samples[-1][1],
            "samples": samples,
        }
    finally:
        for p in reversed(procs):
            stop(p)


def _f(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _verdict(added99: float, nginx99: float | None, conc: int) -> str:
    """The issue's targets for one gateway row: p99 added <= 1 ms (stated for 16 clients), and p99 added no more
    than 1 ms above nginx's."""
    parts = []
    if conc == 16:
        parts.append("≤1 ms: " + ("met" if added99 <= TARGET_P99_MS else "missed"))
    if nginx99 is not None:
        parts.append("vs nginx: " + ("met" if added99 - nginx99 <= TARGET_P99_MS else "missed"))
    return "; ".join(parts) or "-"


def _added_table(rows: list, title: str, p50: str, p99: str, extra: tuple = ()) -> list:
    """Rows grouped by (case, clients): each target's p50/p99, added against direct, and the verdict."""
    head = ["Case", "Clients", "Target", "p50 ms", "p99 ms", "added p50", "added p99"]
    head += [e[0] for e in extra] + ["CPU ms/req", "load", "n", "target met?"]
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["clients"]), {})[r["target"]] = r
    for (case, conc), by_target in groups.items():
        d = by_target.get("direct")
        ng = by_target.get("nginx")
        ng99 = ng[p99] - d[p99] if ng and d else None
        for name, r in by_target.items():
            a50 = "-" if name == "direct" else f"{r[p50] - d[p50]:+.3f}"
            a99 = "-" if name == "direct" else f"{r[p99] - d[p99]:+.3f}"
            cells = [case, conc, name, f"{r[p50]:.3f}", f"{r[p99]:.3f}", a50, a99]
            for _label, fn in extra:
                cells.append(fn(r, d))
            verdict = _verdict(r[p99] - d[p99], ng99, conc) if name == "gateway" else ""
            cells += [_f(r.get("cpu_ms_per_req")), f"{r['load1']:.2f}", r["n"], verdict]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return [*lines, ""]


def render_md(result: dict) -> str:
    m = result["machine"]
    la = " ".join(f"{x:.2f}" for x in m["load_avg_start"])
    lines = [
        "# gateway: added latency of keepwarm-gateway vs direct and vs nginx",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpus']} CPUs (shared), kernel {m['kernel']}, Python {m['python']}, nginx {m['nginx']}; load "
        f"average {la} at the start, {m['load_avg_end'][0]:.2f} at the end; wall {result['wall_s']:.0f} s.",
        "",
        "Targets run in alternating blocks within each row. *added* = the target's percentile minus direct's in the "
        "same row (a difference of percentiles, so noise can make it negative). *CPU ms/req*: the target's user + "
        "system CPU time over its requests (/proc; nginx master + worker). *load*: 1-minute load average after the "
        "row. *target met?* (gateway rows): the issue's p99 added ≤ 1 ms (stated at 16 clients) and p99 added no more "
        "than 1 ms above nginx's. Method: bench/gateway/README.md.",
        "",
    ]
    real = result["realistic"]

    def every_line(r: dict, d: dict) -> str:
        return f"{r['line_p50_ms']:.3f} / {r['line_p99_ms']:.3f} ({r['line_p99_ms'] - d['line_p99_ms']:+.3f})"

    def ttfb(r: dict, d: dict) -> str:
        return f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}"

    lines += _added_table(
        [r for r in real if r["case"] == "streaming"],
        "## 1. At an LLM's pace: emulator at real time, 100 tokens/s, streaming\n\np50/p99 = "
        "delivery delay of each response's first line (time to first byte without the emulator's "
        "generation jitter); then every line's delivery delay, and the TTFB the client saw",
        "first_p50_ms",
        "first_p99_ms",
        (("every line p50 / p99 ms (added p99)", every_line), ("TTFB p50 / p99 ms", ttfb)),
    )
    lines += _added_table(
        [r for r in real if r["case"] == "non-streaming"],
        "## 1b. At an LLM's pace: non-streaming\n\np50/p99 = delivery delay of the whole response "
        "(its last byte, against the emulator's stamp on it); then the full latency the client saw",
        "line_p50_ms",
        "line_p99_ms",
        (("latency p50 / p99 ms", ttfb),),
    )
    rows = result["rows"]
    lines += _added_table(
        [r for r in rows if "paced" in r["case"]],
        f"## 2. Below saturation: null upstream, {PACED_RATE} requests/s in all",
        "p50_ms",
        "p99_ms",
    )
    capacity = [r for r in rows if "paced" not in r["case"]]
    rps = (("req/s", lambda r, d: f"{r['rps']:.0f}"),)
    lines += _added_table(capacity, "## 3. Capacity: null upstream, closed loop (no think time: saturation)",
                          "p50_ms", "p99_ms", rps)  # fmt: skip
    if result.get("before_rev"):
        lines[-1:-1] = [
            "",
            f"*gateway before* = the gateway at git revision {result['before_rev']} (asyncio "
            "streams, h11 on both sides, a task per connection), same machine, same blocks.",
        ]
    lines += ["## 4. Streamed throughput: one client, streams of 20,000 NDJSON lines, one write per line upstream", "",
              "| Target | streams | lines/s | MB/s | chunks as received | CPU µs/line | load |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for t in result["throughput"]:
        lines.append(f"| {t['target']} | {t['streams']} | {t['lines_per_s']:.0f} | {t['mb_per_s']:.2f} | "
                     f"{t['chunks']} | {_f(t['cpu_us_per_line'], '{:.1f}')} | {t['load1']:.2f} |")  # fmt: skip
    mem = result["memory"]
    lines += [
        "",
        "## 5. Memory",
        "",
        f"Gateway RSS, 64 open streams for {mem['seconds']:.1f} s, {mem['requests']} streams, {mem['errors']} "
        f"errors: idle {mem['idle_kib'] / 1024:.1f} MiB, max in the first half {mem['first_half_max_kib'] / 1024:.1f}"
        f" MiB, max in the second half {mem['second_half_max_kib'] / 1024:.1f} MiB, at the end "
        f"{mem['end_kib'] / 1024:.1f} MiB.",
        "",
    ]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    real = result["realistic"]
    panels = [
        ("first token delivery, 100 tokens/s", "first_", [r for r in real if r["case"] == "streaming"]),
        ("every token delivery, 100 tokens/s", "line_", [r for r in real if r["case"] == "streaming"]),
        ("non-streaming delivery, 100 tokens/s", "line_", [r for r in real if r["case"] == "non-streaming"]),
        ("paced 200 req/s, null upstream", "", [r for r in result["rows"] if r["case"].startswith("non-streaming, p")]),
        ("closed loop, null upstream", "", [r for r in result["rows"] if r["case"] == "non-streaming"]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), squeeze=False)
    axes.flat[-1].set_axis_off()
    for ax, (title, key, sub) in zip(axes.flat, panels):
        direct = {r["clients"]: r for r in sub if r["target"] == "direct"}
        targets = [t for t in dict.fromkeys(r["target"] for r in sub) if t != "direct"]
        conc = list(direct)
        width = 0.8 / max(len(targets), 1)
        for i, t in enumerate(targets):
            p50, p99 = key + "p50_ms", key + "p99_ms"
            a50 = [next(r[p50] for r in sub if r["clients"] == c and r["target"] == t) - direct[c][p50] for c in conc]
            a99 = [next(r[p99] for r in sub if r["clients"] == c and r["target"] == t) - direct[c][p99] for c in conc]
            xs = [j + i * width for j in range(len(conc))]
            ax.bar(xs, a99, width, alpha=0.35, color=f"C{i}")
            ax.bar(xs, a50, width, label=t, color=f"C{i}")
        ax.axhline(TARGET_P99_MS, color="red", linewidth=0.8, linestyle="--")
        ax.set_xticks([j + width * (len(targets) - 1) / 2 for j in range(len(conc))])
        ax.set_xticklabels([f"{c} clients" for c in conc])
        ax.set_ylabel("added ms vs direct (solid p50, light p99)")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
