"""keepwarm-gateway against going direct and against a plain reverse proxy (Debian's nginx), side by side in one run.

    python bench/gateway/run.py [--smoke] [--out bench/results]

One emulator (`python -m lab.emulator serve`, OLLAMA_EMULATOR_TIME_SCALE=1000 so a response's emulated token delays
are microseconds and the HTTP path dominates), llama3.2 loaded and pinned. Three targets on loopback in front of
it: direct, the gateway (`python -m gateway --model llama3.2`: the policy path rewrites every request body), and
nginx (`proxy_pass`, `proxy_buffering off`, `proxy_request_buffering off`, upstream keepalive, one worker). For
each case (non-streaming POST /api/generate; streaming POST /api/generate, time to the first NDJSON line; the same
streams to their last byte) and 1, 16, 64 closed-loop clients (bench/gateway/loadgen.py, one kept-alive connection
each), the three targets run one after the other (interleaved), after a warm-up. Then memory: the gateway's RSS
while 64 clients keep 64 streams open for 20 s (emulator at time scale 1: each stream ~0.4 s), sampled every 0.25 s.

Writes bench/results/gateway.{json,md,png} (--smoke: 1 and 4 clients, 50-100 requests per row, 0.5 s paced rows,
64 streams at time scale 2, under build/bench/smoke/).
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

from common import HERE, PY, ROOT, free_port, load, request_bytes, start, stop, summary

PACED_RATE = 200  # requests/s in all: far above what one Ollama server completes, far below the proxies' limits
PACED_SECONDS = 4.0

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out_dir = Path(args.out) if args.out else ROOT / ("build/bench/smoke" if args.smoke else "bench/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    clients = (1, 4) if args.smoke else (1, 16, 64)
    if args.smoke:
        totals = {"null": {1: 100, 4: 100}, "emulator": {1: 50, 4: 50}}
    else:
        totals = {"null": {1: 1000, 16: 2000, 64: 3200}, "emulator": {1: 300, 16: 640, 64: 1280}}
    t_start = time.monotonic()
    load_avg = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="kw-bench-nginx-"))
    rows: list = []
    memory: dict = {}
    nginx = shutil.which("nginx")
    try:
        for upstream in ("null", "emulator"):
            rows += measure(
                upstream, clients, totals[upstream], tmp, nginx, paced_s=0.5 if args.smoke else PACED_SECONDS
            )
        memory = measure_memory(64 * (1 if args.smoke else 5), "2" if args.smoke else "0.5")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "command": "python bench/gateway/run.py" + (" --smoke" if args.smoke else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_avg_start": load_avg,
            "nginx": nginx_version(),
        },  # fmt: skip
        "wall_s": time.monotonic() - t_start,
        "rows": rows,
        "memory": memory,
    }
    (out_dir / "gateway.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "gateway.md").write_text(render_md(result))
    chart(result, out_dir / "gateway.png")
    print((out_dir / "gateway.md").read_text())
    return 0


def measure(upstream: str, clients: tuple, totals: dict, tmp: Path, nginx: str | None, *, paced_s: float) -> list:
    """direct / gateway / nginx in front of one upstream (the null server or the emulator), interleaved per row."""
    procs: list = []
    rows = []
    try:
        if upstream == "emulator":
            emu, up_port = emulator("1000", {"OLLAMA_NUM_PARALLEL": "64"})
            procs.append(emu)
            pin(up_port)
        else:
            up_port = free_port()
            procs.append(start([PY, str(HERE / "null_upstream.py"), str(up_port)], up_port))
        gw_port = free_port()
        procs.append(start([PY, "-m", "gateway", "--listen", f"127.0.0.1:{gw_port}", "--upstream",
                            f"http://127.0.0.1:{up_port}", "--model", "llama3.2"], gw_port))  # fmt: skip
        targets = {"direct": up_port, "gateway": gw_port}
        if nginx:
            ng_port = free_port()
            ng_dir = tmp / upstream
            for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (ng_dir / d).mkdir(parents=True)
            (ng_dir / "nginx.conf").write_text(NGINX_CONF.format(dir=ng_dir, upstream=up_port, port=ng_port))
            procs.append(start([nginx, "-p", str(ng_dir), "-c", str(ng_dir / "nginx.conf")], ng_port))
            targets["nginx"] = ng_port
        body = {"model": "llama3.2", "prompt": "hi", "keep_alive": -1}
        cases = {
            "non-streaming": (request_bytes("POST", "/api/generate", {**body, "stream": False}), False),
            "streaming TTFB": (request_bytes("POST", "/api/generate", {**body, "stream": True}), True),
            "streaming full": (request_bytes("POST", "/api/generate", {**body, "stream": True}), False),
        }
        plan = [(case, req, ttfb, conc, 0.0) for case, (req, ttfb) in cases.items() for conc in clients]
        paced = [c for c in clients if c > 1]
        for case in ("non-streaming", "streaming TTFB"):  # the same at a steady PACED_RATE instead of a closed loop
            req, ttfb = cases[case]
            plan += [(f"{case}, paced {PACED_RATE} req/s", req, ttfb, c, c / PACED_RATE) for c in paced]
        for case, req, ttfb, conc, interval in plan:
            total = int(paced_s * PACED_RATE) if interval else totals[conc]
            for name, port in targets.items():
                load(port, req, conc, max(conc * 3, 30), ttfb=ttfb)  # warm-up: connections, caches
                before = metrics(gw_port) if name == "gateway" else None
                run = load(port, req, conc, total, ttfb=ttfb, interval=interval)
                row = {"upstream": upstream, "case": case, "clients": conc, "target": name, **summary(run)}
                if before is not None:
                    after = metrics(gw_port)
                    n = after["keepwarm_gateway_added_latency_seconds_count"] - before[
                        "keepwarm_gateway_added_latency_seconds_count"]  # fmt: skip
                    s = after["keepwarm_gateway_added_latency_seconds_sum"] - before[
                        "keepwarm_gateway_added_latency_seconds_sum"]  # fmt: skip
                    row["self_mean_ms"] = s / n * 1e3 if n else None
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for p in reversed(procs):
            stop(p)
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


def render_md(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# gateway: added latency of keepwarm-gateway vs direct and vs nginx",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpus']} CPUs, kernel {m['kernel']}, Python {m['python']}, nginx {m['nginx']}, "
        f"load average at start {' '.join(f'{x:.2f}' for x in m['load_avg_start'])}; wall {result['wall_s']:.0f} s.",
        "",
        "| Upstream | Case | Clients | Target | p50 ms | p99 ms | mean ms | req/s | added p50 ms | added p99 ms "
        "| gateway's own ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = {(r["upstream"], r["case"], r["clients"]): r for r in result["rows"] if r["target"] == "direct"}
    for r in result["rows"]:
        d = direct[(r["upstream"], r["case"], r["clients"])]
        added = "-" if r["target"] == "direct" else f"{r['p50_ms'] - d['p50_ms']:+.3f}"
        added99 = "-" if r["target"] == "direct" else f"{r['p99_ms'] - d['p99_ms']:+.3f}"
        own = f"{r['self_mean_ms']:.3f}" if r.get("self_mean_ms") is not None else "-"
        cells = [r["upstream"], r["case"], r["clients"], r["target"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                 f"{r['mean_ms']:.3f}", f"{r['rps']:.0f}", added, added99, own]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    mem = result["memory"]
    lines += [
        "",
        f"Memory (gateway RSS, 64 open streams for {mem['seconds']:.1f} s, {mem['requests']} streams, "
        f"{mem['errors']} errors): idle {mem['idle_kib'] / 1024:.1f} MiB, max in the first half "
        f"{mem['first_half_max_kib'] / 1024:.1f} MiB, max in the second half "
        f"{mem['second_half_max_kib'] / 1024:.1f} MiB, "
        f"at the end {mem['end_kib'] / 1024:.1f} MiB.",
        "",
        "*added* = the target's percentile minus direct's in the same row group (a difference of percentiles, so "
        "noise can make it negative); *gateway's own* = mean of the gateway's keepwarm_gateway_added_latency_seconds "
        "histogram over the run (its time between request in and upstream request out, plus upstream response head in "
        "and client response head out). Method: bench/gateway/README.md.",
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
    rows = result["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    upstreams = list(dict.fromkeys(r["upstream"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(len(upstreams), len(cases), figsize=(5 * len(cases), 4 * len(upstreams)), squeeze=False)
    for ax, (upstream, case) in zip(axes.flat, [(u, c) for u in upstreams for c in cases]):
        sub = [r for r in rows if r["case"] == case and r["upstream"] == upstream]
        conc = list(dict.fromkeys(r["clients"] for r in sub))
        width = 0.8 / len(targets)
        for i, t in enumerate(targets):
            p50 = [next(r["p50_ms"] for r in sub if r["clients"] == c and r["target"] == t) for c in conc]
            p99 = [next(r["p99_ms"] for r in sub if r["clients"] == c and r["target"] == t) for c in conc]
            xs = [j + i * width for j in range(len(conc))]
            ax.bar(xs, p99, width, alpha=0.35, color=f"C{i}")
            ax.bar(xs, p50, width, label=t, color=f"C{i}")
        ax.set_xticks([j + width * (len(targets) - 1) / 2 for j in range(len(conc))])
        ax.set_xticklabels([f"{c} clients" for c in conc])
        ax.set_yscale("log")
        ax.set_ylabel("ms (solid p50, light p99)")
        ax.set_title(f"{case} ({upstream} upstream)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
