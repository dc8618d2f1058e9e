#!/usr/bin/env python3
"""fleet: `site.yml` and `verify.yml` wall time and controller CPU on 1, 2, 4 and 8 lab hosts.

    /work/venv/bin/python bench/fleet/run.py            # needs the lab to itself: waits (30 s polls, up to 20 min)
                                                        # while another fleet is up; writes bench/results/fleet.{md,png}
    /work/venv/bin/python bench/fleet/run.py --smoke    # 1 host, one site.yml run; reuses a running lab (first host
                                                        # only, never torn down) or boots and removes its own
    /work/venv/bin/python bench/fleet/run.py --smoke --inventory INV --limit HOST   # on a given fleet (tests)

For each size N the bench owns the whole lab: `python -m lab up N` on fresh hosts (the lab is brought `down` between
sizes, and only when this bench brought it up), then
  1. `ansible-playbook playbooks/site.yml`   first run (every host changes: drop-in, restart, pin, agent);
  2. `ansible-playbook playbooks/site.yml`   second run (idempotent: must report changed=0);
  3. `ansible-playbook playbooks/verify.yml` (read-only: /api/ps of every host).
The playbooks run as shipped (site.yml rolls out with `serial: 25%`), with SSH pipelining on (ansible.cfg
`pipelining = True`, also forced by ANSIBLE_PIPELINING=True) and ControlPersist=60s. Wall time is measured around
the ansible-playbook process; controller CPU is user+sys of it and every process it waited for
(resource.getrusage(RUSAGE_CHILDREN) before/after). SSH control masters detach from Ansible and are never waited
for, so their (small) CPU is not in the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PLAYBOOK = str(Path(PYTHON).with_name("ansible-playbook"))
SIZES = [1, 2, 4, 8]
RUNS = [("site.yml", "first"), ("site.yml", "second"), ("verify.yml", "")]
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def log(msg: str) -> None:
    sys.stderr.write(f"[fleet {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def lab(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [PYTHON, "-m", "lab", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"python -m lab {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def lab_status() -> Dict[str, Any]:
    proc = lab("status", "--json", check=False)
    if proc.returncode not in (0, 1, 3):
        raise RuntimeError(f"python -m lab status failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def lab_busy(status: Dict[str, Any]) -> bool:
    """Someone's fleet (or a crashed fleet's leftovers) is there: not ours to touch."""
    if any(h.get("running") for h in status.get("hosts", [])):
        return True
    return any(status.get("leftovers", {}).values())


def wait_for_free_lab(poll: float = 30.0, limit: float = 1200.0) -> None:
    """Return once the lab has been free on two polls in a row, `poll` s apart: a fleet that is only between two
    Molecule scenarios (destroy, then the next create) is free for seconds, and is not ours to take."""
    deadline = time.monotonic() + limit
    free_since = None
    while True:
        status = lab_status()
        if not lab_busy(status):
            if free_since is not None:
                return
            free_since = time.monotonic()
            log(f"lab free; checking again in {poll:.0f} s that nobody is between two runs")
            time.sleep(poll)
            continue
        free_since = None
        names = [h["name"] for h in status.get("hosts", []) if h.get("running")]
        if time.monotonic() > deadline:
            raise SystemExit(f"fleet: the lab stayed busy for {limit:.0f} s ({', '.join(names) or 'leftovers'}); "
                             "run again when it is free")  # fmt: skip
        log(f"lab busy ({', '.join(names) or 'leftovers'}): another engineer's fleet; retrying in {poll:.0f} s")
        time.sleep(poll)


def ensure_zipapp() -> None:
    """The heartbeat role builds dist/ollama-heartbeat.pyz on the controller when missing: do it before timing."""
    pyz = ROOT / "dist" / "ollama-heartbeat.pyz"
    if not pyz.exists():
        log("building dist/ollama-heartbeat.pyz (outside the timings)")
        subprocess.run([PYTHON, "tools/build_zipapp.py", "--out", str(pyz)], cwd=ROOT, check=True)


def run_playbook(  # noqa: PLR0917
    playbook: str, inventory: str, limit: Optional[str], logfile: Path, serial: Optional[str] = None
) -> Dict[str, Any]:
    cmd = [PLAYBOOK, "-i", inventory, f"playbooks/{playbook}"]
    if limit:
        cmd += ["--limit", limit]
    if serial and playbook == "site.yml":
        cmd += ["-e", f"keepwarm_serial={serial}"]
    env = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / "collections"))  # the checkout's (ansible.cfg names none)
    env["PATH"] = f"{Path(PYTHON).parent}:{env.get('PATH', '')}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    logfile.write_text(proc.stdout + proc.stderr)
    recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
             for m in RECAP.findall(proc.stdout)}  # fmt: skip
    return {
        "playbook": playbook,
        "rc": proc.returncode,
        "wall": wall,
        "cpu_user": after.ru_utime - before.ru_utime,
        "cpu_sys": after.ru_stime - before.ru_stime,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "hosts": len(recap),
        # one "PLAY [...]" header per serial batch (site.yml rolls out in batches; verify.yml is one play)
        "batches": len(re.findall(r"^PLAY \[", proc.stdout, re.M)),
        "changed": sum(r["changed"] for r in recap.values()),
        "failed": sum(r["failed"] + r["unreachable"] for r in recap.values()),
        "log": str(logfile),
    }


def machine() -> Dict[str, str]:
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    ansible = subprocess.run([PLAYBOOK, "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ansible": ansible.splitlines()[0] if ansible else "?",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def slope(xs: List[float], ys: List[float]) -> float:
    """Least-squares seconds per added host."""
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else float("nan")


def label(playbook: str, kind: str) -> str:
    return f"{playbook} ({kind})" if kind else playbook


def table(rows: List[Dict[str, Any]]) -> str:
    cols = ["Hosts", "Run", "Batches", "Wall s", "Controller CPU s", "CPU s per host", "Changed", "Failed", "rc"]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append(
            f"| {r['n']} | {label(r['playbook'], r['kind'])} | {r['batches']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
            f"{r['cpu'] / r['n']:.2f} | {r['changed']} | {r['failed']} | {r['rc']} |"
        )
    return "\n".join(out)


def growth_table(rows: List[Dict[str, Any]]) -> str:
    out = ["| Run | Wall s per added host | CPU s per added host |", "|---|---|---|"]
    for playbook, kind in RUNS:
        sel = [r for r in rows if r["playbook"] == playbook and r["kind"] == kind]
        xs = [float(r["n"]) for r in sel]
        out.append(
            f"| {label(playbook, kind)} | {slope(xs, [r['wall'] for r in sel]):.2f} | "
            f"{slope(xs, [r['cpu'] for r in sel]):.2f} |"
        )
    return "\n".join(out)


def chart(rows: List[Dict[str, Any]], path: Path, serial: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for playbook, kind in RUNS:
        sel = [r for r in rows if r["playbook"] == playbook and r["kind"] == kind]
        xs = [r["n"] for r in sel]
        ax1.plot(xs, [r["wall"] for r in sel], "o-", label=label(playbook, kind))
        ax2.plot(xs, [r["cpu"] for r in sel], "o-", label=label(playbook, kind))
    for ax, what in ((ax1, "wall time (s)"), (ax2, "controller CPU, user+sys (s)")):
        ax.set_xlabel("lab hosts")
        ax.set_ylabel(what)
        ax.set_xticks(sorted({r["n"] for r in rows}))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"keepwarm playbooks on the lab fleet (SSH pipelining on, site.yml serial {serial})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="1 host, one site.yml run")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="host counts (default 1,2,4,8)")
    p.add_argument("--inventory", help="smoke only: run on this inventory instead of managing the lab")
    p.add_argument("--limit", help="smoke only: host to run on (default: the inventory's first host)")
    p.add_argument("--out-dir", help="default bench/results (smoke: build/bench/smoke)")
    p.add_argument("--wait", type=float, default=1200.0, help="seconds to wait for a busy lab (default 1200)")
    p.add_argument(
        "--serial",
        help="site.yml batch size (-e keepwarm_serial=VALUE, e.g. 100%%); default: as shipped (25%%). "
        "Results go to fleet-serial-VALUE.{md,png,json}",
    )
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    cmd = "/work/venv/bin/python bench/fleet/run.py" + (" " + shlex.join(given) if given else "")
    out_dir = Path(args.out_dir or (ROOT / "build" / "bench" / "smoke" if args.smoke else ROOT / "bench" / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = ROOT / "build" / "bench" / "fleet"
    work.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 and not args.inventory:
        raise SystemExit("fleet: the lab needs root (systemd-nspawn); run as root")
    mach = machine()
    ensure_zipapp()
    rows: List[Dict[str, Any]] = []
    start = time.monotonic()

    if args.smoke:
        owned = False
        inventory = args.inventory
        limit = args.limit
        if inventory is None:
            status = lab_status()
            if lab_busy(status):
                running = [h["name"] for h in status.get("hosts", []) if h.get("running")]
                if not running:
                    raise SystemExit("fleet: the lab has leftovers and no running host; not touching it")
                inventory, limit = status["inventory"], limit or running[0]
                log(f"smoke: reusing the running lab, host {limit} only (left running)")
            else:
                owned = True
                inventory = json.loads(lab("up", "1", "--json").stdout)["inventory"]
        if limit is None:
            limit = _first_host(inventory)
        try:
            r = run_playbook("site.yml", inventory, limit, work / "smoke-site.log", args.serial)
        finally:
            if owned:
                lab("down")
        rows.append(dict(r, n=1, kind="smoke"))
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        wait_for_free_lab(limit=args.wait)
        start = time.monotonic()  # the wait for a free lab is not part of the bench's wall time
        ours: List[str] = []  # hosts of the fleet this bench started; only that fleet is ever brought down
        try:
            for n in sizes:
                if ours:
                    if not _still_ours(ours):
                        raise RuntimeError("the lab changed under the bench (someone else's hosts): stopping")
                    lab("down")  # our own fleet from the previous size: fresh hosts for a real first run
                    ours = []
                if lab_busy(lab_status()):
                    raise RuntimeError("another fleet came up before this bench's: stopping without touching it")
                log(f"lab up {n}")
                info = json.loads(lab("up", str(n), "--json").stdout)
                names = [i["instance"] for i in info["instances"]]
                if len(names) != n:
                    raise RuntimeError(f"lab up {n} gave {len(names)} hosts (someone else's fleet?): {names}")
                ours = names
                for playbook, kind in RUNS:
                    log(f"{n} host(s): {label(playbook, kind)}")
                    logfile = work / f"{n}-{playbook}-{kind or 'run'}.log"
                    r = run_playbook(playbook, info["inventory"], None, logfile, args.serial)
                    rows.append(dict(r, n=n, kind=kind))
                    log(f"  wall {r['wall']:.1f} s, cpu {r['cpu']:.1f} s, changed {r['changed']}, rc {r['rc']}")
                    if not _still_ours(ours, exact=True):
                        raise RuntimeError("the lab changed under the bench (hosts gone or someone else's): stopping")
        finally:
            if ours and _still_ours(ours):
                lab("down", check=False)  # the fleet this bench started (the lab was free when it began)
    wall = time.monotonic() - start

    bad = [r for r in rows if r["rc"] != 0 or r["failed"] or r["hosts"] != r["n"]]
    lines = [
        "# fleet: keepwarm playbooks on 1-8 lab hosts"
        + (f" (site.yml with -e keepwarm_serial={args.serial})" if args.serial else ""),
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {mach['nproc']} CPUs, {mach['memory']} RAM, kernel {mach['kernel']}, Python {mach['python']}, "
        f"{mach['ansible']}, load average at start {mach['loadavg']}  ",
        f"Lab hosts: systemd-nspawn Debian 12 on the same machine (`python -m lab up N`, fresh hosts per size). "
        f"Total bench wall time {wall:.0f} s.",
        "",
        table(rows),
        "",
    ]
    if not args.smoke:
        lines += ["Growth (least-squares slope over the sizes):", "", growth_table(rows), ""]
    lines += [
        "Wall s: ansible-playbook start to exit. Controller CPU s: user+sys of ansible-playbook and everything it "
        "waited for (getrusage RUSAGE_CHILDREN). Changed/Failed: summed over the PLAY RECAP (the second site.yml "
        "run must show changed 0). The hosts share the controller's 2 cores, so remote work (systemd restarts, the "
        "emulator's cold load) also competes with the controller: on separate machines the wall times would be "
        "lower and flatter.",
        "",
    ]
    if bad:
        lines += ["Problems: " + "; ".join(f"{r['n']} host(s) {label(r['playbook'], r['kind'])}: rc {r['rc']}, "
                                          f"failed {r['failed']}, log {r['log']}" for r in bad), ""]  # fmt: skip
    name = "fleet" if not args.serial else "fleet-serial-" + re.sub(r"[^0-9A-Za-z]", "", args.serial)
    if bad and not args.smoke:
        name += "-failed"  # never overwrite the last good results with a broken run
    (out_dir / f"{name}.md").write_text("\n".join(lines))
    (out_dir / f"{name}.json").write_text(json.dumps({"machine": mach, "rows": rows}, indent=1))
    if not args.smoke:
        chart(rows, out_dir / f"{name}.png", args.serial or "25%")
    sys.stdout.write("\n".join(lines))
    sys.stdout.write(f"wrote {out_dir / (name + '.md')}\n")
    return 1 if bad else 0


def _still_ours(ours: List[str], exact: bool = False) -> bool:
    running = {h["name"] for h in lab_status().get("hosts", []) if h.get("running")}
    return running == set(ours) if exact else running <= set(ours)


def _first_host(inventory: str) -> str:
    for raw in Path(inventory).read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            return line.split()[0]
    raise SystemExit(f"fleet: no host in {inventory}")


if __name__ == "__main__":
    sys.exit(main())
