"""The rulebook table (tests/data/rules.json) through every route the rules are imported by.

- modules: `ansible_collections.keepwarm.ollama.plugins.module_utils._names` etc. (how Ansible modules import them);
- agent, checkout: `heartbeat_agent._rules` loading `collection/plugins/module_utils/*.py` by path;
- agent, zipapp: the `.pyz` built by tools/build_zipapp.py, with its vendored copies, under Python 3.9 when present.

Every route must give the table's answer on every row, and the zipapp's copies must be byte-identical to the files.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.collection.rulebook_eval import evaluate
from tests.conftest import DATA
from tests.conftest import ROOT as REPO

TABLE_PATH = DATA / "rules.json"
TABLE = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
PY39 = Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python3.9"


def _modules_route():
    from ansible_collections.keepwarm.ollama.plugins.module_utils import _duration, _expires, _names, _runner, _urls

    return evaluate(
        TABLE, SimpleNamespace(names=_names, expires=_expires, duration=_duration, runner=_runner, urls=_urls)
    )


def _checkout_route():
    from heartbeat_agent import _rules

    assert _rules.SOURCE == "checkout"
    assert Path(_rules.names.__file__) == REPO / "collection" / "plugins" / "module_utils" / "_names.py"
    return evaluate(TABLE, _rules)


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory):
    out = tmp_path_factory.mktemp("rulebook") / "ollama-heartbeat.pyz"
    subprocess.run([sys.executable, "tools/build_zipapp.py", "--out", str(out)], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    return out


def _zipapp_route(zipapp):
    python = str(PY39) if PY39.exists() else sys.executable
    script = Path(__file__).with_name("rulebook_eval.py")
    proc = subprocess.run([python, "-I", str(script), str(zipapp), str(TABLE_PATH)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result.pop("_source") == "vendored"
    files = result.pop("_files")
    assert all(".pyz/heartbeat_agent/_vendored/" in f for f in files.values()), files
    return result


ROUTES = ["modules", "agent-checkout", "agent-zipapp"]


@pytest.fixture(scope="module", params=ROUTES)
def outcome(request):
    if request.param == "modules":
        return _modules_route()
    if request.param == "agent-checkout":
        return _checkout_route()
    return _zipapp_route(request.getfixturevalue("zipapp"))


def _error_or_value(got, row, value_key):
    if "error" in row:
        assert "error" in got, (row, got)
        assert row["error"] in got["error"], (row, got)
    else:
        assert got == {"ok": row[value_key]}, (row, got)


def test_names(outcome):
    for row, got in zip(TABLE["names"], outcome["names"]):
        if "error" in row:
            assert row["error"] in got["split"].get("error", ""), (row, got)
            continue
        assert got["display"] == {"ok": row["display"]}, row
        assert got["split"]["ok"][1] == row["digest"], row
        assert got["key"] == got["key_as"], row


def test_digests(outcome):
    assert outcome["digests"] == [r["match"] for r in TABLE["digests"]]


def test_runner_resolution(outcome):
    for row, got in zip(TABLE["runners"]["cases"], outcome["runner_cases"]):
        assert got["runner"] == row["runner"], row
        assert got["digest_ok"] == row.get("digest_ok"), row
    assert outcome["runner_keys"] == [r["key"] for r in TABLE["runners"]["keys"]]


def test_expiry(outcome):
    for row, got in zip(TABLE["expiry"], outcome["expiry"]):
        if "error" in row:
            assert row["error"] in got.get("error", ""), (row, got)
            continue
        assert got["ok"]["state"] == row["state"], row
        if row["seconds_left"] is None:
            assert got["ok"]["seconds_left"] is None, row
        else:
            assert math.isclose(got["ok"]["seconds_left"], row["seconds_left"], abs_tol=1e-6), row


def test_json_keep_alive(outcome):
    for row, got in zip(TABLE["json_keep_alive"], outcome["json_keep_alive"]):
        _error_or_value(got, row, "ns")


def test_request_keep_alive(outcome):
    for row, got in zip(TABLE["request_keep_alive"], outcome["request_keep_alive"]):
        _error_or_value(got, row, "send")


def test_env_values(outcome):
    for row, got in zip(TABLE["env_keep_alive"], outcome["env_keep_alive"]):
        _error_or_value(got, row, "write")
    assert outcome["env_keep_alive_read"] == [[r["ns"], r["ignored"]] for r in TABLE["env_keep_alive_read"]]
    for row, got in zip(TABLE["env_uint"], outcome["env_uint"]):
        _error_or_value(got, row, "write")


def test_runner_requests(outcome):
    assert outcome["num_ctx"] == [r["ctx"] for r in TABLE["num_ctx"]]
    assert outcome["load"] == [r["path"] for r in TABLE["load"]]
    for row, (path, body) in zip(TABLE["load"], outcome["load_request"]):
        assert path == row["path"]
        assert body["model"] == "m" and body["keep_alive"] == -1 and body["options"] == {"num_ctx": 8}
        assert ("stream" in body) == (path == "/api/generate")
    assert outcome["capability_refusals"] == [r["refusal"] for r in TABLE["capability_refusals"]]
    for row, got in zip(TABLE["repin"], outcome["repin"]):
        assert got["options"] == row["send"], row
        assert got["num_ctx"] == row["num_ctx"], row
        assert "num_batch" in got["reload_unknown"] and "shift" in got["reload_unknown"]


def test_urls(outcome):
    table = TABLE["urls"]
    assert outcome["urls"]["redact"] == [r["shown"] for r in table["redact"]]
    assert outcome["urls"]["secrets"] == [r["secrets"] for r in table["secrets"]]
    assert outcome["urls"]["proxy"] == [r["proxy"] for r in table["proxy"]]


def test_option_types(outcome):
    """api/types.go Options: the one table of option names and JSON types the agent's and the gateway's configs use."""
    assert outcome["options"] == [r["ok"] for r in TABLE["options"]]


def test_every_row_is_checked(outcome):
    """The outcome has one entry per table row in every section (zip() above would hide a short list)."""
    assert len(outcome["names"]) == len(TABLE["names"])
    assert len(outcome["runner_cases"]) == len(TABLE["runners"]["cases"])
    for section in ("digests", "expiry", "json_keep_alive", "request_keep_alive", "env_keep_alive", "env_uint",
                    "num_ctx", "load", "capability_refusals", "repin", "options"):  # fmt: skip
        assert len(outcome[section]) == len(TABLE[section]), section


def test_zipapp_vendors_the_files_byte_for_byte(zipapp):
    from heartbeat_agent._rules import RULE_MODULES

    with zipfile.ZipFile(zipapp) as zf:
        for stem in RULE_MODULES:
            vendored = zf.read(f"heartbeat_agent/_vendored/{stem}.py")
            assert vendored == (REPO / "collection" / "plugins" / "module_utils" / f"{stem}.py").read_bytes(), stem


def test_rule_modules_are_stdlib_only():
    """The rulebook files import nothing but the standard library (the agent loads them without Ansible)."""
    import ast

    from heartbeat_agent._rules import RULE_MODULES

    for stem in RULE_MODULES:
        tree = ast.parse((REPO / "collection" / "plugins" / "module_utils" / f"{stem}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [(node.module or "").split(".")[0]]
            else:
                continue
            for mod in mods:
                assert mod == "__future__" or mod in sys.stdlib_module_names, (stem, mod)
