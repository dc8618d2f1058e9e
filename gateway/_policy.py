"""Policy decisions on a request body: what the gateway forwards, rewrites or refuses, and the rule that decided.

Bodies are read the way Ollama reads them (gin ``ShouldBindJSON`` over Go ``encoding/json``, ollama-behaviour.md
§0): the first JSON value counts and anything after it is ignored (``json.Decoder.Decode``); top-level keys match
case-insensitively with the last occurrence winning (so ``"Keep_Alive"`` is ``keep_alive``); keys inside
``options`` are exact (api/types.go ``Options.FromMap`` looks up json tags in a map). A rewrite keeps every other
byte of meaning: objects keep all their key/value pairs in order, numbers keep their text.

A body the gateway cannot read, or one Ollama would reject (a bad keep_alive, a wrong option type, a missing model)
is forwarded unchanged, so the client gets Ollama's own error; a rewrite never turns a request Ollama refuses into
one it accepts.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ._config import BOOL_OPTIONS, RELOAD_OPTIONS, GatewayConfig, ModelPolicy
from ._rules import duration, names

__all__ = ["Decision", "POLICY_ROUTES", "decide", "error_body"]

# route -> (API flavour, handler): routes.go GenerateRoutes; /v1 through middleware/openai.go.
POLICY_ROUTES: Dict[str, Tuple[str, str]] = {
    "/api/generate": ("ollama", "generate"),
    "/api/chat": ("ollama", "chat"),
    "/api/embed": ("ollama", "embed"),
    "/api/embeddings": ("ollama", "embeddings"),
    "/v1/chat/completions": ("openai", "chat"),
    "/v1/completions": ("openai", "generate"),
    "/v1/embeddings": ("openai", "embed"),
}
FOREVER = duration.FOREVER_NS
_WS = " \t\r\n"  # the only whitespace Go's encoding/json skips


class Pairs(list):
    """A JSON object as its ordered (key, value) pairs, duplicates included."""


class Num(str):
    """A JSON number kept as its source text."""

    def value(self) -> float:
        return float(self)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Go rejects NaN/Infinity


_DECODER = json.JSONDecoder(object_pairs_hook=Pairs, parse_float=Num, parse_int=Num, parse_constant=_reject_constant)


def parse_body(raw: bytes) -> Optional[Pairs]:
    """The object Ollama would bind, or None when it is not a JSON object (Ollama answers that itself)."""
    text = raw.decode("utf-8", "replace")  # Go's decoder replaces invalid UTF-8 with U+FFFD
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, _end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, Pairs) else None


_STR = json.encoder.encode_basestring_ascii  # what json.dumps does with a str (ensure_ascii)
_CONSTANTS = {True: "true", False: "false", None: "null"}


def dump(value: Any) -> str:
    kind = type(value)
    if kind is Pairs:
        return "{" + ",".join(_STR(k) + ":" + dump(v) for k, v in value) + "}"
    if kind is str:
        return _STR(value)
    if kind is Num:
        return str.__str__(value)
    if kind is list:
        return "[" + ",".join(dump(v) for v in value) + "]"
    if kind is bool or value is None:
        return _CONSTANTS[value]
    if kind is int:
        return int.__repr__(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(_STR(k) + ":" + dump(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, Num):
        return str.__str__(value)
    return json.dumps(value)


def _plain(value: Any) -> Any:
    """Python value of a parsed JSON value (numbers as int/float) for checks."""
    if isinstance(value, Num):
        text = str.__str__(value)
        if all(c.isdigit() or c == "-" for c in text):
            return int(text)
        return float(text)
    if isinstance(value, Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_FOLD_SPECIAL = {"\u212a": "k", "\u017f": "s"}  # Kelvin sign and long s fold to ASCII in Go's EqualFold


@functools.lru_cache(maxsize=4096)
def fold(key: str) -> str:
    """Go encoding/json's case-insensitive field match (simple Unicode folding)."""
    if key.isascii():
        return key.lower()
    return "".join(_FOLD_SPECIAL.get(c, c.lower() if len(c.lower()) == 1 else c) for c in key)


def _field(obj: Pairs, name: str) -> Tuple[bool, Any]:
    """(present, value) of a top-level field as Go binds it: last case-insensitive match wins."""
    found, value = False, None
    for key, val in obj:
        if key == name or fold(key) == name:
            found, value = True, val
    return found, value


def _without(obj: Pairs, name: str) -> Pairs:
    return Pairs((k, v) for k, v in obj if not (k == name or fold(k) == name))


def _option(opts: Pairs, name: str) -> Tuple[bool, Any]:
    found, value = False, None
    for key, val in opts:
        if key == name:
            found, value = True, val
    return found, value


class Decision(NamedTuple):
    """`action`: forward (`body` None = unchanged) | refuse (`status`, `body`) | check_evict (forward after the
    /api/ps check). `rules`: what decided, for the log line and the metrics."""

    action: str
    model: Optional[str]
    policy: Optional[ModelPolicy]
    rules: List[str]
    body: Optional[bytes] = None
    status: int = 200
    details: str = ""


def error_body(flavour: str, message: str, status: int) -> bytes:
    """Ollama's error shape (docs/api/errors.mdx), or the OpenAI one on /v1 (middleware/openai.go)."""
    if flavour == "openai":
        kind = "invalid_request_error" if status < 500 else "api_error"
        err = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return json.dumps(err, separators=(",", ":")).encode()
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def _keep_alive_wire(ns: int) -> Any:
    if ns >= FOREVER:
        return -1
    seconds = ns / duration.SECOND
    return int(seconds) if seconds == int(seconds) else seconds


def _is_empty_prompt(obj: Pairs, handler: str) -> bool:
    if handler == "chat":
        _present, messages = _field(obj, "messages")
        return messages is None or (isinstance(messages, list) and len(messages) == 0)
    _present, prompt = _field(obj, "prompt")
    return prompt is None or prompt == ""


def _option_ok(key: str, value: Any) -> bool:
    """Options.FromMap's type rules for the reload options: ints take JSON numbers, use_mmap a bool."""
    if value is None:
        return True
    if key in BOOL_OPTIONS:
        return isinstance(value, bool)
    return isinstance(value, Num)


def _same_option(key: str, client: Any, pinned: Any) -> bool:
    if client is None:
        return pinned is None
    if pinned is None:
        return False
    if key in BOOL_OPTIONS:
        return client is pinned
    return int(client.value()) == pinned  # float values for integer options are truncated (FromMap)


def decide(
    cfg: GatewayConfig, route: str, raw: bytes, aliases: Optional[Dict[Tuple[str, ...], ModelPolicy]] = None
) -> Decision:
    """The decision for one request body. `aliases`: other names of a pinned model's blob (from /api/tags digests,
    sched.go ``schedulerModelKey``: tags that share a blob share the runner), keyed by ``_names.name_key``."""
    flavour, handler = POLICY_ROUTES[route]
    obj = parse_body(raw)
    if obj is None:
        return Decision("forward", None, None, ["pass.unreadable_body"])
    _present, model = _field(obj, "model")
    if type(model) is not str or not model:  # a JSON number is a Num (str subclass)
        return Decision("forward", None, None, ["pass.no_model"])
    policy = cfg.policy_for(model)
    if policy is None and aliases:
        policy = aliases.get(names.name_key(model))
    ka_present, ka_raw = _field(obj, "keep_alive")
    ka_ns: Optional[int] = None
    if flavour == "ollama" and ka_present and ka_raw is not None:
        try:
            ka_ns = duration.parse_json_keep_alive(_plain(ka_raw))
        except duration.DurationError:
            return Decision("forward", model, policy, ["pass.invalid_keep_alive"])  # Ollama answers the 400
    if policy is None:
        return _unpinned(cfg, (flavour, handler), obj, model, ka_ns)
    rules: List[str] = []
    changed = False
    details = []
    if flavour == "ollama":
        if handler in ("generate", "chat") and ka_ns == 0 and _is_empty_prompt(obj, handler):
            if policy.unload == "refuse":
                msg = (
                    f"keepwarm-gateway: unload of pinned model {model!r} refused by policy unload=refuse "
                    f"({policy.field}.policy.unload)"
                )
                return Decision("refuse", model, policy, ["unload.refuse"], error_body(flavour, msg, 403), 403)
            return Decision("forward", model, policy, ["unload.allow"])
        # runner options first: a request Ollama would refuse for an option type is forwarded untouched
        if policy.options_policy == "rewrite":
            result = _rewrite_options(obj, policy)
            if result is None:
                return Decision("forward", model, policy, ["pass.invalid_options"])
            obj, option_rules, option_details = result
            if option_rules:
                rules.extend(option_rules)
                details.extend(option_details)
                changed = True
        if policy.keep_alive == "force" and ka_ns != FOREVER:
            obj = _without(obj, "keep_alive")
            obj.append(("keep_alive", -1))
            rules.append("keep_alive.force" if ka_ns is not None else "keep_alive.add")
            details.append(f"keep_alive {_show(ka_raw) if ka_ns is not None else 'absent'} -> -1")
            changed = True
        elif policy.keep_alive == "strip" and ka_present and ka_ns != FOREVER:
            obj = _without(obj, "keep_alive")
            rules.append("keep_alive.strip")
            details.append(f"keep_alive {_show(ka_raw)} removed")
            changed = True
    if not rules:
        rules.append("pass.pinned")
    body = dump(obj).encode() if changed else None
    # a pinned model may load even at the cap: more pinned models than the cap is a configuration the role refuses
    return Decision("forward", model, policy, rules, body, details="; ".join(details))


def _show(value: Any) -> str:
    return dump(value) if value is not None else "null"


def _rewrite_options(obj: Pairs, policy: ModelPolicy) -> Optional[Tuple[Pairs, List[str], List[str]]]:
    rules: List[str] = []
    details: List[str] = []
    opts_present, opts = _field(obj, "options")
    if opts_present and opts is not None and not isinstance(opts, Pairs):
        return None  # Go: cannot unmarshal ... into map[string]interface{} -> 400 from Ollama
    opts = opts if isinstance(opts, Pairs) else Pairs()
    new_opts = Pairs()
    differ = []
    client_values = {}
    for key in RELOAD_OPTIONS:
        _found, value = _option(opts, key)
        if not _option_ok(key, value):
            return None  # Options.FromMap: option "num_ctx" must be of type integer -> 500 from Ollama
        client_values[key] = value
    for key in RELOAD_OPTIONS:
        client = client_values[key]
        pinned = policy.reload_options.get(key)
        if key == "num_gpu" and client is not None and client.value() < 0:
            continue  # sched.go needsReload: num_gpu < 0 never reloads
        if not _same_option(key, client, pinned):
            differ.append(key)
    for key, value in opts:
        if key in differ:
            continue
        new_opts.append((key, value))
    for key in differ:
        pinned = policy.reload_options.get(key)
        if pinned is not None:
            new_opts.append((key, pinned))
        details.append(f"options.{key} {_show(client_values[key])} -> {_show(pinned)}")
    if differ:
        rules.append("options.rewrite")
    shift_present, shift = _field(obj, "shift")
    if shift_present and shift is not None:
        # sched.go needsReload: a shift setting that differs reloads (v0.30.0+); the pin uses the model's default
        obj = _without(obj, "shift")
        rules.append("options.shift_strip")
        details.append(f"shift {_show(shift)} removed")
    if differ:
        obj = _without(obj, "options")
        obj.append(("options", new_opts))
    return obj, rules, details


def _unpinned(cfg: GatewayConfig, route: Tuple[str, str], obj: Pairs, model: str, ka_ns: Optional[int]) -> Decision:
    flavour, handler = route
    rules: List[str] = []
    body = None
    details = ""
    if flavour == "ollama" and ka_ns is not None:
        is_unload = handler in ("generate", "chat") and ka_ns == 0 and _is_empty_prompt(obj, handler)
        new_ns = ka_ns
        if not is_unload:
            if cfg.keep_alive_min_ns is not None and ka_ns < cfg.keep_alive_min_ns:
                new_ns, rule = cfg.keep_alive_min_ns, "keep_alive.floor"
            if cfg.keep_alive_max_ns is not None and ka_ns > cfg.keep_alive_max_ns:
                new_ns, rule = cfg.keep_alive_max_ns, "keep_alive.ceiling"
        if new_ns != ka_ns:
            _present, raw = _field(obj, "keep_alive")
            wire = _keep_alive_wire(new_ns)
            obj = _without(obj, "keep_alive")
            obj.append(("keep_alive", wire))
            body = dump(obj).encode()
            rules.append(rule)
            details = f"keep_alive {_show(raw)} -> {dump(wire)}"
    if not rules:
        rules.append("pass.unpinned")
    action = "check_evict" if cfg.max_loaded_models is not None else "forward"
    return Decision(action, model, None, rules, body, details=details)
