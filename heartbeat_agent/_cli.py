"""Command line: `ollama-heartbeat [options] once|watch|status`.

Exit codes: 0 every configured model pinned, 1 a model could not be pinned (or checked), 2 bad configuration,
3 server unreachable after bounded retries, 130 interrupted (SIGINT), 143 terminated (SIGTERM). Expected failures print
one `key=value` line, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence

import httpx

from . import __version__
from ._beat import BeatResult, Keeper, ModelResult, is_pinned
from ._client import OllamaClient
from ._config import DEFAULT_CONFIG_PATH, Config, load_config, normalize_name
from ._exceptions import ConfigError, HeartbeatError
from ._expiry import FOREVER, STOPPING, classify
from ._logfmt import Logger
from ._metrics import render_metrics
from ._notify import Notifier
from ._state import State, state_path, write_atomic

__all__ = ["main"]

# Overridable options: accepted before or after the command (`--url U once` and `once --url U`).
_OPTIONS = [
    (("--config",), {"metavar": "PATH", "help": f"JSON config file (default {DEFAULT_CONFIG_PATH} when it exists)"}),
    (("--url",), {"help": "Ollama base URL (default http://127.0.0.1:11434)"}),
    (
        ("--model",),
        {
            "dest": "models",
            "action": "append",
            "metavar": "NAME[:TAG]",
            "help": "model to keep warm; "
            "repeatable; replaces the config file's list (options kept for models it names)",
        },
    ),
    (("--keep-alive",), {"dest": "keep_alive", "help": "-1 (forever, default) or a Go duration like 24h"}),
    (("--request-timeout",), {"dest": "request_timeout", "type": float, "metavar": "SECONDS"}),
    (
        ("--load-timeout",),
        {
            "dest": "load_timeout",
            "type": float,
            "metavar": "SECONDS",
            "help": "time allowed for a cold load (default 600: big models load for minutes)",
        },
    ),
    (("--metrics-path",), {"dest": "metrics_path", "metavar": "PATH", "help": "Prometheus textfile to write"}),
    (
        ("--interval",),
        {
            "type": float,
            "metavar": "SECONDS",
            "help": "beat interval of the timer (default 20; keep it shorter than the shortest keep_alive your "
            "clients send); retries stop well before it",
        },
    ),
    (("--poll",), {"type": float, "metavar": "SECONDS", "help": "watch: seconds between /api/ps polls (default 5)"}),
]


EXIT_CODES = """exit codes:
  0    every configured model is pinned (watch: stopped cleanly)
  1    a model could not be pinned or checked (a failed load, a model not pulled, over capacity, backing off)
  2    bad configuration or command line (the message names the field and the value)
  3    the Ollama server was unreachable after bounded retries
  130  interrupted (SIGINT)
  143  terminated (SIGTERM, e.g. systemd's TimeoutStartSec=)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with one key=value line plus usage on stderr
        self.print_usage(sys.stderr)
        Logger()(action="config", result="error", exit=2, error="usage", message=message)
        raise SystemExit(2)


_SUB = "sub_"  # options given after the command land in their own names (argparse would overwrite the others)


def _common(prefix: str) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for flags, spec in _OPTIONS:
        kwargs = dict(spec)
        kwargs["dest"] = prefix + kwargs.get("dest", flags[0].lstrip("-").replace("-", "_"))
        common.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common("")
    parser = _Parser(
        prog="ollama-heartbeat",
        description="Keep Ollama models loaded and pinned (keep_alive -1), repairing only what is wrong.",
        parents=[common],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ollama-heartbeat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="once|watch|status", parser_class=_Parser)
    sub.required = True
    common = _common(_SUB)
    extra = {"epilog": EXIT_CODES, "formatter_class": argparse.RawDescriptionHelpFormatter}
    sub.add_parser("once", parents=[common], help="one beat (for a systemd oneshot started by a timer)", **extra)
    sub.add_parser(
        "watch",
        parents=[common],
        help="long-running: poll /api/ps every few seconds and repair at once (systemd Type=notify with watchdog)",
        **extra,
    )
    sub.add_parser("status", parents=[common], help="table of the configured models and what the server says", **extra)
    return parser


def _keep_alive_flag(text: str) -> Any:
    """`--keep-alive -1` is the number -1; other numbers are seconds; anything else is a Go duration string."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _merged(ns: argparse.Namespace) -> Dict[str, Any]:
    """Options before and after the command: a later value wins, --model lists add up (in command-line order)."""
    values: Dict[str, Any] = {}
    for key, value in vars(ns).items():
        if key.startswith(_SUB) or key == "command":
            continue
        values[key] = value
    for sub_key, value in vars(ns).items():
        if not sub_key.startswith(_SUB):
            continue
        key = sub_key[len(_SUB) :]
        values[key] = values.get(key, []) + value if key == "models" else value
    return values


def _config(ns: argparse.Namespace) -> Config:
    values = _merged(ns)
    overrides: Dict[str, Any] = {}
    for key in ("url", "request_timeout", "load_timeout", "metrics_path", "interval", "poll", "models"):
        if key in values:
            overrides[key] = values[key]
    if "keep_alive" in values:
        overrides["keep_alive"] = _keep_alive_flag(values["keep_alive"])
    path = values.get("config")
    if path is None and os.path.exists(DEFAULT_CONFIG_PATH):
        path = DEFAULT_CONFIG_PATH
    return load_config(path, overrides)


def _client(config: Config, retry_budget: Optional[float] = None, transport: Any = None) -> OllamaClient:
    # Retries stop at half the interval (at most 30 s), so a failing beat ends well before the next one starts.
    budget = min(30.0, config.interval / 2) if retry_budget is None else retry_budget
    return OllamaClient(
        config.url,
        request_timeout=config.request_timeout,
        load_timeout=config.load_timeout,
        retry_budget=budget,
        transport=transport,
        headers=config.headers,
        validate_certs=config.validate_certs,
        ca_path=config.ca_path,
        use_proxy=config.use_proxy,
    )


def _write_metrics(config: Config, state: State, result: BeatResult, log: Logger, state_max_age: float = 0.0) -> None:
    try:
        state.save(state_max_age)
    except OSError as exc:
        log(action="state", result="error", error="write", message=f"{exc.filename or ''}: {exc.strerror or exc}")
    try:
        if config.metrics_path:
            text = render_metrics([r.observation() for r in result.models], state, result.up, result.exit_code)
            write_atomic(config.metrics_path, text)
    except OSError as exc:
        log(action="metrics", result="error", error="write", message=f"{exc.filename or ''}: {exc.strerror or exc}")


def _open_state(config: Config, log: Logger) -> State:
    state = State(state_path(config.metrics_path))
    if state.warning:
        log(action="state", result="warning", message=state.warning)
    return state


STATE_SAVE_SECONDS = 300.0  # watch: an unchanged state (only last_success moved) is written at most this often


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler (BaseException: no `except Exception` swallows it)."""


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated()


def _interrupted(config: Config, state: State, result: BeatResult, log: Logger, name: str) -> int:
    code = 143 if name == "SIGTERM" else 130
    # Nothing was observed to the end: the per-model gauges are left out (up=False), the exit code says why.
    result.exit_code, result.up = code, False
    log(
        action="beat",
        result="error",
        exit=code,
        error="terminated",
        signal=name,
        message="stopped by a signal before the beat ended; loads in flight are abandoned (Ollama aborts them)",
    )
    _write_metrics(config, state, result, log)
    return code


def _once(config: Config, log: Logger, transport: Any = None) -> int:
    state = _open_state(config, log)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    keeper: Optional[Keeper] = None
    try:
        with _client(config, transport=transport) as client:
            keeper = Keeper(client, config, state, log)
            result = keeper.beat(wait=True)
    except (_Terminated, KeyboardInterrupt) as exc:
        result = BeatResult([ModelResult(m) for m in config.models])
        return _interrupted(config, state, result, log, "SIGTERM" if isinstance(exc, _Terminated) else "SIGINT")
    finally:
        signal.signal(signal.SIGTERM, previous)
    _write_metrics(config, state, result, log)
    return result.exit_code


def _watch(config: Config, log: Logger, transport: Any = None, notifier: Optional[Notifier] = None) -> int:
    """Poll /api/ps every `poll` seconds (one cheap GET while all is well) and repair at once.

    Loads and re-pins run in worker threads, so polling (and the systemd watchdog ping) goes on while a model loads
    for minutes. SIGTERM or SIGINT end the loop cleanly with exit 0: between polls at once, during a request by
    abandoning it; loads in flight are abandoned (Ollama aborts a load whose client disconnects). Under systemd
    (`Type=notify`) it sends READY=1 after the first poll, WATCHDOG=1 after every poll and STOPPING=1 at the end.
    """
    notify = notifier if notifier is not None else Notifier()
    stop = threading.Event()
    busy = [False]
    received: List[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()
        if busy[0]:
            raise _Terminated()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    state = _open_state(config, log)
    log(
        action="watch",
        result="started",
        poll=config.poll,
        models=",".join(m.key for m in config.models),
        watchdog=notify.watchdog_seconds,
    )
    last_exit: Optional[int] = None
    ready = False
    result: Optional[BeatResult] = None
    inflight = 0
    keeper: Optional[Keeper] = None
    try:
        # Retries must end before the next poll is due, but give a restarting server a few seconds.
        with _client(config, retry_budget=max(config.poll, 2.0), transport=transport) as client:
            keeper = Keeper(client, config, state, log)
            while not stop.is_set():
                try:
                    busy[0] = True
                    result = keeper.beat(wait=False, quiet=last_exit == 0)
                finally:
                    busy[0] = False
                inflight = keeper.running
                last_exit = result.exit_code
                _write_metrics(config, state, result, log, state_max_age=STATE_SAVE_SECONDS)
                status = (
                    f"{sum(1 for r in result.models if r.pinned)}/{len(result.models)} pinned"
                    + (f", {inflight} loading" if inflight else "")
                    + ("" if result.up else ", server unreachable")
                )
                if not ready:
                    notify.send(ready=1, status=status)
                    ready = True
                else:
                    notify.send(watchdog=1, status=status)
                stop.wait(config.poll)
    except _Terminated:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    inflight = keeper.running if keeper is not None else 0
    try:
        state.save()
    except OSError as exc:
        log(action="state", result="error", error="write", message=f"{exc.filename or ''}: {exc.strerror or exc}")
    notify.send(stopping=1, status="stopping")
    notify.close()
    log(
        action="watch",
        result="stopped",
        signal=received[0] if received else None,
        abandoned=inflight or None,
    )
    return 0


def _human(seconds: Optional[float]) -> str:
    s = int(seconds or 0)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s"
    return f"{s}s"


def _processor(entry: Dict[str, Any]) -> str:
    # cmd/cmd.go ListRunningHandler: the PROCESSOR column.
    size, vram = entry.get("size"), entry.get("size_vram")
    if not isinstance(size, int) or not isinstance(vram, int):
        return "?"
    if vram == 0:
        return "100% CPU"
    if vram == size:
        return "100% GPU"
    if vram > size or size == 0:
        return "Unknown"
    cpu = round((size - vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def _status(config: Config, log: Logger, transport: Any = None) -> int:
    with _client(config, transport=transport) as client:
        try:
            models = client.ps()
            keeper = Keeper(client, config, State(None), log)
            # the runner serving each configured model, by name or by blob (another tag of it)
            served = {spec.key: keeper.find(models, spec) for spec in config.models}
        except HeartbeatError as exc:
            log(action="status", result="error", exit=exc.exit_code, error=exc.kind, message=str(exc))
            return exc.exit_code
    rows = [("MODEL", "CONFIGURED", "LOADED", "STATE", "UNTIL", "PROCESSOR", "CONTEXT", "PINNED")]
    all_pinned = True
    listed = [(spec.key, "yes", served[spec.key]) for spec in config.models]
    used = {id(e) for e in served.values() if e is not None}
    listed += [(normalize_name(m["name"]), "no", m) for m in models if id(m) not in used]
    for key, configured, entry in listed:
        if entry is None:
            rows.append((key, configured, "no", "-", "-", "-", "-", "no"))
            all_pinned = all_pinned and configured == "no"
            continue
        try:
            exp = classify(entry.get("expires_at"))
            state, until = exp.state, "Forever" if exp.state == FOREVER else _human(exp.seconds_left)
            if exp.state == STOPPING:
                until = "Stopping..."
        except ValueError:
            exp, state, until = None, "invalid", str(entry.get("expires_at"))
        pinned = is_pinned(exp, config)
        if configured == "yes":
            all_pinned = all_pinned and pinned
        ctx = entry.get("context_length")
        rows.append(
            (
                key,
                configured,
                "yes" if normalize_name(entry["name"]) == key else f"as {entry['name']}",
                state,
                until,
                _processor(entry),
                str(ctx) if ctx else "-",
                "yes" if pinned else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = sys.stdout
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
    out.flush()
    return 0 if all_pinned else 1


def main(argv: Optional[Sequence[str]] = None, transport: Optional[httpx.BaseTransport] = None) -> int:
    """Run the command line; return the exit code. `transport` is for tests (httpx.MockTransport)."""
    log = Logger()
    try:
        ns = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        config = _config(ns)
    except ConfigError as exc:
        log(action="config", result="error", exit=2, error="config", field=exc.field, message=exc.message)
        return 2
    try:
        if ns.command == "once":
            return _once(config, log, transport)
        if ns.command == "watch":
            return _watch(config, log, transport)
        return _status(config, log, transport)
    except KeyboardInterrupt:  # SIGINT outside a beat (status): one line, no traceback
        log(action=ns.command, result="error", exit=130, error="terminated", signal="SIGINT")
        return 130
    except HeartbeatError as exc:  # pragma: no cover - every path above reports its own errors
        log(action=ns.command, result="error", exit=exc.exit_code, error=exc.kind, message=str(exc))
        return exc.exit_code
