"""Turn one setup's raw record (requests sent, emulator events) into the warm_hits figures.

Rules (documented in bench/README.md):
- warm: the response's `load_duration` (routes.go: time spent getting a runner from the scheduler) is below
  WARM_THRESHOLD emulated seconds; a cold load of the smallest model used takes ~2.5 s emulated, so anything
  above the threshold waited for a load. Cross-checked with /emulator/events: a request is also "event-cold" when a
  load/reload of its model overlaps its time window; disagreements are counted (`check`), and should be 0.
- attribution: a load/reload event belongs to the workload when its start (event time minus load_duration) falls
  inside a workload request for the same model (sent .. answered, +/- TOLERANCE); otherwise to the heartbeat
  (setups without a heartbeat must attribute nothing to it: that is the check of the rule).
- pinned-model gap: the pinned model is "not loaded" from an unload/eviction event (and from t=0) until the next
  load/reload event of it completes (a load in progress counts as not loaded).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

# One rule each, shared with the agent: Go RFC 3339 timestamps and Ollama's model-name matching.
# (run.py puts the repository root on sys.path before importing this module.)
from heartbeat_agent._config import normalize_name
from heartbeat_agent._expiry import parse_expires_at

WARM_THRESHOLD = 1.0  # emulated seconds
TOLERANCE = 0.5  # emulated seconds (clock mapping between the bench and the emulator: a few ms real)


def analyse(raw: Dict[str, Any], pinned: str, duration: float, protectable: List[bool]) -> Dict[str, Any]:
    t0 = raw["t0_emulated_ns"]
    reqs = raw["requests"]
    events = []
    for ev in raw["events"]:
        t = (parse_expires_at(ev["time"]) - t0) / 1e9
        e = dict(ev, t=t, model=normalize_name(ev["model"]))
        if ev["event"] in ("load", "reload"):
            e["start"] = t - float(ev.get("load_duration") or 0.0)
        events.append(e)
    loads = [e for e in events if e["event"] in ("load", "reload")]

    # attribution of loads
    for e in loads:
        e["by"] = "heartbeat"
        for r in reqs:
            if (
                normalize_name(r["model"]) == e["model"]
                and r["send"] - TOLERANCE <= e["start"] <= r["recv"] + TOLERANCE
            ):
                e["by"] = "workload"
                break

    # warm / cold per request
    checks = 0
    served = []
    for r, prot in zip(reqs, protectable):
        r["protectable"] = prot
        if r.get("status") != 200:
            continue
        r["cold"] = r["load_duration"] >= WARM_THRESHOLD
        event_cold = any(
            e["model"] == normalize_name(r["model"])
            and e["start"] < r["recv"] + TOLERANCE
            and e["t"] > r["send"] - TOLERANCE
            for e in loads
        )
        if event_cold != r["cold"]:
            checks += 1
        served.append(r)

    pinned_reqs = [r for r in served if normalize_name(r["model"]) == pinned]
    prot_reqs = [r for r in served if r["protectable"]]
    cold = [r for r in served if r["cold"]]

    # pinned model timeline
    intervals: List[Tuple[float, float]] = []  # loaded intervals
    loaded_since = None
    for e in sorted(events, key=lambda e: e["t"]):
        if e["model"] != pinned:
            continue
        if e["event"] in ("load", "reload"):
            if loaded_since is None:
                loaded_since = max(e["t"], 0.0)
        elif e["event"] in ("unload", "eviction"):
            if loaded_since is not None:
                intervals.append((loaded_since, min(e["t"], duration)))
                loaded_since = None
    if loaded_since is not None:
        intervals.append((loaded_since, duration))
    gaps = []
    cursor = 0.0
    for a, b in intervals:
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < duration:
        gaps.append((cursor, duration))
    longest = max((b - a for a, b in gaps), default=0.0)
    loaded_time = sum(b - a for a, b in intervals)

    hb_loads = [e for e in loads if e["by"] == "heartbeat"]
    return {
        "setup": raw["setup"],
        "requests": len(reqs),
        "served": len(served),
        "errors": len(reqs) - len(served),
        "warm": len(served) - len(cold),
        "cold": len(cold),
        "warm_pct": 100.0 * (len(served) - len(cold)) / max(len(served), 1),
        "pinned_requests": len(pinned_reqs),
        "pinned_warm": sum(1 for r in pinned_reqs if not r["cold"]),
        "protectable": len(prot_reqs),
        "protectable_warm": sum(1 for r in prot_reqs if not r["cold"]),
        "cold_seconds": sum(r["load_duration"] for r in cold),
        "pinned_cold_seconds": sum(r["load_duration"] for r in cold if normalize_name(r["model"]) == pinned),
        "heartbeat_loads": sum(1 for e in hb_loads if e["event"] == "load" and e["model"] == pinned),
        "heartbeat_reloads": sum(1 for e in hb_loads if e["event"] == "reload"),
        "heartbeat_other_loads": sum(1 for e in hb_loads if e["model"] != pinned),
        "workload_loads": sum(1 for e in loads if e["by"] == "workload"),
        "evictions_of_other": sum(1 for e in events if e["event"] == "eviction" and e["model"] != pinned),
        "longest_gap": longest,
        "loaded_pct": 100.0 * loaded_time / duration,
        "check_mismatches": checks,
        "intervals": intervals,
        "cold_times": [(r["send"], r["client"], r["protectable"]) for r in cold],
        "heartbeat_reload_times": [e["t"] for e in hb_loads if e["event"] == "reload"],
        "cold_by_client": _count(r["client"] for r in cold),
        "cold_protectable_by_client_before": _cold_protectable_causes(served),
    }


def _count(items) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for it in items:
        out[it] = out.get(it, 0) + 1
    return out


def _cold_protectable_causes(served: List[Dict[str, Any]]) -> Dict[str, int]:
    """For protectable requests served cold: which client kind sent the request just before (what let it go)."""
    out: Dict[str, int] = {}
    prev = None
    for r in served:
        if r["protectable"] and r["cold"] and prev is not None:
            out[prev["client"]] = out.get(prev["client"], 0) + 1
        prev = r
    return out
