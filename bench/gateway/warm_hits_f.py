"""warm_hits setup (f): OLLAMA_KEEP_ALIVE=-1 + keepwarm-gateway + the agent's `watch`, on the same seeded workload.

    python bench/gateway/warm_hits_f.py            # 2 emulated hours at time scale 20 (~6 min)
    python bench/gateway/warm_hits_f.py --smoke    # 10 emulated minutes at scale 120 (~10 s), under build/

Reuses bench/warm_hits (workload.py, analysis.py, run.py's Heartbeat, calibration, replay() and table): the
emulator runs with OLLAMA_MAX_LOADED_MODELS=1 and OLLAMA_KEEP_ALIVE=-1; `python -m gateway --model llama3.2
--max-loaded-models 1` (the defaults: keep_alive forced to -1, unload refused, runner options rewritten to the
pin's, eviction of the pin refused with 503) sits in front of it; the workload client talks to the gateway; the
agent's `watch` (poll 5 emulated s) talks to the emulator directly. Writes bench/results/gateway.warm_hits.{md,json}:
the row in warm_hits' columns, what the gateway did with each client kind, and the pinned model's
unload/reload/eviction events (by clients: there is no other cause here).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WARM_HITS = ROOT / "bench" / "warm_hits"
sys.path.insert(1, str(WARM_HITS))
sys.path.insert(1, str(ROOT))

import analysis  # noqa: E402  (bench/warm_hits)
import workload  # noqa: E402  (bench/warm_hits)
from common import free_port, start, stop  # noqa: E402

_spec = importlib.util.spec_from_file_location("warm_hits_run", WARM_HITS / "run.py")
wh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wh)

SETUP = "gateway"
LABEL = f"(f) -1 + gateway + keepwarm `watch`, poll {wh.WATCH_POLL:g} s"


def run_setup(scale: float, duration: float, seed: int, workdir: Path) -> dict:
    env = {"OLLAMA_MAX_LOADED_MODELS": "1", "OLLAMA_EMULATOR_TIME_SCALE": f"{scale:g}", "OLLAMA_KEEP_ALIVE": "-1"}
    emu_log = open(workdir / "gateway-emulator.log", "wb")  # noqa: SIM115
    emu = wh.Emulator(env, log=emu_log, start_timeout=20)
    gw_log = open(workdir / "gateway-gateway.log", "wb")  # noqa: SIM115
    gw_port = free_port()
    gw = start([sys.executable, "-m", "gateway", "--listen", f"127.0.0.1:{gw_port}", "--upstream", emu.url,
                "--model", workload.PINNED, "--max-loaded-models", "1"], gw_port, log=gw_log)  # fmt: skip
    try:
        # the workload client talks to the gateway, the agent's `watch` to Ollama directly
        return wh.replay(SETUP, emu_url=emu.url, target_url=f"http://127.0.0.1:{gw_port}", heartbeat="watch",
                         scale=scale, duration=duration, seed=seed, workdir=workdir)  # fmt: skip
    finally:
        stop(gw)
        gw_log.close()
        emu.stop()
        emu_log.close()


def decisions(log_path: Path) -> list:
    out = []
    for line in log_path.read_text().splitlines():
        if " event=decision " in line:
            fields = dict(p.split("=", 1) for p in line.split(" ") if "=" in p and not p.startswith('"'))
            out.append(fields)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    scale, duration = (120.0, 600.0) if args.smoke else (20.0, 7200.0)
    out_dir = ROOT / ("build/bench/smoke" if args.smoke else "bench/results")
    work = ROOT / "build" / "bench" / "warm_hits"
    for d in (out_dir, work):
        d.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    raw = run_setup(scale, duration, args.seed, work)
    wall = time.monotonic() - started
    reqs = workload.generate(args.seed, duration)
    m = analysis.analyse(raw, workload.PINNED_KEY, duration, workload.protectable(reqs))
    m["pinned"] = workload.PINNED
    wh.LABELS[SETUP] = LABEL
    per_kind: dict = collections.defaultdict(collections.Counter)
    for d, r in zip(decisions(work / "gateway-gateway.log"), raw["requests"]):
        per_kind[r["client"]][d.get("rule", "?") + ("" if r["status"] == 200 else f" -> {r['status']}")] += 1
    pinned_events = collections.Counter(e["event"] for e in raw["events"] if e["model"].startswith(workload.PINNED))
    pinned_reqs = [r for r in raw["requests"] if r["model"] == workload.PINNED]
    pinned_cold = [r for r in pinned_reqs if r.get("status") == 200 and r["load_duration"] >= analysis.WARM_THRESHOLD]
    lines = [
        "# warm_hits setup (f): OLLAMA_KEEP_ALIVE=-1 + keepwarm-gateway + keepwarm `watch`",
        "",
        f"Command: `python bench/gateway/warm_hits_f.py{' --smoke' if args.smoke else ''}` (seed {args.seed}, "
        f"{duration / 3600:g} emulated hours at time scale {scale:g}, wall {wall:.0f} s). Same workload and "
        "columns as [warm_hits.md](warm_hits.md) (rows (a)-(e) there).",
        "",
        wh.table([m]),
        "",
        f"Requests for the pinned model: {len(pinned_reqs)}, served warm "
        f"{len(pinned_reqs) - len(pinned_cold)} (cold: {len(pinned_cold)}"
        + (", " + ", ".join(f"{r['client']} at {r['send']:.0f} s" for r in pinned_cold) if pinned_cold else "")
        + f"). Pinned model events in the emulator: {dict(pinned_events)} (the first `load` is the agent's initial"
        " pin; an unload, reload or eviction here could only be a client's doing).",
        "",
        "What the gateway did, per client kind (rules from its decision log; `-> 503` = refused):",
        "",
        "| Client kind | Decisions |",
        "|---|---|",
    ]
    for kind, counter in sorted(per_kind.items()):
        lines.append(f"| {kind} | " + "; ".join(f"{k} x{n}" for k, n in sorted(counter.items())) + " |")
    lines += [
        "",
        "The `other-model` requests are what the policy deliberately refuses: with OLLAMA_MAX_LOADED_MODELS=1 each "
        "would evict the pinned model (503 with Retry-After; `evict: queue` or `allow` per model trades that back). "
        "`rag` clients lose their num_ctx 8192 (rewritten to the pin's automatic context; gateway/README.md says what "
        "that costs them).",
        "",
    ]
    text = "\n".join(lines)
    (out_dir / "gateway.warm_hits.md").write_text(text)
    (out_dir / "gateway.warm_hits.json").write_text(json.dumps(
        {"metrics": {k: v for k, v in m.items() if k not in ("intervals", "cold_times")},
         "per_kind": {k: dict(v) for k, v in per_kind.items()}, "pinned_events": dict(pinned_events),
         "wall_s": wall}, indent=1, default=str) + "\n")  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
