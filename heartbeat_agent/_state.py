"""The agent's memory between beats: counters, the over-capacity guard, load backoff, busy-runner re-pins.

`watch` keeps it in memory and saves it after every beat; `once` reads and writes it around each beat. It lives in
`$STATE_DIRECTORY` (systemd `StateDirectory=`), else next to the metrics file, else in `$XDG_STATE_HOME` (default
`~/.local/state`)/keepwarm-heartbeat; when none of these is writable the agent says so once: without it `once` has no
memory between runs (counters restart, the over-capacity guard and the load backoff forget, so an over-capacity
model is loaded again every beat).

The file is JSON with a version; a file that is not valid JSON, has another version or the wrong shape is ignored
with a warning and replaced on the next save (counters restart; Prometheus handles counter resets).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Dict, List, Optional

__all__ = ["REASONS", "STATE_FILE", "STATE_VERSION", "State", "state_path", "write_atomic"]

REASONS = ("expiring", "unloaded", "evicted", "reloaded")
STATE_FILE = "heartbeat-state.json"
STATE_VERSION = 2
_COMPATIBLE = (1, 2)  # version 1 (counters only) has the same shape minus the newer optional keys


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
    base = env.get("XDG_STATE_HOME") or (os.path.join(env["HOME"], ".local", "state") if env.get("HOME") else "")
    if base:
        return os.path.join(base, "keepwarm-heartbeat", STATE_FILE)
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape_error(data: object) -> Optional[str]:
    """Why `data` is not a state this version can use (None when it is)."""
    if not isinstance(data, dict):
        return f"holds a JSON {type(data).__name__}, not an object"
    if data.get("version") not in _COMPATIBLE:
        return f"has version {data.get('version')!r}, this agent reads {', '.join(map(str, _COMPATIBLE))}"
    last = data.get("last_success")
    if last is not None and not _is_number(last):
        return f"last_success is {last!r}"
    loaded = data.get("loaded", [])
    if not isinstance(loaded, list) or not all(isinstance(n, str) for n in loaded):
        return "loaded is not a list of names"
    keys = data.get("runner_keys", {})
    if not isinstance(keys, dict) or not all(
        isinstance(v, list) and len(v) == 2 and _is_number(v[0]) and (v[1] is None or isinstance(v[1], str))
        for v in keys.values()
    ):
        return "runner_keys is not an object of [time, key] pairs"
    models = data.get("models")
    if not isinstance(models, dict):
        return "models is not an object"
    for key, entry in models.items():
        if not isinstance(entry, dict):
            return f"models[{key!r}] is not an object"
        if not _is_count(entry.get("cold_loads", 0)):
            return f"models[{key!r}].cold_loads is {entry.get('cold_loads')!r}"
        repairs = entry.get("repairs", {})
        if not isinstance(repairs, dict) or not all(_is_count(v) for v in repairs.values()):
            return f"models[{key!r}].repairs is not an object of counts"
        for field in ("last_load_seconds", "context_length"):
            if entry.get(field) is not None and not _is_number(entry[field]):
                return f"models[{key!r}].{field} is {entry[field]!r}"
        for field in ("over_capacity", "backoff", "busy"):
            if entry.get(field) is not None and not isinstance(entry[field], dict):
                return f"models[{key!r}].{field} is {entry[field]!r}"
    return None


class State:
    """Per model: cold loads, repairs by reason, last load seconds, last context length, guard/backoff/busy marks.

    `warning` is set when an existing file could not be used (the caller logs it once).
    """

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.models: Dict[str, Dict[str, Any]] = {}
        self.last_success: Optional[float] = None
        self.loaded: List[str] = []  # /api/ps names at the end of the previous beat
        self.runner_keys: Dict[str, List[Any]] = {}  # model name -> [unix time, runner key from /api/show]
        self.warning: Optional[str] = None
        self._saved: Optional[str] = None  # what the file holds (without last_success), and when it was written
        self._saved_at = 0.0
        if not path:
            self.warning = "no state directory (STATE_DIRECTORY, metrics_path or HOME): no memory between runs"
            return
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.warning = f"state file {path} unreadable ({exc}); starting afresh"
            return
        why = _shape_error(data)
        if why is not None:
            self.warning = f"state file {path} {why}; starting afresh"
            return
        self.models = {str(k): dict(v) for k, v in data["models"].items()}
        self.last_success = float(data["last_success"]) if data.get("last_success") is not None else None
        self.loaded = list(data.get("loaded", []))
        self.runner_keys = {str(k): list(v) for k, v in data.get("runner_keys", {}).items()}

    def model(self, key: str) -> Dict[str, Any]:
        entry = self.models.setdefault(key, {})
        entry.setdefault("cold_loads", 0)
        repairs = entry.setdefault("repairs", {})
        for reason in REASONS:
            repairs.setdefault(reason, 0)
        return entry

    def save(self, max_age: float = 0.0) -> bool:
        """Write the file (atomically, fsync'ed). With `max_age` (watch), skip the write when nothing but
        `last_success` changed since a write less than `max_age` seconds ago: an idle loop then costs no disk I/O
        per poll. Returns True when it wrote."""
        if not self.path:
            return False
        data = {
            "version": STATE_VERSION,
            "loaded": self.loaded,
            "runner_keys": self.runner_keys,
            "models": self.models,
        }
        content = json.dumps(data, sort_keys=True)
        now = time.monotonic()
        if max_age and content == self._saved and now - self._saved_at < max_age:
            return False
        data["last_success"] = self.last_success
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        write_atomic(self.path, json.dumps(data, sort_keys=True, indent=1) + "\n", mode=0o600)
        self._saved, self._saved_at = content, now
        return True
