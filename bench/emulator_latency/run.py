#!/usr/bin/env python3
"""emulator_latency: request latency of the Ollama emulator on a new vs a kept-alive connection, direct and through
Debian's nginx with upstream keepalive (issue 17).

    .venv/bin/python bench/emulator_latency/run.py                   # bench/results/emulator_latency.{md,json}
    .venv/bin/python bench/emulator_latency/run.py --before b18d5b2  # also lab/emulator at that commit
    .venv/bin/python bench/emulator_latency/run.py --smoke           # 20 requests a row, under build/bench/smoke/

The emulator runs as the lab runs it: the zipapp built by lab/emulator/build.py. Each row times N sequential
requests with Python's http.client (perf_counter from sending the request to the last body byte; a "new connection"
row includes connect and close). Rows:
  direct, new connection      GET /api/ps, one TCP connection per request
  direct, kept-alive          GET /api/ps, all on one connection
  direct, kept-alive, load    warm load-only POST /api/generate {"model": "llama3.2"} on one connection
  nginx, kept-alive           GET /api/ps through nginx (client kept alive to nginx; nginx `keepalive 8` upstream,
                              HTTP/1.1, `proxy_buffering off`), nginx on 127.0.0.1 with a private config
The nginx rows need `nginx` on PATH (apt-get install nginx-light); without it they are left out and the table says so.
`--before REV` extracts lab/emulator from git at REV into a temporary folder and runs the same rows against it, so
the table shows the figures before and after a change of the emulator's socket writes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import Emulator, free_port  # noqa: E402

NGINX_CONF = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream emulator {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            proxy_buffering off;
        }}
    }}
}}
"""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def _one(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> float:
    headers = {"Content-Type": "application/json"} if body else {}
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    dt = time.perf_counter() - t0
    if r.status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {r.status}")
    return dt


def time_requests(port: int, n: int, reuse: bool, request: tuple = ("GET", "/api/ps", None)) -> list:
    method, path, body = request
    data = None if body is None else json.dumps(body).encode()
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30) if reuse else None
    try:
        for _ in range(n + 5):  # the first 5 are warm-up
            if reuse:
                dt = _one(conn, method, path, data)
            else:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                t0 = time.perf_counter()
                _one(c, method, path, data)
                c.close()
                dt = time.perf_counter() - t0
            out.append(dt)
    finally:
        if conn is not None:
            conn.close()
    return out[5:]


class Nginx:
    def __init__(self, upstream_port: int):
        self.dir = Path(tempfile.mkdtemp(prefix="kw-nginx-"))
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(d=self.dir, upstream=upstream_port, port=self.port))
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
                self.stop()
                raise RuntimeError(f"nginx did not start: {err}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_version() -> str | None:
    if not shutil.which("nginx"):
        return None
    p = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return (p.stderr or p.stdout).strip().replace("nginx version: ", "")


def measure(label: str, app: Path, n: int, with_nginx: bool) -> list[dict]:
    """The rows for one emulator, run as the lab runs it: the zipapp `app` built by lab/emulator/build.py."""
    emu = Emulator({"OLLAMA_EMULATOR_LOAD_BPS": "1e12", "OLLAMA_EMULATOR_TOKEN_RATE": "1e6"}, command=[str(app)])
    rows = []
    nginx = None
    try:
        emu.request("POST", "/api/generate", {"model": "llama3.2"})  # warm: load-only rows measure a warm runner
        cases = [
            ("direct, new connection", "GET /api/ps", emu.port, False, "GET", "/api/ps", None),
            ("direct, kept-alive", "GET /api/ps", emu.port, True, "GET", "/api/ps", None),
            ("direct, kept-alive", "POST /api/generate (warm load-only)", emu.port, True, "POST", "/api/generate",
             {"model": "llama3.2"}),
        ]  # fmt: skip
        if with_nginx:
            nginx = Nginx(emu.port)
            cases += [
                ("nginx (upstream keepalive), new connection", "GET /api/ps", nginx.port, False, "GET", "/api/ps",
                 None),
                ("nginx (upstream keepalive), kept-alive", "GET /api/ps", nginx.port, True, "GET", "/api/ps", None),
            ]  # fmt: skip
        for path_label, request, port, reuse, method, path, body in cases:
            t = time_requests(port, n, reuse, (method, path, body))
            rows.append(
                {
                    "emulator": label,
                    "path": path_label,
                    "request": request,
                    "n": len(t),
                    "p50_ms": round(percentile(t, 50) * 1000, 3),
                    "p99_ms": round(percentile(t, 99) * 1000, 3),
                    "mean_ms": round(sum(t) / len(t) * 1000, 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if nginx is not None:
            nginx.stop()
        emu.stop()
    return rows


def machine() -> str:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) // 1024} MiB RAM"
    except OSError:
        pass
    return f"{platform.platform()}, {os.cpu_count()} CPUs{mem}"


def write(out_dir: Path, result: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "emulator_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# emulator_latency: the emulator's latency on new vs kept-alive connections (issue 17)",
        "",
        f"Run {result['date']} on {result['machine']} (2 shared CPUs: other jobs ran at the same time). "
        f"Python {result['python']}, http.client, n sequential requests per row after 5 warm-up ones; "
        "time from sending the request to the last body byte (a new-connection row includes connect and close). "
        f"nginx: {result['nginx'] or 'not installed (rows left out)'}, 127.0.0.1, private config: upstream "
        "`keepalive 8`, `proxy_http_version 1.1`, `proxy_buffering off`. Command: "
        f"`{result['command']}`.",
        "",
        "| emulator | path | request | n | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['emulator']} | {r['path']} | {r['request']} | {r['n']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['mean_ms']:.3f} |"
        )
    lines += ["", result["notes"], ""]
    (out_dir / "emulator_latency.md").write_text("\n".join(lines))


def build_at(rev: str | None, into: Path) -> Path:
    """The /usr/local/bin/ollama zipapp of lab/emulator at git revision `rev` (None: this checkout), built by that
    revision's own lab/emulator/build.py."""
    src = ROOT
    if rev is not None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "lab/emulator"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
        src = into
    app = into / "ollama"
    subprocess.run([sys.executable, str(src / "lab/emulator/build.py"), str(app)], check=True, capture_output=True)
    return app


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=None, help="requests per row (default 1000; 200 for --before rows)")
    ap.add_argument("--before", metavar="REV", help="also measure lab/emulator at this git revision")
    ap.add_argument("--smoke", action="store_true", help="20 requests per row; results under build/bench/smoke/")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    n = 20 if args.smoke else (args.n or 1000)
    out_dir = args.out_dir or (ROOT / "build/bench/smoke" if args.smoke else ROOT / "bench/results")
    nginx = nginx_version()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="kw-emu-latency-"))
    try:

        def short(rev: str) -> str:
            return subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True, check=True
            ).stdout.strip()

        if args.before:
            (tmp / "before").mkdir()
            app = build_at(args.before, tmp / "before")
            rows += measure(f"before ({short(args.before)})", app, 20 if args.smoke else (args.n or 200), bool(nginx))
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "lab/emulator"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        (tmp / "now").mkdir()
        app = build_at(None, tmp / "now")
        rows += measure(f"this checkout ({short('HEAD')}{'+changes' if dirty else ''})", app, n, bool(nginx))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "python": platform.python_version(),
        "nginx": nginx,
        "n": n,
        "command": "python bench/emulator_latency/run.py" + (f" --before {args.before}" if args.before else ""),
        "rows": rows,
        "notes": (
            "Before issue 17's fix the emulator wrote the status line and headers, then the body, in two send() calls "
            "with Nagle's algorithm on: on a kept-alive connection the body waited for the client's delayed ACK "
            "(~40 ms). Go's net/http sets TCP_NODELAY on accepted connections and writes small responses at once; "
            "the emulator now does both (lab/emulator/api.py `Handler`; tests/emulator/test_emu_http_writes.py)."
        ),
    }
    write(out_dir, result)
    print(f"wrote {out_dir / 'emulator_latency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
