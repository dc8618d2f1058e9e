"""heartbeat_agent/_rules.py loads each rulebook module on first use: starting the agent (and a `once` beat of a
model that is already pinned) does not load `_runner`; a model with options, or a re-pin, does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import json, sys
from heartbeat_agent import _rules
import heartbeat_agent.__main__
from heartbeat_agent._config import build_config
loaded = lambda: sorted(k for k in ("names", "expires", "duration", "runner", "urls") if k in vars(_rules))
out = {"source": _rules.SOURCE, "start": loaded()}
build_config({"models": ["llama3.2"]})
out["no_options"] = loaded()
build_config({"models": [{"name": "llama3.2", "options": {"num_ctx": 8192}}]})
out["options"] = loaded()
out["runner_file"] = _rules.runner.__file__
print(json.dumps(out))
"""


def test_runner_is_loaded_only_when_options_need_it():
    proc = subprocess.run([sys.executable, "-I", "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["source"] == "checkout"
    assert "runner" not in out["start"] and "runner" not in out["no_options"]
    assert out["options"] == ["duration", "expires", "names", "runner", "urls"]
    assert out["runner_file"] == str(ROOT / "collection" / "plugins" / "module_utils" / "_runner.py")


def test_unknown_attribute_is_an_attribute_error():
    from heartbeat_agent import _rules

    with pytest.raises(AttributeError, match="nope"):
        _rules.nope  # noqa: B018
    assert {"names", "runner", "urls"} <= set(dir(_rules))
