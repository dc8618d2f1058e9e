#!/usr/bin/env python3
"""warm_hits: the same seeded client workload against five keep-warm setups, one emulator each.

    /work/venv/bin/python bench/warm_hits/run.py          # 2 emulated hours at time scale 20 (~6 min), all five
                                                          # setups in parallel: bench/results/warm_hits.{md,png}
    /work/venv/bin/python bench/warm_hits/run.py --smoke  # 10 emulated minutes at scale 120 (~8 s); writes to
                                                          # build/bench/smoke/ unless --out-dir is given

Setups (every emulator runs with OLLAMA_MAX_LOADED_MODELS=1 and OLLAMA_EMULATOR_TIME_SCALE=--scale):
  defaults   server defaults (keep-alive 5m)
  env        OLLAMA_KEEP_ALIVE=-1 only
  article    OLLAMA_KEEP_ALIVE=-1 + bench/article_heartbeat.py as written (empty prompt, top-level num_ctx 1 which
             Ollama ignores, a POST every 240 emulated s: its INTERVAL is 240/scale real seconds)
  once       OLLAMA_KEEP_ALIVE=-1 + keepwarm's agent `once` fired by a simulated timer every ONCE_INTERVAL emulated
             seconds (the agent's default interval, read from heartbeat_agent/_config.py DEFAULTS: 20 s); the timer
             calls the agent's CLI entry point in-process so Python start-up (~0.3 s real = 6 emulated s at scale 20)
             does not stretch the emulated timing
  watch      OLLAMA_KEEP_ALIVE=-1 + keepwarm's agent `watch` as a process, --poll 5/scale (its default 5 s, scaled)

The workload client (one per setup, real HTTP, sequential) sends each request at its emulated time; see workload.py.
Each setup runs in its own worker process (`--worker SETUP`), which writes its raw record as JSON; the parent
analyses them (analysis.py) and writes the table and chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTICLE = ROOT / "bench" / "article_heartbeat.py"

sys.path.insert(0, str(ROOT))
import analysis  # noqa: E402  (sibling module: the script's folder is sys.path[0])
import workload  # noqa: E402

from heartbeat_agent._config import DEFAULTS as AGENT_DEFAULTS  # noqa: E402
from heartbeat_agent._expiry import parse_expires_at  # noqa: E402
from tests.conftest import Emulator  # noqa: E402

SETUPS = ["defaults", "env", "article", "once", "watch"]
ARTICLE_INTERVAL = 240.0  # emulated seconds (the article's INTERVAL)
ONCE_INTERVAL = float(AGENT_DEFAULTS["interval"])  # emulated seconds: the agent's default timer interval
WATCH_POLL = float(AGENT_DEFAULTS["poll"])  # emulated seconds: the agent's default watch poll
LABELS = {
    "defaults": "(a) server defaults",
    "env": "(b) OLLAMA_KEEP_ALIVE=-1 only",
    "article": "(c) -1 + article heartbeat (240 s)",
    "once": f"(d) -1 + keepwarm `once`, timer {ONCE_INTERVAL:g} s",
    "watch": f"(e) -1 + keepwarm `watch`, poll {WATCH_POLL:g} s",
}
LEAD_IN = 1.5  # real seconds between starting a setup's heartbeat process and t0 (the start of the measured run)


# ------------------------------------------------------------------------------------------------------------
# worker: one setup
# ------------------------------------------------------------------------------------------------------------


def _http(url: str, body: Optional[dict] = None, method: Optional[str] = None, timeout: float = 60.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        is_json = resp.headers.get("Content-Type", "").startswith("application/json")
        return resp.status, resp.headers, json.loads(raw) if raw and is_json else raw


def terminate(proc: subprocess.Popen) -> None:
    """SIGTERM a child (the emulator unloads its runners on it), SIGKILL after 10 s; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _calibrate(url: str) -> tuple[int, float]:
    """(emulated ns, local monotonic) at the same instant, from the X-Ollama-Emulator-Now header; best of 5."""
    best = None
    for _ in range(5):
        a = time.monotonic()
        _, headers, _ = _http(url + "/api/version")
        b = time.monotonic()
        now = parse_expires_at(headers["X-Ollama-Emulator-Now"])
        if best is None or b - a < best[0]:
            best = (b - a, now, (a + b) / 2)
    return best[1], best[2]


class Heartbeat:
    """The setup's keep-warm mechanism, started at t0 and stopped at the end."""

    def __init__(self, setup: str, url: str, scale: float, t0: float, workdir: Path):
        self.setup, self.url, self.scale, self.t0, self.workdir = setup, url, scale, t0, workdir
        self.proc: Optional[subprocess.Popen] = None
        self.stop_event = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.beats = 0
        self.log = open(workdir / f"{setup}-heartbeat.log", "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        # Processes start now, during the lead-in before t0, so their Python start-up (real seconds, many emulated
        # ones) is not counted against them; the `once` timer's first beat is at t0.
        if setup == "article":
            cmd = [sys.executable, str(ARTICLE), workload.PINNED, url + "/api/generate", f"{ARTICLE_INTERVAL / scale}"]
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        elif setup == "watch":
            cmd = [sys.executable, "-m", "heartbeat_agent", "--url", url, "--model", workload.PINNED,
                   "--poll", f"{WATCH_POLL / scale}", "watch"]  # fmt: skip
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        elif setup == "once":
            os.environ["STATE_DIRECTORY"] = str(workdir / "once-state")  # systemd's StateDirectory= for the unit
            (workdir / "once-state").mkdir(exist_ok=True)
            self.thread = threading.Thread(target=self._timer, daemon=True)
            self.thread.start()

    def _timer(self) -> None:
        """A systemd timer (OnActiveSec=0, OnUnitActiveSec=ONCE_INTERVAL) starting the oneshot agent `once`."""
        from heartbeat_agent._cli import main as agent_main  # logs to sys.stdout: the worker's log file

        period = ONCE_INTERVAL / self.scale
        k = 0
        while not self.stop_event.is_set():
            due = self.t0 + k * period
            if self.stop_event.wait(max(due - time.monotonic(), 0)):
                break
            agent_main(["--url", self.url, "--model", workload.PINNED, "once"])
            self.beats += 1
            k = max(k + 1, int((time.monotonic() - self.t0) / period))

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(30)
        if self.proc is not None:
            terminate(self.proc)
        self.log.close()


def _sleep_until(t: float) -> None:
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def replay(setup: str, *, emu_url: str, target_url: str, heartbeat: Optional[str], scale: float, duration: float,
           seed: int, workdir: Path) -> Dict[str, Any]:  # fmt: skip
    """One run of the seeded workload against a running emulator, as the raw record analysis.py reads.

    Calibrates the emulator's clock, starts the heartbeat (`heartbeat`: "article", "once", "watch" or None) against
    the emulator, then the workload client: each request of workload.generate(seed, duration) POSTed to
    TARGET_URL/api/generate at its emulated time (t0 + at/scale real seconds), one after another; waits out the
    duration and collects the emulator's events. TARGET_URL is the emulator here, keepwarm-gateway in
    bench/gateway/warm_hits_f.py (which calls this with its own emulator and gateway).
    """
    reqs = workload.generate(seed, duration)
    emu_ns, mono = _calibrate(emu_url)
    t0 = time.monotonic() + LEAD_IN
    t0_emulated_ns = emu_ns + int((t0 - mono) * scale * 1e9)
    hb = None if heartbeat is None else Heartbeat(heartbeat, emu_url, scale, t0, workdir)
    _sleep_until(t0)
    records: List[Dict[str, Any]] = []
    late = 0.0
    for r in reqs:
        due = t0 + r.at / scale
        late = max(late, (time.monotonic() - due) * scale)
        _sleep_until(due)
        rec = dict(r.to_dict(), send=(time.monotonic() - t0) * scale)
        try:
            status, _, body = _http(target_url + "/api/generate", r.body())
            rec.update(status=status, load_duration=(body or {}).get("load_duration", 0) / 1e9)
        except urllib.error.HTTPError as exc:
            rec.update(status=exc.code, error=exc.read().decode(errors="replace")[:200])
        except OSError as exc:
            rec.update(status=0, error=str(exc))
        rec["recv"] = (time.monotonic() - t0) * scale
        records.append(rec)
    _sleep_until(t0 + duration / scale)
    if hb is not None:
        hb.stop()
    _, _, ev = _http(emu_url + "/emulator/events")
    return {
        "setup": setup,
        "scale": scale,
        "duration": duration,
        "seed": seed,
        "t0_emulated_ns": t0_emulated_ns,
        "requests": records,
        "events": ev["events"],
        "max_late_emulated_s": late,
        "heartbeat_beats": hb.beats if hb is not None and heartbeat == "once" else None,
    }


def run_setup(setup: str, scale: float, duration: float, seed: int, workdir: Path) -> Dict[str, Any]:
    env = {"OLLAMA_MAX_LOADED_MODELS": "1", "OLLAMA_EMULATOR_TIME_SCALE": f"{scale:g}"}
    if setup != "defaults":
        env["OLLAMA_KEEP_ALIVE"] = "-1"
    emu_log = open(workdir / f"{setup}-emulator.log", "wb")  # noqa: SIM115 - closed after emu.stop()
    emu = Emulator(env, log=emu_log, start_timeout=20)
    try:
        heartbeat = None if setup in ("defaults", "env") else setup
        return replay(setup, emu_url=emu.url, target_url=emu.url, heartbeat=heartbeat, scale=scale,
                      duration=duration, seed=seed, workdir=workdir)  # fmt: skip
    finally:
        emu.stop()
        emu_log.close()


# ------------------------------------------------------------------------------------------------------------
# parent: run the workers, analyse, report
# ------------------------------------------------------------------------------------------------------------


def machine() -> Dict[str, str]:
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _fmt_gap(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


COLUMNS = [
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


def table(results: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for m in results:
        hb = m["setup"] not in ("defaults", "env")
        row = [
            LABELS[m["setup"]],
            str(m["served"]) + (f" (+{m['errors']} errors)" if m["errors"] else ""),
            f"{m['warm_pct']:.1f}",
            f"{m['protectable_warm']}/{m['protectable']}",
            str(m["cold"]),
            f"{m['cold_seconds']:.1f}",
            str(m["heartbeat_loads"]) if hb else "-",
            str(m["heartbeat_reloads"]) if hb else "-",
            _fmt_gap(m["longest_gap"]),
            f"{m['loaded_pct']:.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def chart(results: List[Dict[str, Any]], duration: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), gridspec_kw={"height_ratios": [1, 1.3]})
    names = [LABELS[m["setup"]] for m in results]
    y = list(range(len(results)))[::-1]
    all_pct = [m["warm_pct"] for m in results]
    prot_pct = [100.0 * m["protectable_warm"] / max(m["protectable"], 1) for m in results]
    ax1.barh([v + 0.2 for v in y], all_pct, 0.4, label="all requests", color="#4c72b0")
    ax1.barh([v - 0.2 for v in y], prot_pct, 0.4, label="requests a heartbeat could protect", color="#55a868")
    for v, a, p in zip(y, all_pct, prot_pct):
        ax1.text(a + 0.5, v + 0.2, f"{a:.0f}%", va="center", fontsize=8)
        ax1.text(p + 0.5, v - 0.2, f"{p:.0f}%", va="center", fontsize=8)
    ax1.set_yticks(y, names)
    ax1.set_xlim(0, 110)
    ax1.set_xlabel("requests served warm (%)")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    ax1.set_title("Same seeded workload, five setups (OLLAMA_MAX_LOADED_MODELS=1)")

    hours = duration / 3600
    for v, m in zip(y, results):
        ax2.broken_barh([(a / 3600, (b - a) / 3600) for a, b in m["intervals"]], (v - 0.3, 0.6), color="#55a868")
        cold_p = [t / 3600 for t, _, prot in m["cold_times"] if prot]
        cold_u = [t / 3600 for t, _, prot in m["cold_times"] if not prot]
        ax2.plot(cold_u, [v] * len(cold_u), "x", color="#888888", ms=5)
        ax2.plot(cold_p, [v] * len(cold_p), "x", color="#c44e52", ms=7, mew=2)
        rl = [t / 3600 for t in m["heartbeat_reload_times"]]
        ax2.plot(rl, [v + 0.38] * len(rl), "v", color="#dd8452", ms=5)
    ax2.plot([], [], "s", color="#55a868", label=f"{results[0]['pinned']} loaded")
    ax2.plot([], [], "x", color="#c44e52", mew=2, label="cold request a heartbeat could have protected")
    ax2.plot([], [], "x", color="#888888", label="cold request no heartbeat can protect")
    ax2.plot([], [], "v", color="#dd8452", label="reload caused by the heartbeat")
    ax2.set_yticks(y, names)
    ax2.set_xlim(0, hours)
    ax2.set_xlabel("emulated hours")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(results, raws, args, *, cmd: str, mach: Dict[str, str], wall: float, path: Path) -> str:
    reqs = workload.generate(args.seed, args.duration)
    mix: Dict[str, int] = {}
    for r in reqs:
        mix[r.client] = mix.get(r.client, 0) + 1
    lines = [
        "# warm_hits: warm vs cold requests, five keep-warm setups",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {mach['nproc']} CPUs, {mach['memory']} RAM, kernel {mach['kernel']}, Python {mach['python']}, "
        f"load average at start {mach['loadavg']}  ",
        f"Run: seed {args.seed}, {args.duration / 3600:g} emulated hours at time scale {args.scale:g} "
        f"({'parallel' if args.jobs > 1 else 'sequential'}), wall {wall:.0f} s; {len(reqs)} requests per setup.",
        "",
        table(results),
        "",
        "Columns: *Warm %* of all requests served; *Protectable warm* = requests any heartbeat could serve warm "
        "(pinned model, same runner options as the request before, the request before neither for another model "
        "nor `keep_alive: 0`) served warm / their number; *Cold starts* and *Cold-start s* = requests that waited "
        "for a load and the emulated seconds they waited in total; *Heartbeat loads* = loads of the pinned model "
        "started by the heartbeat (repairs after an expiry/unload/eviction); *Heartbeat reloads* = reloads started "
        "by the heartbeat (its runner options differ from the loaded runner's: a cold start the heartbeat causes); "
        "*Longest gap* = longest stretch with the pinned model not loaded (emulated); *Loaded %* = share of the "
        "run it was loaded. Rules: bench/README.md.",
        "",
        "Workload mix (client kind: requests): "
        + ", ".join(f"{workload.BY_NAME[k].name} {v}" for k, v in mix.items())
        + ".",
        "",
        "Cold requests by client kind, and for protectable ones served cold the kind of the request before:",
        "",
    ]
    for m in results:
        lines.append(
            f"- {LABELS[m['setup']]}: cold-start s {m['pinned_cold_seconds']:.1f} on {m['pinned']}, "
            f"{m['cold_seconds'] - m['pinned_cold_seconds']:.1f} on the other model; "
            f"cold {m['cold_by_client'] or '{}'}; protectable cold after "
            f"{m['cold_protectable_by_client_before'] or '{}'}; heartbeat loads of the other model "
            f"{m['heartbeat_other_loads']}; evictions of the other model {m['evictions_of_other']}"
        )
    lines += [
        "",
        "Checks: warm/cold by `load_duration` disagreeing with /emulator/events (should be 0): "
        + ", ".join(f"{m['setup']} {m['check_mismatches']}" for m in results)
        + "; latest request send vs its schedule (emulated s): "
        + ", ".join(f"{r['setup']} {r['max_late_emulated_s']:.1f}" for r in raws)
        + "; loads attributed to a heartbeat in setups without one (should be 0): "
        + ", ".join(
            f"{m['setup']} {m['heartbeat_loads'] + m['heartbeat_reloads'] + m['heartbeat_other_loads']}"
            for m in results
            if m["setup"] in ("defaults", "env")
        )
        + ".",
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="10 emulated minutes at scale 120 (seconds of wall time)")
    p.add_argument("--scale", type=float, help="emulated seconds per real second (default 20; smoke 120)")
    p.add_argument("--duration", type=float, help="emulated seconds (default 7200; smoke 600)")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--jobs", type=int, default=len(SETUPS), help="setups run at once (default: all five)")
    p.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset of " + ",".join(SETUPS))
    p.add_argument("--out-dir", help="default bench/results (smoke: build/bench/smoke)")
    p.add_argument("--worker", choices=SETUPS, help=argparse.SUPPRESS)
    p.add_argument("--raw", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scale = args.scale or (120.0 if args.smoke else 20.0)
    args.duration = args.duration or (600.0 if args.smoke else 7200.0)
    out_dir = Path(args.out_dir or (ROOT / "build" / "bench" / "smoke" if args.smoke else ROOT / "bench" / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = ROOT / "build" / "bench" / "warm_hits"
    work.mkdir(parents=True, exist_ok=True)

    if args.worker:
        raw = run_setup(args.worker, args.scale, args.duration, args.seed, work)
        Path(args.raw).write_text(json.dumps(raw))
        return 0

    setups = [s for s in args.setups.split(",") if s]
    for s in setups:
        if s not in SETUPS:
            p.error(f"unknown setup {s!r}")
    mach = machine()
    given = sys.argv[1:] if argv is None else list(argv)
    cmd = "/work/venv/bin/python bench/warm_hits/run.py" + (" " + shlex.join(given) if given else "")
    start = time.monotonic()
    pending = list(setups)
    running: Dict[str, subprocess.Popen] = {}
    failed = []
    while pending or running:
        while pending and len(running) < max(args.jobs, 1):
            s = pending.pop(0)
            wcmd = [sys.executable, str(Path(__file__)), "--worker", s, "--raw", str(work / f"{s}.json")]
            wcmd += ["--scale", f"{args.scale:g}", "--duration", f"{args.duration:g}", "--seed", str(args.seed)]
            with open(work / f"{s}-worker.log", "wb") as log:
                running[s] = subprocess.Popen(wcmd, stdout=log, stderr=subprocess.STDOUT)
        for s, proc in list(running.items()):
            if proc.poll() is not None:
                del running[s]
                if proc.returncode:
                    failed.append(s)
        time.sleep(0.2)
    wall = time.monotonic() - start
    if failed:
        for s in failed:
            sys.stderr.write((work / f"{s}-worker.log").read_text()[-3000:])
        sys.stderr.write(f"warm_hits: setup(s) failed: {', '.join(failed)} (logs in {work})\n")
        return 1
    raws = [json.loads((work / f"{s}.json").read_text()) for s in setups]
    prot = workload.protectable(workload.generate(args.seed, args.duration))
    results = []
    for raw in raws:
        m = analysis.analyse(raw, workload.PINNED_KEY, args.duration, prot)
        m["pinned"] = workload.PINNED
        results.append(m)
    text = write_markdown(results, raws, args, cmd=cmd, mach=mach, wall=wall, path=out_dir / "warm_hits.md")
    chart(results, args.duration, out_dir / "warm_hits.png")
    (out_dir / "warm_hits.json").write_text(
        json.dumps([{k: v for k, v in m.items() if k not in ("intervals", "cold_times")} for m in results], indent=1)
    )
    sys.stdout.write(text)
    sys.stdout.write(f"\nwrote {out_dir / 'warm_hits.md'} and {out_dir / 'warm_hits.png'} ({wall:.1f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
