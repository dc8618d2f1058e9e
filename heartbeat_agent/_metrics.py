"""Prometheus textfile-collector output and the small state file that keeps counters across `once` runs.

Both files are written atomically (temporary file in the same directory, fsync, rename) so node_exporter never
reads half a file. The state lives in `$STATE_DIRECTORY` (set by systemd for `StateDirectory=`) or next to the
metrics file.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

from ._state import REASONS, State, state_path, write_atomic

__all__ = ["REASONS", "State", "render_metrics", "state_path", "write_atomic"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render_metrics(observations: List[Dict[str, Any]], state: State, up: bool, exit_code: int) -> str:
    """Render the textfile. `observations`: per configured model {model, loaded, pinned, expires_at_seconds, gpu}.

    Names follow Prometheus conventions (checked with `promtool check metrics` in tests/monitoring): fractions end
    in `_ratio`, points in time are `_timestamp_seconds` gauges (a dashboard or alert computes `X - time()`, which
    stays right between scrapes), counters end in `_total`."""
    families = [
        (
            "keepwarm_model_pinned",
            "gauge",
            "1 when /api/ps shows the model loaded with the configured keep_alive (forever for -1; a timed one with "
            "more than two intervals left); absent while the server is unreachable.",
            [],
        ),
        ("keepwarm_model_loaded", "gauge", "1 when /api/ps lists the model.", []),
        (
            "keepwarm_model_expiry_timestamp_seconds",
            "gauge",
            "Unix time at which the model's keep-alive expires (expires_at from /api/ps; about 292 years ahead when "
            "pinned forever); absent when the model is not loaded.",
            [],
        ),
        (
            "keepwarm_model_gpu_ratio",
            "gauge",
            "Share of the model in GPU memory, size_vram / size from /api/ps (1 all on GPU; 0 when not loaded or "
            "CPU only).",
            [],
        ),
        (
            "keepwarm_model_last_load_seconds",
            "gauge",
            "Duration of the agent's last load of the model (a cold start it could not prevent).",
            [],
        ),
        ("keepwarm_cold_loads_total", "counter", "Loads of a model that was not loaded, made by the agent.", []),
        (
            "keepwarm_repairs_total",
            "counter",
            "Repairs by reason: expiring (a client shortened the pin), unloaded, "
            "evicted (another model took the slot), reloaded (a client reloaded the runner).",
            [],
        ),
    ]
    rows: Dict[str, List[str]] = {name: [] for name, _, _, _ in families}
    for obs in observations:
        key = obs["model"]
        lab = f'model="{_label(key)}"'
        entry = state.model(key)
        if not up:
            # Not observed (server unreachable): leave the per-model gauges out instead of printing 0s; the
            # counters and keepwarm_up 0 still say what is known.
            rows["keepwarm_cold_loads_total"].append(f"keepwarm_cold_loads_total{{{lab}}} {entry['cold_loads']}")
            for reason in REASONS:
                rows["keepwarm_repairs_total"].append(
                    f'keepwarm_repairs_total{{{lab},reason="{reason}"}} {entry["repairs"][reason]}'
                )
            continue
        rows["keepwarm_model_pinned"].append(f"keepwarm_model_pinned{{{lab}}} {int(bool(obs['pinned']))}")
        rows["keepwarm_model_loaded"].append(f"keepwarm_model_loaded{{{lab}}} {int(bool(obs['loaded']))}")
        if obs.get("expires_at_seconds") is not None:
            rows["keepwarm_model_expiry_timestamp_seconds"].append(
                f"keepwarm_model_expiry_timestamp_seconds{{{lab}}} {_num(round(obs['expires_at_seconds'], 3))}"
            )
        rows["keepwarm_model_gpu_ratio"].append(f"keepwarm_model_gpu_ratio{{{lab}}} {_num(obs['gpu'])}")
        if entry.get("last_load_seconds") is not None:
            rows["keepwarm_model_last_load_seconds"].append(
                f"keepwarm_model_last_load_seconds{{{lab}}} {_num(entry['last_load_seconds'])}"
            )
        rows["keepwarm_cold_loads_total"].append(f"keepwarm_cold_loads_total{{{lab}}} {entry['cold_loads']}")
        for reason in REASONS:
            rows["keepwarm_repairs_total"].append(
                f'keepwarm_repairs_total{{{lab},reason="{reason}"}} {entry["repairs"][reason]}'
            )
    out: List[str] = []
    for name, kind, help_text, _ in families:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"] + rows[name]
    out += [
        "# HELP keepwarm_up 1 when the last beat reached the Ollama server.",
        "# TYPE keepwarm_up gauge",
        f"keepwarm_up {int(up)}",
        "# HELP keepwarm_beat_exit_code Exit code of the last beat (0 all pinned, 1 a model not pinned, "
        "3 unreachable).",
        "# TYPE keepwarm_beat_exit_code gauge",
        f"keepwarm_beat_exit_code {exit_code}",
    ]
    if state.last_success is not None:
        out += [
            "# HELP keepwarm_last_success_timestamp_seconds Unix time of the last beat that ended with every model "
            "pinned.",
            "# TYPE keepwarm_last_success_timestamp_seconds gauge",
            f"keepwarm_last_success_timestamp_seconds {_num(round(state.last_success, 3))}",
        ]
    return "\n".join(out) + "\n"
