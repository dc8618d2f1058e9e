"""keepwarm's rulebook, loaded from its one place: the collection's module_utils.

The rules the Ansible modules and the agent share (name resolution, expires_at classification, duration limits,
load and re-pin requests) are written once, as standard-library-only files in `collection/plugins/module_utils/`
that the modules import as `ansible_collections.keepwarm.ollama.plugins.module_utils._<name>`:

- `names`    (`_names.py`):    `split_digest`, `display_shortest`, `name_key`, `runner_key`, `find_runner`, ...
- `expires`  (`_expires.py`):  `classify`, `parse_expires_at`, `FOREVER`/`TIMED`/`STOPPING`, ...
- `duration` (`_duration.py`): `request_keep_alive`, `parse_json_keep_alive`, `validate_env_keep_alive`, ...
- `runner`   (`_runner.py`):   `load_request`, `repin_plan`, `OPTION_TYPES`, `effective_num_ctx`, ...
- `urls`     (`_urls.py`):     `redact_url`, `url_secrets`, `proxy_for` (Go's proxy rule: loopback never proxied)

Each file's header lists its stable API. Where the agent finds them:

- in its zipapp: `tools/build_zipapp.py` copies them byte for byte into `heartbeat_agent/_vendored/`;
- from a checkout (editable install, tests): `collection/plugins/module_utils/` next to this package.

`SOURCE` says which one is used ("vendored" or "checkout"). Each module is loaded on first use (`_rules.runner`,
or `from ._rules import runner`, which uses it at once), not when this file is imported: a `once` beat of a model
that is already pinned never needs `runner`, and the vendored route costs no importlib.util or pathlib.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Dict

__all__ = ["CHECKOUT_DIR", "RULE_MODULES", "SOURCE", "duration", "expires", "names", "runner", "urls"]

RULE_MODULES = ("_names", "_expires", "_duration", "_runner", "_urls")
CHECKOUT_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "collection", "plugins", "module_utils"
)
_PACKAGE = __name__.rpartition(".")[0]  # not __package__: Python 3.9 zipimport leaves it None
_VENDORED = f"{_PACKAGE}._vendored"
_ATTRIBUTES: Dict[str, str] = {stem.lstrip("_"): stem for stem in RULE_MODULES}
# Bound on first access by __getattr__ below.
names: ModuleType
expires: ModuleType
duration: ModuleType
runner: ModuleType
urls: ModuleType


def _source() -> str:
    try:
        importlib.import_module(_VENDORED)
    except ModuleNotFoundError as exc:
        if exc.name != _VENDORED:
            raise
        return "checkout"
    return "vendored"


SOURCE = _source()


def _load_checkout(stem: str) -> ModuleType:
    import importlib.util  # noqa: PLC0415 - only a checkout loads by path

    path = os.path.join(CHECKOUT_DIR, f"{stem}.py")
    qualname = f"{_VENDORED}_checkout.{stem}"
    if qualname in sys.modules:
        return sys.modules[qualname]
    spec = importlib.util.spec_from_file_location(qualname, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise ImportError(
            f"keepwarm rulebook module {stem} not found: neither {_VENDORED} (zipapp built by tools/build_zipapp.py) "
            f"nor {path} (a checkout)"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualname]
        raise
    return module


def __getattr__(name: str) -> ModuleType:
    """PEP 562: `names`, `expires`, `duration`, `runner`, `urls` are loaded on first access, then kept."""
    stem = _ATTRIBUTES.get(name)
    if stem is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if SOURCE == "vendored":
        module = importlib.import_module(f"{_VENDORED}.{stem}")
    else:
        module = _load_checkout(stem)
    globals()[name] = module
    return module


def __dir__() -> list:
    return sorted(set(globals()) | set(_ATTRIBUTES))
