"""Command line: `keepwarm-gateway [--config FILE] [--listen HOST:PORT] [--upstream URL] [--max-loaded-models N]
[--model NAME[,key=value...]]...`.

Prints one logfmt line per policy decision (and per refusal, upstream error, client disconnect) on stdout.
Exit codes: 0 stopped by SIGTERM/SIGINT, 2 bad configuration, 1 cannot listen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import sys
import time
from typing import Any, Dict, List, Optional, TextIO

from . import __version__
from ._config import ConfigError, GatewayConfig, build_config, parse_model_flag, read_config_file
from ._proxy import Gateway

__all__ = ["Logger", "main"]

_BARE = re.compile(r"[A-Za-z0-9_.:/@+,=\[\]-]+", re.ASCII)


def _value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6f}" if math.isfinite(value) else str(value)
    else:
        text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Logger:
    """One `key=value` line per decision (logfmt, like the agent), with an RFC 3339 UTC timestamp."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream
        self._second = -1
        self._prefix = ""

    def __call__(self, **fields: Any) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        now = time.time()
        second = int(now)
        if second != self._second:  # the date and time are formatted once a second, the microseconds per line
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        ts = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        parts = [f"ts={ts}"] + [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
        stream.write(" ".join(parts) + "\n")
        stream.flush()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="keepwarm-gateway",
        description="Reverse proxy in front of Ollama that enforces keep-alive policies for pinned models.",
    )
    p.add_argument("--config", help="JSON config: the heartbeat agent's format plus 'policy' per model and 'gateway'")
    p.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:11434)")
    p.add_argument("--upstream", help="Ollama's URL (default: the config's 'url', else http://127.0.0.1:11434)")
    p.add_argument(
        "--max-loaded-models", type=int, help="the server's OLLAMA_MAX_LOADED_MODELS (enables the evict rule)"
    )
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME[,key=value...]",
        help="pinned model, repeatable; options (num_ctx=8192) and policies (keep_alive=strip, unload=allow, "
        "options=pass, evict=queue) after commas; replaces the config file's list (its entries kept for names it has)",
    )
    p.add_argument("--token-file", help="file holding a bearer token every client must send")
    p.add_argument("--keep-alive-min", help="floor for unpinned models' keep_alive (e.g. 1m)")
    p.add_argument("--keep-alive-max", help="ceiling for unpinned models' keep_alive (e.g. 1h)")
    p.add_argument("--check", action="store_true", help="validate the configuration, print it, and exit")
    p.add_argument("--version", action="version", version=f"keepwarm-gateway {__version__}")
    return p


def load(args: argparse.Namespace) -> GatewayConfig:
    raw: Dict[str, Any] = read_config_file(args.config) if args.config else {}
    gw = dict(raw.get("gateway") or {}) if isinstance(raw.get("gateway") or {}, dict) else raw.get("gateway")
    if isinstance(gw, dict):
        for key, value in (
            ("listen", args.listen),
            ("upstream", args.upstream),
            ("max_loaded_models", args.max_loaded_models),
            ("token_file", args.token_file),
        ):
            if value is not None:
                gw[key] = value
        if args.keep_alive_min is not None or args.keep_alive_max is not None:
            unpinned = dict(gw.get("unpinned") or {})
            if args.keep_alive_min is not None:
                unpinned["keep_alive_min"] = _duration_flag(args.keep_alive_min)
            if args.keep_alive_max is not None:
                unpinned["keep_alive_max"] = _duration_flag(args.keep_alive_max)
            gw["unpinned"] = unpinned
        raw["gateway"] = gw
    if args.models:
        by_name: Dict[str, Any] = {}
        if isinstance(raw.get("models"), list):
            for item in raw["models"]:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    by_name[item["name"]] = item
        models: List[Any] = []
        for flag in args.models:
            item = parse_model_flag(flag)
            if len(item) == 1 and item["name"] in by_name:
                item = by_name[item["name"]]
            models.append(item)
        raw["models"] = models
    return build_config(raw)


def _duration_flag(text: str) -> Any:
    try:
        return int(text)  # seconds, like a JSON number
    except ValueError:
        return text


def describe(cfg: GatewayConfig) -> Dict[str, Any]:
    return {
        "listen": f"{cfg.listen_host}:{cfg.listen_port}",
        "upstream": cfg.upstream,
        "max_loaded_models": cfg.max_loaded_models,
        "auth": cfg.token is not None,
        "models": [
            {
                "name": m.name,
                "options": m.options,
                "policy": {
                    "keep_alive": m.keep_alive,
                    "unload": m.unload,
                    "options": m.options_policy,
                    "evict": m.evict,
                },
            }
            for m in cfg.models
        ],
    }


async def serve(cfg: GatewayConfig, log: Logger) -> int:
    gateway = Gateway(cfg, log)
    try:
        host, port = await gateway.start()
    except OSError as exc:
        log(event="start", result="error", listen=f"{cfg.listen_host}:{cfg.listen_port}", error=exc.strerror or exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(
        event="start",
        result="ok",
        version=__version__,
        listen=f"{host}:{port}",
        upstream=cfg.upstream,
        pinned=",".join(m.name for m in cfg.models) or "-",
        max_loaded_models=cfg.max_loaded_models if cfg.max_loaded_models is not None else "unset",
        evict_rule="on" if cfg.max_loaded_models is not None else "off (no --max-loaded-models)",
        auth="bearer" if cfg.token else "off",
    )
    if cfg.max_loaded_models is not None and len(cfg.models) > cfg.max_loaded_models:
        log(event="warning", message="more pinned models than OLLAMA_MAX_LOADED_MODELS: they evict each other")
    await stop.wait()
    log(event="stop", result="ok")
    await gateway.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    log = Logger()
    try:
        cfg = load(args)
    except ConfigError as exc:
        log(event="config", result="error", field=exc.field, error=str(exc))
        return 2
    if args.check:
        print(json.dumps(describe(cfg), indent=2))
        return 0
    return asyncio.run(serve(cfg, log))
