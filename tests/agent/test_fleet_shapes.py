"""Issue 12 items 11-12 and issue 13 items 3 and 5 against the emulator (and MockTransport for a guard's memory).

Tags of one blob, re-pins that reload, busy runners, a request waiting for a busy runner's eviction, an over-capacity
guard that must tell an eviction from an expiry and clear, and the "evicted" false alarm.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

from .conftest import cold_loads
from .test_faults import PINNED, transport

SCALE = "60"


def pinned(emu, name: str = "llama3.2:latest") -> bool:
    from heartbeat_agent import classify

    return any(m["name"] == name and classify(m["expires_at"]).state == "forever" for m in emu.ps())


def settle(emu, name: str, prefix: str) -> None:
    """Wait until ps shows `name` with an expires_at that does not start with `prefix` (upstream sets it just after
    answering: sched.go processCompleted)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(m["name"] == name and not m["expires_at"].startswith(prefix) for m in emu.ps()):
            return
        time.sleep(0.02)
    raise AssertionError(emu.ps())


# ---- 12.11 one runner per blob: llama3.2:3b is served by the llama3.2:latest runner -------------------------------


def test_other_tag_of_a_loaded_blob_is_not_loaded_again(emulator_factory, cli):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1, "options": {"num_ctx": 8192}})
    emu.request("DELETE", "/emulator/events")
    for _ in range(2):
        run = cli("--url", emu.url, "--model", "llama3.2:3b", "once")
        assert run.code == 0, run.out
        assert run.beat["posts"] == "0" and run.beat["pinned"] == "1"
        assert run.actions("none")[0]["model"] == "llama3.2:3b"
    assert emu.events() == []  # no load, no reload: the client's num_ctx 8192 kept
    assert [m["context_length"] for m in emu.ps()] == [8192]


def test_repin_that_reloads_is_reported_as_a_reload(emulator_factory, cli, tmp_path):
    """A client loaded the runner with num_batch 256 (not shown by /api/ps): the re-pin reloads it and says so."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="1")  # real-time loads: seconds, as on a GPU host
    args = ("--url", emu.url, "--model", "llama3.2", "--metrics-path", str(tmp_path / "k.prom"))
    assert cli(*args, "once").code == 0
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": "1h", "options": {"num_batch": 256}})
    settle(emu, "llama3.2:latest", "23")
    emu.request("DELETE", "/emulator/events")
    run = cli(*args, "once")
    assert run.code == 0
    (repin,) = run.actions("repin")
    assert repin["reload"] == "1" and "reloaded the runner" in repin["message"]
    assert [e["event"] for e in cold_loads(emu.events())] == ["reload"]
    assert 'keepwarm_cold_loads_total{model="llama3.2:latest"} 2' in (tmp_path / "k.prom").read_text()


# ---- 12.12 busy runners ------------------------------------------------------------------------------------------


SLOW_TOKENS = "0.1"  # OLLAMA_EMULATOR_TOKEN_RATE for the busy-runner tests: one token per 1/6 s at time scale 60


def long_request(emu, seconds: float, model: str = "llama3.2") -> threading.Thread:
    """A generation that keeps the runner busy for about `seconds` (one token per 10 emulated s, time scale 60)."""
    tokens = max(int(seconds * 6), 1)
    body = {"model": model, "prompt": "x", "stream": False, "options": {"num_predict": tokens}}
    thread = threading.Thread(target=lambda: emu.request("POST", "/api/generate", body, timeout=60), daemon=True)
    thread.start()
    return thread


def test_busy_runner_repinned_once_and_reported_pending(emulator_factory, cli):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE, OLLAMA_EMULATOR_TOKEN_RATE=SLOW_TOKENS)
    args = ("--url", emu.url, "--model", "llama3.2")
    assert cli(*args, "once").code == 0
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": "1h"})
    settle(emu, "llama3.2:latest", "23")
    busy = long_request(emu, 4)
    time.sleep(0.3)
    first = cli(*args, "once")
    assert first.code == 0, first.out  # the pin was taken; ps shows it only when the request ends
    assert first.beat["posts"] == "1"
    assert [line["result"] for line in first.actions("repin")] == ["ok", "pending"]
    second = cli(*args, "once")
    assert second.code == 0 and second.beat["posts"] == "0"  # never re-sent while the runner stays busy
    emu.request("DELETE", "/emulator/events")
    busy.join(30)
    deadline = time.monotonic() + 5
    while not pinned(emu) and time.monotonic() < deadline:  # the runner went idle: now + forever
        time.sleep(0.02)
    assert pinned(emu)
    assert cold_loads(emu.events()) == []


def test_request_waiting_for_a_busy_runners_eviction_gets_its_model(emulator_factory, cli):
    """Room for one model. While llama3.2 is busy (pin re-sent once), a qwen2.5:7b request waits for its eviction
    (sched.go processPending sets its duration to 0 and waits with no timeout). The agent must not put the pin back,
    so the waiting request gets its model when the long request ends; the agent then reports the eviction."""
    emu = emulator_factory(
        OLLAMA_EMULATOR_TIME_SCALE=SCALE, OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TOKEN_RATE=SLOW_TOKENS
    )
    args = ("--url", emu.url, "--model", "llama3.2")
    assert cli(*args, "once").code == 0
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": "1h"})
    settle(emu, "llama3.2:latest", "23")
    busy = long_request(emu, 3)
    time.sleep(0.3)
    assert cli(*args, "once").code == 0  # re-pin sent once: pending
    waited: list[float] = []

    def qwen() -> None:
        start = time.monotonic()
        emu.request("POST", "/api/generate", {"model": "qwen2.5:7b", "keep_alive": "5m"}, timeout=60)
        waited.append(time.monotonic() - start)

    waiting = threading.Thread(target=qwen, daemon=True)
    waiting.start()
    time.sleep(0.3)
    during = cli(*args, "once")  # the waiting request is invisible in /api/ps: the agent must not re-send
    assert during.beat["posts"] == "0"
    busy.join(30)
    waiting.join(15)
    assert waited, "the qwen2.5:7b request never got its model"
    after = cli(*args, "once")
    (load,) = after.actions("load")
    assert load["reason"] == "evicted" and "long request ended" in after.actions("start")[0]["message"]


# ---- 13.3 the over-capacity guard -------------------------------------------------------------------------------


def test_guard_not_set_by_an_expiry(cli, tmp_path):
    """llama3.2 had 0.5 s left and expired while qwen2.5:7b loaded: no eviction, so qwen is not held back."""
    from heartbeat_agent import parse_expires_at  # noqa: F401 - the agent's parser is what the test feeds

    soon = time.gmtime(time.time() + 0.5)
    timed = {**PINNED, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%S", soon) + ".5Z"}
    qwen = {**PINNED, "name": "qwen2.5:7b", "model": "qwen2.5:7b", "digest": "8" * 64}
    beats = [[[timed], [qwen]], [[PINNED], [PINNED, qwen]]]
    args = ("--url", "http://ollama.test:1", "--model", "llama3.2", "--model", "qwen2.5:7b",
            "--metrics-path", str(tmp_path / "k.prom"))  # fmt: skip
    for ps_answers in beats:
        t = transport(
            lambda r, answers=ps_answers: httpx.Response(200, json={"models": answers.pop(0)}),
            httpx.Response(200, json={"model": "x", "done": True, "done_reason": "load"}),
        )
        run = cli(*args, "once", transport=t)
    assert not run.actions("skip"), run.out
    assert [line["model"] for line in run.actions("load")] == ["qwen2.5:7b"]
    state = json.loads((tmp_path / "k.state.json").read_text())
    assert "over_capacity" not in state["models"]["qwen2.5:7b"]


def test_guard_clears_when_capacity_is_seen_again(cli, tmp_path):
    state_file = tmp_path / "k.state.json"
    flag = {"evicted": "llama3.2:latest", "since": time.time(), "capacity": 1}
    state_file.write_text(json.dumps({"version": 2, "models": {"qwen2.5:7b": {"over_capacity": flag}}}))
    other = {**PINNED, "name": "llama3:latest", "model": "llama3:latest", "digest": "3" * 64}
    qwen = {**PINNED, "name": "qwen2.5:7b", "model": "qwen2.5:7b", "digest": "8" * 64}
    answers = [[PINNED, other], [PINNED, other, qwen]]
    t = transport(
        lambda r: httpx.Response(200, json={"models": answers.pop(0)}),
        httpx.Response(200, json={"model": "x", "done": True, "done_reason": "load"}),
    )
    args = ("--url", "http://ollama.test:1", "--model", "llama3.2", "--model", "qwen2.5:7b",
            "--metrics-path", str(tmp_path / "k.prom"))  # fmt: skip
    run = cli(*args, "once", transport=t)
    assert run.code == 0, run.out
    (cleared,) = run.actions("guard")
    assert cleared["result"] == "cleared" and cleared["message"] == "capacity seen again"
    assert [line["model"] for line in run.actions("load")] == ["qwen2.5:7b"]


def test_guard_holds_while_the_server_keeps_one_model(emulator_factory, cli, tmp_path):
    """Room for one: the first-listed model stays pinned, the second is held back, no cold load per beat."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE, OLLAMA_MAX_LOADED_MODELS="1")
    args = ("--url", emu.url, "--model", "llama3.2", "--model", "qwen2.5:7b", "--metrics-path",
            str(tmp_path / "k.prom"))  # fmt: skip
    first = cli(*args, "once")
    assert first.code == 1
    assert first.actions("guard")[0]["evicted"] == "llama3.2:latest"
    assert cli(*args, "once").code == 1  # llama3.2 comes back; qwen2.5:7b is held back
    emu.request("DELETE", "/emulator/events")
    for _ in range(3):
        run = cli(*args, "once")
        assert run.code == 1 and run.beat["posts"] == "0"
        (skip,) = run.actions("skip")
        assert skip["model"] == "qwen2.5:7b" and skip["reason"] == "over_capacity"
    assert cold_loads(emu.events()) == []
    assert pinned(emu)


# ---- 13.5 "evicted" only when a model took its place ------------------------------------------------------------


def test_client_unload_is_not_called_an_eviction(emulator_factory, cli, tmp_path):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    args = ("--url", emu.url, "--model", "llama3.2", "--metrics-path", str(tmp_path / "k.prom"))
    emu.request("POST", "/api/generate", {"model": "llama3", "keep_alive": "1h"})  # another model, room for both
    assert cli(*args, "once").code == 0
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
    run = cli(*args, "once")
    assert run.code == 0
    (load,) = run.actions("load")
    assert load["reason"] == "unloaded" and "loaded_instead" not in load


# ---- 12.3 in the agent: a digest in the configured name is compared, never dropped --------------------------------


def test_configured_digest_is_compared(cli):
    wanted = "llama3.2@sha256:" + "b" * 64
    t = transport(httpx.Response(200, json={"models": [PINNED]}))
    run = cli("--url", "http://ollama.test:1", "--model", wanted, "once", transport=t)
    assert run.code == 1
    (skip,) = run.actions("skip")
    assert skip["reason"] == "digest" and "not the configured bbbbbbbbbbbb" in skip["message"]
    assert [m for m, _, _ in t.seen].count("POST") == 0
    ok = cli("--url", "http://ollama.test:1", "--model", "llama3.2@sha256:" + PINNED["digest"][:12], "once",
             transport=transport(httpx.Response(200, json={"models": [PINNED]})))  # fmt: skip
    assert ok.code == 0, ok.out
    bad = cli("--url", "http://ollama.test:1", "--model", "llama3.2@sha256:xyz", "once")
    assert bad.code == 2 and bad.log[0]["field"] == "models[0].name"


def test_status_shows_the_runner_serving_another_tag(emulator_factory, cli):
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE=SCALE)
    emu.request("POST", "/api/generate", {"model": "llama3.2", "keep_alive": -1})
    run = cli("--url", emu.url, "--model", "llama3.2:3b", "status")
    assert run.code == 0, run.out
    rows = [line.split() for line in run.out.splitlines()]
    assert rows[1][:5] == ["llama3.2:3b", "yes", "as", "llama3.2:latest", "forever"]
    assert len(rows) == 2  # the runner is not listed a second time as an unconfigured model
