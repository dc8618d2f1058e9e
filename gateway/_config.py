"""Gateway configuration: the heartbeat agent's JSON format, extended with policies.

    {"url": "http://127.0.0.1:11435",
     "models": [{"name": "llama3.2", "options": {"num_ctx": 8192},
                 "policy": {"keep_alive": "force", "unload": "refuse", "options": "rewrite", "evict": "refuse"}}],
     "gateway": {"listen": "0.0.0.0:11434", "max_loaded_models": 1, "token_file": null,
                 "unpinned": {"keep_alive_min": null, "keep_alive_max": null}}}

`url` is Ollama (the gateway's upstream), `models` are the pinned models with the runner options they are pinned
with, exactly as the agent reads them (a bare string is a model without options). The agent's other keys
(`keep_alive`, `interval`, `poll`, ...) are accepted and ignored, so one inventory renders both files. Every error
names the field it is about (`models[0].policy.unload: ...`).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from ._rules import configfile, duration, names, runner

__all__ = ["ConfigError", "GatewayConfig", "ModelPolicy", "POLICY_CHOICES", "RELOAD_OPTIONS", "build_config"]

# server/sched.go runnerRef.needsReload: the Runner options compared with reflect.DeepEqual (ollama-behaviour.md §6).
RELOAD_OPTIONS = tuple(runner.RUNNER_OPTIONS)
# The option types are the rulebook's (api/types.go Options): the same table the agent checks its config with.
BOOL_OPTIONS = frozenset(k for k, kind in runner.OPTION_TYPES.items() if kind == "boolean")

# The defaults protect the pin (issue 16); each can be relaxed per model.
POLICY_CHOICES: Dict[str, Tuple[str, ...]] = {
    "keep_alive": ("force", "strip", "pass"),  # force -1 / drop the client's value (nil keeps the runner's) / as sent
    "unload": ("refuse", "allow"),  # keep_alive 0 with an empty prompt/messages
    "options": ("rewrite", "pass"),  # runner options that would reload the pinned runner
    "evict": ("refuse", "queue", "allow"),  # a load that would push this pinned model out (cap reached)
}
POLICY_DEFAULTS = {key: choices[0] for key, choices in POLICY_CHOICES.items()}
# heartbeat_agent/_config.py DEFAULTS: accepted so that one file can serve both, and (except url) ignored here
AGENT_KEYS = frozenset(
    {"url", "keep_alive", "request_timeout", "load_timeout", "interval", "poll", "metrics_path", "headers",
     "validate_certs", "ca_path", "use_proxy"}
)  # fmt: skip
TOP_KEYS = AGENT_KEYS | {"models", "gateway"}
MODEL_KEYS = ("name", "options", "policy")
GATEWAY_DEFAULTS: Dict[str, Any] = {
    "listen": "127.0.0.1:11434",
    "upstream": None,  # defaults to the agent's "url"
    "max_loaded_models": None,  # the server's OLLAMA_MAX_LOADED_MODELS; None: eviction rule off
    "token_file": None,
    "max_body_bytes": 16 * 1024 * 1024,
    "max_header_bytes": 64 * 1024,
    "header_timeout": 10.0,
    "idle_timeout": 120.0,
    "retry_after": 30,
    "queue_timeout": 120.0,
    "unpinned": {},
}
UNPINNED_KEYS = ("keep_alive_min", "keep_alive_max")


class ConfigError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelPolicy(NamedTuple):
    name: str  # as configured
    key: Tuple[str, ...]  # _names.name_key: equal for every spelling Ollama treats as the same model
    options: Dict[str, Any]  # the pinned runner options (all of them, as the agent pins with)
    reload_options: Dict[str, Any]  # the subset sched.go needsReload compares
    keep_alive: str
    unload: str
    options_policy: str
    evict: str
    field: str  # "models[0]" for log lines and errors


class GatewayConfig(NamedTuple):
    listen_host: str
    listen_port: int
    upstream: str
    upstream_host: str
    upstream_port: int
    max_loaded_models: Optional[int]
    token: Optional[str]
    max_body_bytes: int
    max_header_bytes: int
    header_timeout: float
    idle_timeout: float
    retry_after: int
    queue_timeout: float
    keep_alive_min_ns: Optional[int]
    keep_alive_max_ns: Optional[int]
    models: List[ModelPolicy]

    def policy_for(self, model: str) -> Optional[ModelPolicy]:
        key = names.name_key(model)
        for policy in self.models:
            if policy.key == key:
                return policy
        return None

    @property
    def listen_is_loopback(self) -> bool:
        host = self.listen_host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def parse_hostport(value: object, field: str) -> Tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise ConfigError(field, f"must be HOST:PORT, got {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(field, f"must be HOST:PORT with a port 0-65535, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)  # noqa: S104 - ":11434" binds every interface, as OLLAMA_HOST does


def parse_upstream(value: object, field: str) -> Tuple[str, str, int]:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(field, f"must be an http:// URL with a host and no path, got {value!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigError(field, f"has an invalid port: {value!r}") from None
    return value.rstrip("/"), parts.hostname, port


def _policy(item: Dict[str, Any], field: str) -> Dict[str, str]:
    raw = item.get("policy") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{field}.policy", f"must be an object, got {raw!r}")
    out = dict(POLICY_DEFAULTS)
    for key, value in raw.items():
        if key not in POLICY_CHOICES:
            raise ConfigError(f"{field}.policy.{key}", f"unknown policy (allowed: {', '.join(POLICY_CHOICES)})")
        if value not in POLICY_CHOICES[key]:
            allowed = ", ".join(POLICY_CHOICES[key])
            raise ConfigError(f"{field}.policy.{key}", f"must be one of {allowed}, got {value!r}")
        out[key] = value
    return out


def _model(item: object, index: int) -> ModelPolicy:
    """A model entry as the agent reads it (heartbeat_agent/_configfile.py: name, options by the rulebook's table),
    plus its policy."""
    field, item = configfile.model_entry(item, index, MODEL_KEYS, ConfigError)
    name = item["name"]
    options = configfile.check_options(field, item.get("options"), runner, ConfigError)
    policy = _policy(item, field)
    reload_options = {k: options[k] for k in RELOAD_OPTIONS if k in options}
    return ModelPolicy(
        name=name,
        key=names.name_key(name),
        options=options,
        reload_options=reload_options,
        keep_alive=policy["keep_alive"],
        unload=policy["unload"],
        options_policy=policy["options"],
        evict=policy["evict"],
        field=field,
    )


def _positive(raw: Dict[str, Any], key: str, integer: bool = False) -> Any:
    value = raw[key]
    field = f"gateway.{key}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(field, f"must be a positive number, got {value!r}")
    if integer and value != int(value):
        raise ConfigError(field, f"must be an integer, got {value!r}")
    return int(value) if integer else float(value)


def _keep_alive_bound(value: object, field: str) -> Optional[int]:
    if value is None:
        return None
    try:
        ns = duration.parse_json_keep_alive(value)
    except duration.DurationError as exc:
        raise ConfigError(field, f"{value!r} is not a keep_alive Ollama accepts ({exc})") from None
    return ns


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ConfigError("gateway.token_file", f"cannot read {path}: {exc.strerror or exc}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError("gateway.token_file", f"{path} must hold one token without whitespace")
    return token


def build_config(raw: Dict[str, Any]) -> GatewayConfig:
    """Validate a merged configuration mapping (file, then flags) into a GatewayConfig."""
    configfile.check_keys(raw, sorted(TOP_KEYS), ConfigError)
    gw_raw = raw.get("gateway") or {}
    if not isinstance(gw_raw, dict):
        raise ConfigError("gateway", f"must be an object, got {gw_raw!r}")
    configfile.check_keys(gw_raw, sorted(GATEWAY_DEFAULTS), ConfigError, "gateway.")
    gw = dict(GATEWAY_DEFAULTS)
    gw.update(gw_raw)
    listen_host, listen_port = parse_hostport(gw["listen"], "gateway.listen")
    upstream_field = "gateway.upstream" if gw["upstream"] is not None else "url"
    upstream_value = gw["upstream"] if gw["upstream"] is not None else raw.get("url", "http://127.0.0.1:11434")
    upstream, up_host, up_port = parse_upstream(upstream_value, upstream_field)
    mlm = gw["max_loaded_models"]
    if mlm is not None and (isinstance(mlm, bool) or not isinstance(mlm, int) or mlm < 1):
        raise ConfigError("gateway.max_loaded_models", f"must be a positive integer or null, got {mlm!r}")
    token = read_token(gw["token_file"]) if gw["token_file"] is not None else None
    unpinned = gw["unpinned"] or {}
    if not isinstance(unpinned, dict):
        raise ConfigError("gateway.unpinned", f"must be an object, got {unpinned!r}")
    configfile.check_keys(unpinned, UNPINNED_KEYS, ConfigError, "gateway.unpinned.")
    ka_min = _keep_alive_bound(unpinned.get("keep_alive_min"), "gateway.unpinned.keep_alive_min")
    ka_max = _keep_alive_bound(unpinned.get("keep_alive_max"), "gateway.unpinned.keep_alive_max")
    if ka_min is not None and ka_max is not None and ka_min > ka_max:
        raise ConfigError("gateway.unpinned", "keep_alive_min is longer than keep_alive_max")
    if ka_min == 0:
        raise ConfigError("gateway.unpinned.keep_alive_min", "0 is no floor; remove it")
    models = configfile.model_list(raw.get("models", []), _model, ConfigError)
    return GatewayConfig(
        listen_host=listen_host,
        listen_port=listen_port,
        upstream=upstream,
        upstream_host=up_host,
        upstream_port=up_port,
        max_loaded_models=mlm,
        token=token,
        max_body_bytes=_positive(gw, "max_body_bytes", integer=True),
        max_header_bytes=_positive(gw, "max_header_bytes", integer=True),
        header_timeout=_positive(gw, "header_timeout"),
        idle_timeout=_positive(gw, "idle_timeout"),
        retry_after=_positive(gw, "retry_after", integer=True),
        queue_timeout=_positive(gw, "queue_timeout"),
        keep_alive_min_ns=ka_min,
        keep_alive_max_ns=ka_max,
        models=models,
    )


def read_config_file(path: str) -> Dict[str, Any]:
    """The file's JSON object, read as the agent reads its file (heartbeat_agent/_configfile.py, via _rules)."""
    data = configfile.read_config_file(path, ConfigError)
    _token_file_beside(data, path)
    return data


def _token_file_beside(data: Dict[str, Any], path: str) -> None:
    """A relative `gateway.token_file` in a config file names a file in that file's directory.

    So a config and its token can be handed over together wherever they land: systemd's LoadCredential= puts both
    in $CREDENTIALS_DIRECTORY (`"token_file": "gateway.token"` beside `gateway.json`), a container gets both in one
    mount. A `--token-file` flag stays relative to the working directory, as any path on a command line.
    """
    gw = data.get("gateway")
    if isinstance(gw, dict) and isinstance(gw.get("token_file"), str) and gw["token_file"]:
        if not os.path.isabs(gw["token_file"]):
            gw["token_file"] = os.path.join(os.path.dirname(os.path.abspath(path)), gw["token_file"])


def parse_model_flag(value: str) -> Dict[str, Any]:
    """`--model NAME[,key=value...]`: option keys (num_ctx=8192) and policy keys (unload=allow) after the name.

    Model names cannot hold a comma (types/model/name.go), so the comma separates. Values are JSON scalars
    (8192, true, 0.5) or plain strings.
    """
    name, *pairs = value.split(",")
    item: Dict[str, Any] = {"name": name}
    options: Dict[str, Any] = {}
    policy: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--model", f"{value!r}: expected NAME[,key=value...], got {pair!r}")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        (policy if key in POLICY_CHOICES else options)[key] = parsed
    if options:
        item["options"] = options
    if policy:
        item["policy"] = policy
    return item
