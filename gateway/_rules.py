"""Ollama's rules the gateway shares with the collection: loaded from one place, never re-implemented.

keepwarm's rulebook (issue 12) lives in the collection's stdlib-only module_utils: the keep_alive/duration parser
(``_duration.py``: api/types.go ``Duration.UnmarshalJSON``, Go ``time.ParseDuration``), model names and runner
matching (``_names.py``: types/model/name.go ``ParseName``/``EqualFold``, sched.go ``schedulerModelKey``) and the
runner options ``needsReload`` compares and the option types (``_runner.py`` ``RUNNER_OPTIONS``, ``OPTION_TYPES``).
The config file format the gateway shares with the heartbeat agent (``configfile``: the file, model entries and
their options) is the agent's ``heartbeat_agent/_configfile.py`` (SHARED_MODULES). A wheel or the zipapp carries
copies made at build time in ``gateway/_vendor/`` (tools/build_gateway_zipapp.py, pyproject.toml
``force-include``); a checkout loads the originals by path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["RULE_MODULES", "SHARED_MODULES", "configfile", "duration", "names", "runner"]

RULE_MODULES = ("_duration", "_names", "_runner")
SHARED_MODULES = ("_configfile",)  # from heartbeat_agent/
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHECKOUT_DIR = os.path.join(_REPO, "collection", "plugins", "module_utils")
_AGENT_DIR = os.path.join(_REPO, "heartbeat_agent")


def _load(name: str, checkout_dir: str = _CHECKOUT_DIR) -> ModuleType:
    try:
        return importlib.import_module("gateway._vendor." + name)
    except ModuleNotFoundError as exc:
        if exc.name != "gateway._vendor." + name:
            raise
    path = os.path.join(checkout_dir, name + ".py")
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
runner = _load("_runner")
configfile = _load("_configfile", _AGENT_DIR)
