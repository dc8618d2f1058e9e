"""Prometheus textfile-collector output and the small state file that keeps counters across `once` runs.

Both files are written atomically (temporary file in the same directory, fsync, rename) so node_exporter never
reads half a file. The state lives in `$STATE_DIRECTORY` (set by systemd for `StateDirectory=`) or next to the
metrics file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Dict, List, Optional

__all__ = ["REASONS", "State", "render_metrics", "state_path", "write_atomic"]

REASONS = ("expiring", "unloaded", "evicted", "reloaded")
STATE_FILE = "heartbeat-state.json"


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def state_path(metrics_path: Optional[str], environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    env = os.environ if environ is None else environ
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        return os.path.join(state_dir, STATE_FILE)
    if metrics_path:
        return os.path.splitext(metrics_path)[0] + ".state.json"
    return None


class State:
    """Counters per model (cold loads, repairs by reason), last load seconds, last seen context length."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.models: Dict[str, Dict[str, Any]] = {}
        self.last_success: Optional[float] = None
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
                self.models = {str(k): dict(v) for k, v in data.get("models", {}).items()}
                last = data.get("last_success")
                self.last_success = float(last) if last is not None else None
            except (OSError, ValueError, TypeError, AttributeError):
                # A damaged state file must not stop the beat: counters restart (Prometheus handles resets).
                self.models, self.last_success = {}, None

    def model(self, key: str) -> Dict[str, Any]:
        entry = self.models.setdefault(key, {})
        entry.setdefault("cold_loads", 0)
        repairs = entry.setdefault("repairs", {})
        for reason in REASONS:
            repairs.setdefault(reason, 0)
        return entry

    def save(self) -> None:
        if self.path:
            data = {"version": 1, "last_success": self.last_success, "models": self.models}
            write_atomic(self.path, json.dumps(data, sort_keys=True, indent=1) + "\n", mode=0o600)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render_metrics(observations: List[Dict[str, Any]], state: State, up: bool, exit_code: int) -> str:
    """Render the textfile. `observations`: per configured model {model, loaded, pinned, expiry_seconds, gpu}."""
    families = [
        ("keepwarm_model_pinned", "gauge", "1 when the model is loaded and pinned as configured (keep_alive -1).", []),
        ("keepwarm_model_loaded", "gauge", "1 when /api/ps lists the model.", []),
        (
            "keepwarm_model_expiry_seconds",
            "gauge",
            "Seconds until the model's keep-alive expires; +Inf when pinned forever, 0 when stopping or not loaded.",
            [],
        ),
        ("keepwarm_model_gpu_fraction", "gauge", "size_vram / size from /api/ps (0 when not loaded or CPU only).", []),
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
        rows["keepwarm_model_pinned"].append(f"keepwarm_model_pinned{{{lab}}} {int(bool(obs['pinned']))}")
        rows["keepwarm_model_loaded"].append(f"keepwarm_model_loaded{{{lab}}} {int(bool(obs['loaded']))}")
        rows["keepwarm_model_expiry_seconds"].append(
            f"keepwarm_model_expiry_seconds{{{lab}}} {_num(obs['expiry_seconds'])}"
        )
        rows["keepwarm_model_gpu_fraction"].append(f"keepwarm_model_gpu_fraction{{{lab}}} {_num(obs['gpu'])}")
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
