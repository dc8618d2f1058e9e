"""Configuration: one JSON file (written by the `heartbeat` role), overridable by command-line flags.

    {"url": "http://127.0.0.1:11434", "keep_alive": -1, "request_timeout": 10, "load_timeout": 600,
     "interval": 20, "metrics_path": null, "models": [{"name": "llama3.2", "options": {"num_ctx": 8192}}]}

`interval` (seconds between `once` beats under a timer) must be shorter than the shortest keep_alive any client
sends: a client's keep_alive replaces the pin (server/sched.go `useLoadedRunner`, last writer wins), so a model a
client set to "30s" expires 30 s later, and only a beat before then re-pins it. The default 20 s covers the common
short values ("30s", "1m", "5m"); for shorter ones use `watch` (polls every `poll` seconds).

Every error names the field it is about (`models[0].options.num_ctx: ...`) and maps to exit code 2.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import _configfile, _rules
from ._exceptions import ConfigError
from ._rules import duration as rule_duration
from ._rules import names as rule_names
from ._rules import urls as rule_urls

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "KeepAlive",
    "ModelSpec",
    "load_config",
    "normalize_name",
    "parse_keep_alive",
    "redact_url",
]

DEFAULT_CONFIG_PATH = "/etc/keepwarm/heartbeat.json"
DEFAULTS: Dict[str, Any] = {
    "url": "http://127.0.0.1:11434",
    "keep_alive": -1,
    "request_timeout": 10,
    "load_timeout": 600,
    "interval": 20,  # shorter than the common short client keep_alive "30s" (see the module docstring)
    "poll": 5,
    "metrics_path": None,
    "models": [],
    # The connection options of the keepwarm.ollama modules (doc fragment keepwarm.ollama.connection): extra
    # headers (an authenticating proxy in front of Ollama), certificate validation and a CA file for https.
    "headers": {},
    "validate_certs": True,
    "ca_path": None,
    # http(s)_proxy/no_proxy from the agent's environment, by Go's rule (rules urls.proxy_for): never for loopback.
    "use_proxy": True,
}
KNOWN_KEYS = frozenset(DEFAULTS)
MODEL_KEYS = ("name", "options")

Number = Union[int, float]


class KeepAlive(NamedTuple):
    """A validated keep_alive: `wire` is what goes in the request JSON; `seconds` is None for forever."""

    wire: Union[int, float, str]
    seconds: Optional[float]

    @property
    def forever(self) -> bool:
        return self.seconds is None


class ModelSpec(NamedTuple):
    name: str  # as configured, sent to the server as is (responses echo the request string)
    key: str  # normalised for matching against /api/ps names
    options: Dict[str, Any]


class Config(NamedTuple):
    url: str
    keep_alive: KeepAlive
    request_timeout: float
    load_timeout: float
    interval: float
    poll: float
    metrics_path: Optional[str]
    models: List[ModelSpec]
    headers: Dict[str, str] = {}
    validate_certs: bool = True
    ca_path: Optional[str] = None
    use_proxy: bool = True


def parse_keep_alive(value: object, field: str = "keep_alive") -> KeepAlive:
    """Validate keep_alive with the rulebook's `duration.request_keep_alive` (api/types.go `Duration.UnmarshalJSON`),
    stricter than the server: 0 is refused too (it unloads the model after every request).

    Numbers are seconds and any negative number means forever. Strings must be Go durations with a unit (`"-1m"`,
    `"24h"`); integer strings go out as numbers (`"-1"` would be a 400 upstream); `"1d"` and `"forever"` are unknown
    units; values Ollama turns into something else (9,223,372,037 s or more overflow int64) are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(field, f"must be a number of seconds or a Go duration string like '-1m', got {value!r}")
    try:
        wire = rule_duration.request_keep_alive(value)
        ns = rule_duration.parse_json_keep_alive(wire)
    except rule_duration.DurationError as exc:
        raise ConfigError(field, str(exc)) from None
    if ns == rule_duration.FOREVER_NS:
        return KeepAlive(-1, None)
    if not ns or ns <= 0:
        raise ConfigError(field, "0 unloads the model after every request; use -1 to pin it forever")
    return KeepAlive(wire, ns / rule_duration.SECOND)


def normalize_name(name: str) -> str:
    """The /api/ps form of a model name, lower-cased (rulebook `names.display_shortest`: types/model/name.go
    `ParseName`, `DisplayShortest`; names compare case-insensitively, `Name.EqualFold`): `llama3` ->
    `llama3:latest`. A `@sha256:` digest is not part of it (`names.split_digest`)."""
    base, _digest = rule_names.split_digest(name)
    return rule_names.display_shortest(base).lower()


def _number(raw: Dict[str, Any], key: str, minimum: float = 0.0) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"must be a number of seconds, got {value!r}")
    if value <= minimum:
        raise ConfigError(key, f"must be greater than {minimum:g}, got {value!r}")
    return float(value)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def _connection(raw: Dict[str, Any]) -> Tuple[Dict[str, str], bool, Optional[str], bool]:
    """headers (names RFC 9110 tokens, values without CR/LF; values never shown), validate_certs, ca_path, use_proxy."""
    headers = raw["headers"]
    if not isinstance(headers, dict):
        raise ConfigError("headers", f"must be an object of header names to values, got {type(headers).__name__}")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"headers.{name}", "is not a valid HTTP header name")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ConfigError(f"headers.{name}", "must be a string without line breaks (value not shown)")
    validate_certs = raw["validate_certs"]
    if not isinstance(validate_certs, bool):
        raise ConfigError("validate_certs", f"must be true or false, got {validate_certs!r}")
    ca_path = raw["ca_path"]
    if ca_path is not None:
        if not isinstance(ca_path, str) or not ca_path:
            raise ConfigError("ca_path", f"must be null or the path of a PEM file of CA certificates, got {ca_path!r}")
        if not os.path.isfile(ca_path) or not os.access(ca_path, os.R_OK):
            raise ConfigError("ca_path", f"{ca_path!r} is not a readable file")
    use_proxy = raw["use_proxy"]
    if not isinstance(use_proxy, bool):
        raise ConfigError("use_proxy", f"must be true or false, got {use_proxy!r}")
    return dict(headers), validate_certs, ca_path, use_proxy


def _model(item: object, index: int) -> ModelSpec:
    """A model entry, by the format the gateway shares (_configfile; options after the rulebook's _runner table)."""
    field, item = _configfile.model_entry(item, index, MODEL_KEYS, ConfigError)
    name = item["name"]
    options = item.get("options")
    # the rulebook's _runner (the option table) is loaded only when there are options to check (_rules loads lazily)
    options = _configfile.check_options(field, options, _rules.runner if options else None, ConfigError)
    try:
        key = normalize_name(name)
    except rule_names.ModelNameError as exc:  # e.g. a bad @sha256: digest (never dropped silently)
        raise ConfigError(f"{field}.name", str(exc)) from None
    return ModelSpec(name, key, options)


def redact_url(url: str) -> str:
    """`url` without its credentials (`http://user:pass@h` -> `http://***@h`): they are never logged or reported.
    The rule lives once, in the rulebook (`_urls.redact_url`), shared with the modules."""
    return rule_urls.redact_url(url)


def check_url(url: object) -> None:
    """An http(s) URL with a host, optional port and path (OLLAMA_HOST may carry a path), nothing else.

    The value in errors has its credentials masked: a `user:password@` in the URL is never printed.
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    if not isinstance(url, str):
        raise ConfigError("url", f"must be an http:// or https:// URL, got {shown}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError("url", f"{shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("url", f"must be an http:// or https:// URL with a host, got {shown!r}")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ConfigError("url", f"must not have a query or fragment (the agent appends /api/...): {shown!r}")
    if any(c.isspace() for c in url):
        raise ConfigError("url", f"must not contain whitespace: {shown!r}")


def build_config(raw: Dict[str, Any]) -> Config:
    """Validate a merged configuration mapping (file values, then flags) into a Config."""
    _configfile.check_keys(raw, sorted(KNOWN_KEYS), ConfigError)
    merged = dict(DEFAULTS)
    merged.update(raw)
    url = merged["url"]
    check_url(url)
    interval = _number(merged, "interval")
    poll = _number(merged, "poll")
    request_timeout = _number(merged, "request_timeout")
    load_timeout = _number(merged, "load_timeout")
    keep_alive = parse_keep_alive(merged["keep_alive"])
    if keep_alive.seconds is not None and keep_alive.seconds <= 2 * interval:
        # A timed pin counts as pinned while it outlives two intervals (_beat.is_pinned); shorter would re-pin always.
        raise ConfigError(
            "keep_alive",
            f"{keep_alive.wire!r} is not longer than two intervals ({2 * interval:g}s): the model would expire "
            "between beats; use -1 to pin it forever",
        )
    metrics_path = merged["metrics_path"]
    if metrics_path is not None and (not isinstance(metrics_path, str) or not metrics_path):
        raise ConfigError("metrics_path", f"must be null or a file path, got {metrics_path!r}")
    if merged["models"] == []:
        raise ConfigError("models", "at least one model is required (config file 'models' or --model)")
    models = _configfile.model_list(merged["models"], _model, ConfigError)
    headers, validate_certs, ca_path, use_proxy = _connection(merged)
    return Config(
        url=url.rstrip("/"),
        keep_alive=keep_alive,
        request_timeout=request_timeout,
        load_timeout=load_timeout,
        interval=interval,
        poll=poll,
        metrics_path=metrics_path,
        models=models,
        headers=headers,
        validate_certs=validate_certs,
        ca_path=ca_path,
        use_proxy=use_proxy,
    )


def read_config_file(path: str) -> Dict[str, Any]:
    """The file's JSON object (_configfile.read_config_file, shared with the gateway)."""
    return _configfile.read_config_file(path, ConfigError)


def _key_or_name(name: str) -> str:
    """normalize_name, or the name itself when it is invalid (build_config then reports it with its field)."""
    try:
        return normalize_name(name)
    except rule_names.ModelNameError:
        return name


def load_config(path: Optional[str], overrides: Dict[str, Any]) -> Config:
    """Read `path` (None: no file), apply flag `overrides`, validate.

    `--model` flags replace the file's model list; a flag naming a model the file lists keeps that model's options.
    """
    raw: Dict[str, Any] = read_config_file(path) if path is not None else {}
    overrides = dict(overrides)
    flag_models = overrides.pop("models", None)
    raw.update(overrides)
    if flag_models:
        by_key: Dict[str, Any] = {}
        if isinstance(raw.get("models"), list):
            for item in raw["models"]:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    by_key[_key_or_name(item["name"])] = item
        raw["models"] = [by_key.get(_key_or_name(n), n) for n in flag_models]
    return build_config(raw)
