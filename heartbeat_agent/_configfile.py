"""The config file format keepwarm's heartbeat agent and keepwarm-gateway share: written once, here.

One JSON object; its `models` list holds model names or objects `{"name": ..., "options": {...}}` (the gateway adds
`policy`). This file holds what both read the same way: the file itself (`read_config_file`), a model entry's name
and options (`model_entry`, `check_options`; the option names and types are the rulebook's, `_runner.OPTION_TYPES`
after api/types.go `Options`), the list and its duplicate names (`model_list`, `check_unique`) and unknown keys
(`check_keys`). Each caller validates its own other keys.

Standard library only, no imports of either package: the agent imports it as `heartbeat_agent._configfile`; the
gateway loads this same file through `gateway/_rules.py` (by path from a checkout; its zipapp and wheel carry a
byte-identical copy in `gateway/_vendor/`, tools/build_gateway_zipapp.py, pyproject.toml `force-include`).
Errors are raised as `error(field, message)` with the caller's own error class, so every message names its field.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple

__all__ = ["MODEL_NAME", "check_keys", "check_options", "check_unique", "model_entry", "model_list", "read_config_file"]

ErrorClass = Callable[[str, str], Exception]

# What a config may name as a model: the characters types/model/name.go allows across its parts (the name itself
# is then parsed by the rulebook's `_names`).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*", re.ASCII)


def read_config_file(path: str, error: ErrorClass) -> Dict[str, Any]:
    """The JSON object in `path`; `error("config", ...)` when it cannot be read, is not JSON or not an object."""
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except OSError as exc:
        raise error("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise error("config", f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise error("config", f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def check_keys(mapping: Dict[str, Any], allowed: Sequence[str], error: ErrorClass, where: str = "") -> None:
    """Refuse a key of `mapping` not in `allowed` (shown in that order): `<where><key>: unknown key (allowed: ...)`."""
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise error(f"{where}{unknown[0]}", f"unknown key (allowed: {', '.join(allowed)})")


def _quoted(keys: Sequence[str]) -> str:
    quoted = [repr(k) for k in keys]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def model_entry(item: object, index: int, keys: Sequence[str], error: ErrorClass) -> Tuple[str, Dict[str, Any]]:
    """`models[index]` as (field, entry): a bare name becomes `{"name": name}`; the entry's keys must be among `keys`
    (name first) and its name a model name. The caller checks `options` (check_options) and its own keys."""
    field = f"models[{index}]"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise error(field, f"must be a model name or an object with {_quoted(keys)}, got {item!r}")
    check_keys(item, keys, error, f"{field}.")
    name = item.get("name")
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise error(f"{field}.name", f"must be a model name like 'llama3.2' or 'qwen2.5:7b', got {name!r}")
    return field, item


def check_options(field: str, options: object, runner: Any, error: ErrorClass) -> Dict[str, Any]:
    """The entry's `options` (None or absent: {}), each a known Ollama option of the right JSON type.

    `runner` is the rulebook's `_runner` (OPTION_TYPES, option_type_ok), as loaded by the caller's `_rules`; it is
    not used (may be None) when `options` is empty or not an object. An unknown name (a typo like `nmu_batch` that
    Ollama would ignore silently) gets a close match as a hint.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise error(f"{field}.options", f"must be an object of Ollama options, got {options!r}")
    for key, value in options.items():
        where = f"{field}.options.{key}"
        kind = runner.OPTION_TYPES.get(key) if isinstance(key, str) else None
        if kind is None:
            import difflib  # noqa: PLC0415 - only on this error path (keeps the steady path light)

            close = difflib.get_close_matches(str(key), runner.OPTION_TYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(runner.OPTION_TYPES))})"
            raise error(where, f"unknown Ollama option{hint}")
        if not runner.option_type_ok(key, value):
            raise error(where, f"must be {'an' if kind == 'integer' else 'a'} {kind}, got {value!r}")
    if "num_ctx" in options and options["num_ctx"] < 1:
        raise error(f"{field}.options.num_ctx", f"must be positive, got {options['num_ctx']!r}")
    return dict(options)


def model_list(models: object, parse: Callable[[object, int], Any], error: ErrorClass) -> List[Any]:
    """The `models` list, each entry through `parse(item, index)` (the caller's, built on model_entry), no two with
    the same `.key` (check_unique)."""
    if not isinstance(models, list):
        raise error("models", f"must be a list, got {models!r}")
    parsed = [parse(item, i) for i, item in enumerate(models)]
    check_unique(parsed, error)
    return parsed


def check_unique(models: Iterable[Any], error: ErrorClass) -> None:
    """No two entries with the same `.key` (the caller's normalised name): `models[i].name: 'x' duplicates ...`."""
    seen: Dict[Any, int] = {}
    for i, spec in enumerate(models):
        if spec.key in seen:
            raise error(f"models[{i}].name", f"{spec.name!r} duplicates models[{seen[spec.key]}]")
        seen[spec.key] = i
