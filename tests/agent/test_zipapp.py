"""The zipapp: reproducible (two builds, same sha256) and running from the zip on Python 3.9 and 3.13."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from .conftest import PY39, PY313, ROOT, cold_loads, run_subprocess, sha256


def test_two_builds_same_sha256(zipapp, tmp_path):
    again = tmp_path / "again.pyz"
    subprocess.run([sys.executable, "tools/build_zipapp.py", "--out", str(again)], cwd=ROOT, check=True)
    assert sha256(again) == sha256(zipapp)


def test_zip_layout(zipapp):
    assert zipapp.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(zipapp) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    for module in ("__main__.py", "heartbeat_agent/_beat.py", "heartbeat_agent/py.typed", "httpx/__init__.py",
                   "httpcore/__init__.py", "h11/__init__.py", "idna/__init__.py", "certifi/__init__.py"):  # fmt: skip
        assert module in names
    # httpx's async-only dependency is left out (httpcore imports it when present: ~0.2 s CPU per beat)
    assert not [n for n in names if n.startswith(("anyio/", "typing_extensions", "exceptiongroup/"))]


@pytest.mark.parametrize("python", [PY39, PY313], ids=["py3.9", "py3.13"])
def test_zipapp_runs_once_and_status(zipapp, emulator_factory, python):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60")
    args = (str(zipapp), "--url", emu.url, "--model", "llama3.2")
    version = subprocess.run([python, "-I", str(zipapp), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("ollama-heartbeat ")
    run = run_subprocess(*args, "once", python=python)
    assert run.code == 0, run.out
    assert run.beat["pinned"] == "1"
    assert len(cold_loads(emu.events())) == 1
    status = run_subprocess(*args, "status", python=python)
    assert status.code == 0
    assert status.out.splitlines()[1].split()[:4] == ["llama3.2:latest", "yes", "yes", "forever"]
    again = run_subprocess(*args, "once", python=python)
    assert again.code == 0 and again.beat["posts"] == "0"


def test_zipapp_refuses_python_3_8(zipapp):
    proc = subprocess.run(
        ["/root/.pyenv/versions/3.8.18/bin/python3.8", "-I", str(zipapp), "once"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "needs Python 3.9+" in proc.stdout and "Traceback" not in proc.stderr
