"""Issue 12 against the emulator with real Ansible: embedding models (1), re-pin options (2), tags of one blob (3),
transformed keep_alive (4), a model that is loading (5), clamped num_ctx (7). The emulator's scheduler events are the
proof of "no reload" and "no second cold load"."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from tests.collection.conftest import INTERPRETERS

PY38 = str(INTERPRETERS["py3.8"])


def post(url: str, path: str, body: dict, timeout: float = 120) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def ps(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/api/ps", timeout=30) as r:
        return json.loads(r.read())["models"]


def loads(emu) -> list[tuple[str, str]]:
    return [(e["event"], e["model"]) for e in emu.events() if e["event"] in ("load", "reload")]


def test_embedding_model_pinned_through_embed_and_clamped_ctx_idempotent(ansible_module, emulator):
    args = {"url": emulator.url, "name": "nomic-embed-text", "options": {"num_ctx": 8192}}  # trained on 2048
    first = ansible_module("ollama_pin", args, interpreter=PY38)
    assert not first.failed and first.changed, first
    assert first.result["action"] == "load" and first.result["endpoint"] == "/api/embed"
    assert first.result["model"]["state"] == "forever" and first.result["model"]["context_length"] == 2048
    second = ansible_module("ollama_pin", args, interpreter=PY38)
    assert not second.failed and not second.changed and second.result["action"] == "none", second
    assert loads(emulator) == [("load", "nomic-embed-text:latest")]


def test_two_tags_of_one_blob_share_the_pin(ansible_module, emulator):
    first = ansible_module("ollama_pin", {"url": emulator.url, "name": "llama3.2:latest"}, interpreter=PY38)
    assert first.changed and first.result["action"] == "load", first
    other = ansible_module("ollama_pin", {"url": emulator.url, "name": "llama3.2:3b"}, interpreter=PY38)
    assert not other.failed and not other.changed and other.result["action"] == "none", other
    assert other.result["served_by"] == "llama3.2:latest"
    warnings = [w for w in (other.stdout + other.stderr).splitlines() if w.startswith("[WARNING]") and "llama3.2" in w]
    assert warnings == [], other  # was: reloaded, and warned, on every run
    checked = ansible_module("ollama_ps", {"url": emulator.url, "models": ["llama3.2:3b"], "allow_unlisted": False},
                             interpreter=PY38)  # fmt: skip
    assert not checked.failed and checked.result["ok"] is True, checked
    assert loads(emulator) == [("load", "llama3.2:latest")]  # no reload, no second runner
    unload = ansible_module("ollama_pin", {"url": emulator.url, "name": "llama3.2:3b", "state": "unloaded"},
                            interpreter=PY38)  # fmt: skip
    assert unload.changed and unload.result["action"] == "unload", unload
    deadline = time.monotonic() + 10
    while ps(emulator.url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ps(emulator.url) == []


def test_repin_after_a_client_loaded_other_runner_options(ansible_module, emulator):
    # a workload loaded the model with its own num_batch and a finite keep_alive
    post(emulator.url, "/api/generate", {"model": "llama3.2", "keep_alive": "10m", "options": {"num_batch": 1024}})
    # declared with the workload's options: the re-pin cannot differ from the runner, no reload
    run = ansible_module("ollama_pin", {"url": emulator.url, "name": "llama3.2", "options": {"num_batch": 1024}},
                         interpreter=PY38)  # fmt: skip
    assert run.changed and run.result["action"] == "repin", run
    assert run.result["request"]["options"] == {"num_batch": 1024, "num_ctx": run.result["model"]["context_length"]}
    assert "num_batch" in run.result["reload_unknown"]
    assert run.result["model"]["state"] == "forever"
    assert loads(emulator) == [("load", "llama3.2:latest")]


def test_transformed_keep_alive_is_refused_and_nothing_sent(ansible_module, emulator):
    run = ansible_module("ollama_pin", {"url": emulator.url, "name": "llama3.2", "keep_alive": 9223372037},
                         interpreter=PY38)  # fmt: skip
    assert run.failed and "overflow" in run.result["msg"], run
    assert ps(emulator.url) == [] and loads(emulator) == []


def test_a_loading_model_is_reported_at_once_and_joined_not_loaded_twice(ansible_module, emulator_factory):
    # ps answers at once during a load, without the loading model (ollama-behaviour.md section 3 item 7, upstream
    # since v0.30.0, the emulator's default); a cold load of llama3.2 takes ~6 s real here
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", OLLAMA_EMULATOR_LOAD_BPS="5600000")
    client = threading.Thread(target=post, args=(emu.url, "/api/generate", {"model": "llama3.2", "keep_alive": -1}))
    client.start()
    try:
        time.sleep(0.5)  # the client's request has reached the scheduler; its load takes ~6 s
        started = time.monotonic()
        report = ansible_module("ollama_ps", {"url": emu.url, "models": ["llama3.2"], "fail_on_problems": False,
                                              "timeout": 5}, interpreter=PY38)  # fmt: skip
        assert client.is_alive(), "the load ended before ollama_ps ran: the test proves nothing"
        assert not report.failed, report
        assert [p["reason"] for p in report.result["problems"]] == ["missing"]
        assert "loading right now" in report.result["problems"][0]["message"]
        pin = ansible_module("ollama_pin", {"url": emu.url, "name": "llama3.2"}, interpreter=PY38)
        assert not pin.failed and pin.result["model"]["state"] == "forever", pin
        assert time.monotonic() - started < 60
    finally:
        client.join(60)
    assert loads(emu) == [("load", "llama3.2:latest")]  # the pin joined the client's load


@pytest.mark.parametrize("bad", ["18446744074", "99999999999999999999"])
def test_override_refuses_keep_alive_integers_ollama_transforms(ansible_module, tmp_path, bad):
    dest = tmp_path / "systemd"
    dest.mkdir()
    run = ansible_module("ollama_override", {"environment": {"OLLAMA_KEEP_ALIVE": bad}, "systemd_dir": str(dest)},
                         interpreter=PY38)  # fmt: skip
    assert run.failed and ("wraps around" in run.result["msg"] or "5m default" in run.result["msg"]), run
    assert list(dest.iterdir()) == []


def test_override_enforces_root_ownership_of_the_dropin(ansible_module, tmp_path):
    """A drop-in (or its directory) another user can write lets that user add ExecStartPre=+... (runs as root)."""
    import os
    import stat

    sd = tmp_path / "systemd"
    args = {"systemd_dir": str(sd), "keep_alive": -1}
    first = ansible_module("ollama_override", args, interpreter=PY38)
    assert first.changed, first
    path = sd / "ollama.service.d" / "zz-keepwarm.conf"
    os.chown(path, 1000, 1000)
    os.chmod(path.parent, 0o777)
    fixed = ansible_module("ollama_override", args, interpreter=PY38)
    assert not fixed.failed and fixed.changed, fixed
    assert len(fixed.result["ownership_fixed"]) == 2  # the file's owner, the directory's mode
    st, dst = path.stat(), path.parent.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert stat.S_IMODE(dst.st_mode) & 0o022 == 0
    again = ansible_module("ollama_override", args, interpreter=PY38)
    assert not again.changed, again


def test_override_refuses_a_name_with_a_trailing_newline(ansible_module, tmp_path):
    sd = tmp_path / "systemd"
    run = ansible_module("ollama_override", {"systemd_dir": str(sd), "environment": {"OLLAMA_DEBUG\n": "1"}},
                         interpreter=PY38)  # fmt: skip
    assert run.failed and "name" in run.result["msg"] and "Traceback" not in run.stdout + run.stderr, run
    assert not sd.exists()


def test_a_model_created_from_a_loaded_one_shares_its_runner_and_digest_pins_hold(ansible_module, emulator_factory,
                                                                                  tmp_path):  # fmt: skip
    """`ollama create terse-llama` FROM llama3.2: another manifest digest, the same blob, so the same runner."""
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"models": [
        {"name": "llama3.2:latest", "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
         "size": 2019393189, "context_length": 131072, "capabilities": ["completion", "tools"]},
        {"name": "terse-llama:latest", "from": "llama3.2:latest", "parameters": {"temperature": 0.1}},
    ]}))  # fmt: skip
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", OLLAMA_EMULATOR_CATALOG=str(catalog))
    with urllib.request.urlopen(emu.url + "/api/tags", timeout=30) as r:
        digests = {m["name"]: m["digest"] for m in json.loads(r.read())["models"]}
    assert digests["terse-llama:latest"] != digests["llama3.2:latest"]
    assert ansible_module("ollama_pin", {"url": emu.url, "name": "llama3.2"}, interpreter=PY38).changed
    derived = ansible_module("ollama_pin", {"url": emu.url, "name": "terse-llama"}, interpreter=PY38)
    assert not derived.changed and derived.result["served_by"] == "llama3.2:latest", derived
    wanted = "terse-llama@sha256:" + digests["terse-llama:latest"][:12]
    ok = ansible_module("ollama_ps", {"url": emu.url, "models": [wanted], "allow_unlisted": False}, interpreter=PY38)
    assert not ok.failed and ok.result["ok"], ok
    wrong = ansible_module("ollama_ps", {"url": emu.url, "models": ["terse-llama@sha256:845dbda0ea48"],
                                         "fail_on_problems": False}, interpreter=PY38)  # fmt: skip
    assert [p["reason"] for p in wrong.result["problems"]] == ["digest"], wrong
    assert loads(emu) == [("load", "llama3.2:latest")]
