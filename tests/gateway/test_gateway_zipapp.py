"""The reproducible zipapp (tools/build_gateway_zipapp.py) on the oldest supported Python (3.9) and a new one (3.13),
both from pyenv, in front of a real emulator, with nothing but the zip and the standard library."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from gwhelpers import ROOT, http_request, wait_for

PY39 = "/root/.pyenv/versions/3.9.18/bin/python3.9"
PY313 = "/root/.pyenv/versions/3.13.0/bin/python3.13"


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory):
    out = tmp_path_factory.mktemp("gwzip")
    paths = [out / "a.pyz", out / "b.pyz"]
    for path in paths:
        subprocess.run([sys.executable, "tools/build_gateway_zipapp.py", "--out", str(path)], check=True, cwd=ROOT,
                       capture_output=True)  # fmt: skip
    return paths


def test_build_is_reproducible_and_vendors_the_rulebook(zipapp):
    a, b = (hashlib.sha256(p.read_bytes()).hexdigest() for p in zipapp)
    assert a == b
    import zipfile

    with zipfile.ZipFile(zipapp[0]) as zf:
        names = zf.namelist()
        for stem in ("_duration", "_names", "_runner"):
            vendored = zf.read(f"gateway/_vendor/{stem}.py")
            assert vendored == (ROOT / "collection/plugins/module_utils" / f"{stem}.py").read_bytes()
        # the config format shared with the agent (gateway/_rules.py SHARED_MODULES)
        assert zf.read("gateway/_vendor/_configfile.py") == (ROOT / "heartbeat_agent" / "_configfile.py").read_bytes()
    assert "h11/__init__.py" in names and not any(n.endswith(".pyc") for n in names)


@pytest.mark.parametrize("python", [PY39, PY313], ids=["py3.9", "py3.13"])
def test_zipapp_enforces_the_pin(zipapp, emulator_factory, gateway_factory, python):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", OLLAMA_MAX_LOADED_MODELS="1")
    gw = gateway_factory(emu.url, "--model", "llama3.2,num_ctx=8192", "--max-loaded-models", "1",
                         command=[python, "-I", str(zipapp[0])])  # fmt: skip
    assert gw.json("POST", "/api/generate", {"model": "llama3.2", "keep_alive": "5m"})[0] == 200
    assert wait_for(lambda: emu.ps() and emu.ps()[0]["expires_at"][:2] == "23")  # forever: year 23xx
    assert gw.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})[0] == 403
    assert gw.request("POST", "/api/generate", {"model": "qwen2.5:7b", "prompt": "x"})[0] == 503
    status, _h, data = gw.request("POST", "/api/generate", {"model": "llama3.2", "prompt": "x"})
    lines = [json.loads(line) for line in data.splitlines()]
    assert status == 200 and lines[-1]["done"] is True and len(lines) > 2
    assert http_request(gw.port, "GET", "/api/version")[2] == http_request(emu.port, "GET", "/api/version")[2]
    assert emu.ps()[0]["context_length"] == 8192
    start = gw.log_lines()[0]
    assert start["event"] == "start" and start["result"] == "ok"
