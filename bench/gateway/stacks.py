"""Which HTTP stack for keepwarm-gateway: pass-through cost of the candidates against a null upstream.

    python bench/gateway/stacks.py [--total N]

Candidates (pure Python, run on 3.9+, fit in a zipapp): the gateway as built (asyncio Protocols, h11 for client
requests, a lean reader for Ollama's answers; policy code on), and a stdlib-only threaded proxy
(http.server.ThreadingHTTPServer + http.client, bench/gateway/stdlib_proxy.py).
Upstream: bench/gateway/null_upstream.py (answers at once). Interleaved: each row runs direct, then each candidate.
Writes bench/results/gateway.stacks.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from common import HERE, PY, ROOT, free_port, load, request_bytes, start, stop, summary


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=2000)
    args = ap.parse_args()
    up = free_port()
    gw = free_port()
    sp = free_port()
    procs = [start([PY, str(HERE / "null_upstream.py"), str(up)], up)]
    procs.append(
        start([PY, "-m", "gateway", "--listen", f"127.0.0.1:{gw}", "--upstream", f"http://127.0.0.1:{up}",
               "--model", "llama3.2,num_ctx=8192"], gw)
    )  # fmt: skip
    procs.append(start([PY, str(HERE / "stdlib_proxy.py"), str(sp), str(up)], sp))
    targets = {"direct": up, "gateway (asyncio Protocols)": gw, "stdlib threads": sp}
    cases = {
        "GET /api/version": (request_bytes("GET", "/api/version"), False),
        "POST /api/generate": (request_bytes("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi",
                                                                      "stream": False}), False),
        "stream TTFB": (request_bytes("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi",
                                                               "stream": True}), True),
    }  # fmt: skip
    rows = []
    try:
        for case, (req, ttfb) in cases.items():
            for conc in (1, 16, 64):
                for name, port in targets.items():
                    load(port, req, conc, 200, ttfb=ttfb)  # warm-up
                    r = load(port, req, conc, args.total, ttfb=ttfb)
                    rows.append({"case": case, "clients": conc, "target": name, **summary(r)})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        for p in procs:
            stop(p)
    out = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "total": args.total,
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (ROOT / "bench" / "results" / "gateway.stacks.json").write_text(json.dumps(out, indent=1) + "\n")
    print("| Case | Clients | Target | p50 ms | p99 ms | mean ms | max ms | req/s | added p50 | added p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    direct = {(r["case"], r["clients"]): r for r in rows if r["target"] == "direct"}
    for r in rows:
        d = direct[(r["case"], r["clients"])]
        cells = [r["case"], r["clients"], r["target"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
                 f"{r['mean_ms']:.2f}", f"{r['max_ms']:.1f}", f"{r['rps']:.0f}",
                 f"{r['p50_ms'] - d['p50_ms']:.3f}", f"{r['p99_ms'] - d['p99_ms']:.3f}"]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
