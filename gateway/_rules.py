"""Ollama's rules the gateway shares with the collection: loaded from one place, never re-implemented.

The keep_alive/duration parser (api/types.go ``Duration.UnmarshalJSON``, Go ``time.ParseDuration``) and the model
name rules (types/model/name.go ``ParseName``/``EqualFold``) live in the collection's stdlib-only module_utils:
``collection/plugins/module_utils/_duration.py`` and ``_names.py``. A wheel or the zipapp carries copies made at build
time in ``gateway/_vendor/`` (tools/build_gateway_zipapp.py, pyproject.toml ``force-include``); a checkout loads the
originals by path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["duration", "names", "RULE_MODULES"]

RULE_MODULES = ("_duration", "_names")
_CHECKOUT_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "collection", "plugins", "module_utils"
)


def _load(name: str) -> ModuleType:
    try:
        return importlib.import_module("gateway._vendor." + name)
    except ImportError:
        pass
    path = os.path.join(_CHECKOUT_DIR, name + ".py")
    if not os.path.isfile(path):
        raise ImportError(f"keepwarm-gateway: {name}.py found neither in gateway/_vendor nor at {path}")
    mod_name = "gateway._rules_" + name.lstrip("_")
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


duration = _load("_duration")
names = _load("_names")
