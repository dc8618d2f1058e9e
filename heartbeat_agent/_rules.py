"""keepwarm's rulebook, loaded from its one place: the collection's module_utils.

The rules the Ansible modules and the agent share (name resolution, expires_at classification, duration limits,
load and re-pin requests) are written once, as standard-library-only files in `collection/plugins/module_utils/`
that the modules import as `ansible_collections.keepwarm.ollama.plugins.module_utils._<name>`:

- `names`    (`_names.py`):    `split_digest`, `display_shortest`, `name_key`, `runner_key`, `find_runner`, ...
- `expires`  (`_expires.py`):  `classify`, `parse_expires_at`, `FOREVER`/`TIMED`/`STOPPING`, ...
- `duration` (`_duration.py`): `request_keep_alive`, `parse_json_keep_alive`, `validate_env_keep_alive`, ...
- `runner`   (`_runner.py`):   `load_request`, `repin_plan`, `model_facts`, `effective_num_ctx`, ...
- `urls`     (`_urls.py`):     `redact_url`, `url_secrets`, `proxy_for` (Go's proxy rule: loopback never proxied)

Each file's header lists its stable API. Where the agent finds them:

- in its zipapp: `tools/build_zipapp.py` copies them byte for byte into `heartbeat_agent/_vendored/`;
- from a checkout (editable install, tests): `collection/plugins/module_utils/` next to this package.

`SOURCE` says which one was used ("vendored" or "checkout").
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["CHECKOUT_DIR", "RULE_MODULES", "SOURCE", "duration", "expires", "names", "runner", "urls"]

RULE_MODULES = ("_names", "_expires", "_duration", "_runner", "_urls")
CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "collection" / "plugins" / "module_utils"
_PACKAGE = __name__.rpartition(".")[0]  # not __package__: Python 3.9 zipimport leaves it None
_VENDORED = f"{_PACKAGE}._vendored"


def _load(stem: str) -> tuple[ModuleType, str]:
    try:
        return importlib.import_module(f"{_VENDORED}.{stem}"), "vendored"
    except ModuleNotFoundError as exc:
        if exc.name not in (_VENDORED, f"{_VENDORED}.{stem}"):
            raise
    path = CHECKOUT_DIR / f"{stem}.py"
    qualname = f"{_VENDORED}_checkout.{stem}"
    if qualname in sys.modules:
        return sys.modules[qualname], "checkout"
    spec = importlib.util.spec_from_file_location(qualname, path)
    if spec is None or spec.loader is None or not path.is_file():
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
    return module, "checkout"


names, SOURCE = _load("_names")
expires, _ = _load("_expires")
duration, _ = _load("_duration")
runner, _ = _load("_runner")
urls, _ = _load("_urls")
