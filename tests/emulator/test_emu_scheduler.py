"""Scheduler rules (§6 server/sched.go) and /api/ps reporting (§3 routes.go PsHandler, sched.go loadedModels),
checked over real HTTP with time scaling so every test takes seconds."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from lab.emulator import cli, gotime

from .conftest import (
    FAST,
    MAX_INT64,
    NS,
    call,
    cold_starts,
    events,
    generate,
    load,
    parse_time,
    ps,
    ps_map,
    session_left,
    wait_for,
)

NIL = object()
FOREVER = "forever"


def _approx(left, expected, rule, slack=2.0):
    if expected == FOREVER:
        assert left is not None and left > MAX_INT64 / NS - 5, rule
    else:
        assert left is not None and expected - slack < left <= expected + 0.001, (left, rule)


class Streamer(threading.Thread):
    """A streaming /api/generate held open by the test; `first` is set once the first chunk arrived."""

    def __init__(self, emu, **body):
        super().__init__(daemon=True)
        self.emu, self.body = emu, body
        self.first = threading.Event()
        self.lines: list[dict] = []
        self.finished_at = None
        self.error = None

    def run(self):
        import http.client
        from urllib.parse import urlsplit

        u = urlsplit(self.emu.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.request("POST", "/api/generate", body=json.dumps(self.body))
            r = conn.getresponse()
            for line in r:
                self.lines.append(json.loads(line))
                self.first.set()
        except Exception as e:  # reported by the test through .error
            self.error = e
        finally:
            self.finished_at = time.monotonic()
            self.first.set()
            conn.close()


# ---- §6 useLoadedRunner: nil vs explicit keep_alive ------------------------------------------------------------
# steps: (endpoint, keep_alive); OLLAMA_KEEP_ALIVE=7m so the server default is recognisable.
NIL_VS_EXPLICIT = [
    ([("generate", NIL)], 420, "§6 load: first load takes envconfig.KeepAlive() when the request has none"),
    ([("generate", -1), ("generate", NIL)], FOREVER, "§6 useLoadedRunner: nil keeps the old value (v0.2.0+)"),
    ([("generate", "10m"), ("generate", NIL)], 600, "§6 useLoadedRunner: nil does not reset to the server default"),
    ([("generate", -1), ("generate", "10m")], 600, "§6 useLoadedRunner: non-nil replaces, last writer wins"),
    ([("generate", "10m"), ("chat", -1)], FOREVER, "§6 useLoadedRunner: chat sets it too"),
    ([("generate", -1), ("embed", NIL), ("chat", NIL)], FOREVER, "§6 nil from embed/chat keeps the pin"),
    ([("generate", -1), ("embed", "1h")], 3600, "§6 every scheduled request (embed too) can replace it"),
]


@pytest.mark.parametrize(("steps", "expected", "rule"), NIL_VS_EXPLICIT, ids=[r[2][:40] for r in NIL_VS_EXPLICIT])
def test_nil_vs_explicit_keep_alive(emulator_factory, steps, expected, rule):
    emu = emulator_factory(OLLAMA_KEEP_ALIVE="7m", **FAST)
    for endpoint, ka in steps:
        body = {"model": "llama3.2"}
        if ka is not NIL:
            body["keep_alive"] = ka
        if endpoint == "chat":
            r = call(emu, "POST", "/api/chat", body)
        elif endpoint == "embed":
            r = call(emu, "POST", "/api/embed", dict(body, input="hello"))
        else:
            r = call(emu, "POST", "/api/generate", body)
        assert r.status == 200, r.body

    # The last request's keep_alive reaches /api/ps only when its runner goes idle (§3 item 3: sched.go
    # processCompleted runs after the response is sent), so a ps right after the response may still be stale.
    def settled():
        try:
            _approx(session_left(emu, "llama3.2:latest"), expected, rule)
        except AssertionError:
            return False
        return True

    try:
        wait_for(settled, timeout=5)
    except AssertionError:
        pass  # the assertion below reports the value
    _approx(session_left(emu, "llama3.2:latest"), expected, rule)
    assert len(cold_starts(emu)) == 1, "reusing a runner is not a cold start"


# ---- §6 processCompleted: expiry timers ---------------------------------------------------------------------------
def test_expiry_after_keep_alive(emulator_factory):
    """§6 processCompleted: when refCount reaches 0 an AfterFunc(sessionDuration) timer starts; it unloads with
    reason `expired`. 1m emulated at scale 60 = 1 s."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", **FAST)
    load(emu, "llama3.2", keep_alive="1m")
    assert "llama3.2:latest" in ps_map(emu)
    wait_for(lambda: "llama3.2:latest" not in ps_map(emu), timeout=10)
    evs = events(emu)
    assert [(e["event"], e["reason"]) for e in evs] == [("load", "cold"), ("unload", "expired")]
    delta = (parse_time(evs[1]["time"]) - parse_time(evs[0]["time"])) / NS
    assert 59.9 <= delta <= 75, "expired one keep_alive after the request ended (emulated seconds): %s" % delta


def test_every_request_restarts_the_full_timer(emulator_factory):
    """§6: every scheduled request restarts the full timer; a model used again before expiry outlives its first
    expires_at."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", **FAST)
    load(emu, "llama3.2", keep_alive="1m")
    first = parse_time(ps_map(emu)["llama3.2:latest"]["expires_at"])
    time.sleep(0.5)  # 30 s emulated
    load(emu, "llama3.2")  # nil keep_alive keeps 1m, but the timer restarts from now
    second = parse_time(ps_map(emu)["llama3.2:latest"]["expires_at"])
    assert (second - first) / NS > 15
    wait_for(lambda: ps(emu)[1] > first + 2 * NS)
    assert "llama3.2:latest" in ps_map(emu), "the first timer must not fire after a restart"
    wait_for(lambda: "llama3.2:latest" not in ps_map(emu), timeout=10)
    assert [e["reason"] for e in events(emu)] == ["cold", "expired"]


# ---- §3 expires_at while a request runs ----------------------------------------------------------------------------
def test_stale_expires_at_during_request(emulator_factory):
    """§3 item 3 (sched.go useLoadedRunner): the timer stops but expiresAt stays as it was; it can pass while the
    model is busy (CLI: Stopping...), the model is NOT unloaded, and a new keep_alive shows only after the request."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", OLLAMA_EMULATOR_TOKEN_RATE="0.3", **FAST)
    load(emu, "llama3.2", keep_alive="30s")
    old = ps_map(emu)["llama3.2:latest"]["expires_at"]
    s = Streamer(emu, model="llama3.2", prompt="why is the sky blue", keep_alive=-1)
    s.start()
    assert s.first.wait(10)
    assert s.error is None and s.finished_at is None
    wait_for(lambda: ps(emu)[1] > parse_time(old) + NS)
    models, now = ps(emu)
    assert [m["name"] for m in models] == ["llama3.2:latest"], "busy runner must not expire"
    assert models[0]["expires_at"] == old, "expires_at is stale during the request"
    assert cli.until_text(models[0]["expires_at"], now) == "Stopping..."
    s.join(30)
    assert s.lines[-1]["done"] is True and s.lines[-1]["done_reason"] == "stop"
    _approx(session_left(emu, "llama3.2:latest"), FOREVER, "§3 item 3: keep_alive -1 visible after the request")


def test_zero_expires_at_during_first_request(emulator_factory):
    """§3 item 1: during a runner's first request expiresAt is zero and ps reports now + sessionDuration, computed
    fresh on every call."""
    emu = emulator_factory(OLLAMA_EMULATOR_TIME_SCALE="60", OLLAMA_EMULATOR_TOKEN_RATE="0.5", **FAST)
    s = Streamer(emu, model="llama3.2", prompt="hello there", keep_alive="10m")
    s.start()
    assert s.first.wait(10)
    m1, now1 = ps(emu)
    time.sleep(0.3)
    m2, now2 = ps(emu)
    assert s.finished_at is None, "still in the first request"
    for m, now in ((m1, now1), (m2, now2)):
        assert abs((parse_time(m[0]["expires_at"]) - now) / NS - 600) < 2
    assert (parse_time(m2[0]["expires_at"]) - parse_time(m1[0]["expires_at"])) / NS > 5
    s.join(30)


def test_unload_while_busy_waits_for_request(emulator_factory):
    """§5 unload: the unload happens now, or when in-flight requests end (sched.go expireRunner sets expiresAt=now)."""
    emu = emulator_factory(OLLAMA_EMULATOR_TOKEN_RATE="40", **FAST)
    s = Streamer(emu, model="llama3.2", prompt="hello", keep_alive=-1)
    s.start()
    assert s.first.wait(10)
    r = generate(emu, model="llama3.2", keep_alive=0)
    assert r.json()["done_reason"] == "unload"
    models, now = ps(emu)
    assert [m["name"] for m in models] == ["llama3.2:latest"], "busy: not unloaded yet"
    assert parse_time(models[0]["expires_at"]) <= now
    s.join(30)
    assert s.lines[-1]["done_reason"] == "stop"
    assert ps(emu)[0] == []
    assert [e["reason"] for e in events(emu)] == ["cold", "keep_alive_0"]


def test_keep_alive_zero_with_prompt_runs_then_unloads(emulator_factory):
    """§6: a non-empty request with keep_alive:0 runs first, then unloads."""
    emu = emulator_factory(**FAST)
    r = generate(emu, model="llama3.2", prompt="hi", stream=False, keep_alive=0)
    assert r.status == 200 and r.json()["done_reason"] == "stop" and r.json()["response"]
    assert ps(emu)[0] == []
    assert [(e["event"], e["reason"]) for e in events(emu)] == [("load", "cold"), ("unload", "keep_alive_0")]


def test_unload_never_loads(emulator_factory):
    """§5: keep_alive 0 with an empty prompt does not load a cold model (v0.3.11+)."""
    emu = emulator_factory(**FAST)
    for path, body in (("/api/generate", {}), ("/api/chat", {"messages": []})):
        r = call(emu, "POST", path, dict(body, model="llama3.2", keep_alive=0))
        assert r.status == 200 and r.json()["done_reason"] == "unload"
    assert ps(emu)[0] == [] and events(emu) == []


# ---- §6 findRunnerToUnload ---------------------------------------------------------------------------------------
# blob paths sort by digest: nomic 0a10.. < llama3 365c.. < llama3.1:70b 711a.. < qwen2.5 845d.. < llama3.2 a80c..
EVICTION = [
    (2, [("llama3", "10m"), ("qwen2.5:7b", "5m")], "llama3.2", "qwen2.5:7b", "shortest sessionDuration first, not LRU"),
    (2, [("qwen2.5:7b", "10m"), ("llama3", "10m")], "llama3.2", "llama3:latest", "tie broken by model path (v0.6.6+)"),
    (1, [("llama3.2", -1)], "qwen2.5:7b", "llama3.2:latest", "an idle pinned (-1) runner is evicted"),
    (2, [("llama3.2", -1), ("qwen2.5:7b", -1)], "llama3", "qwen2.5:7b", "two pinned: path order"),
    (2, [("llama3.2", -1), ("qwen2.5:7b", "10m")], "llama3", "qwen2.5:7b", "timed before pinned"),
    (
        3,
        [("llama3.2", "1h"), ("qwen2.5:7b", -1), ("nomic-embed-text", "2h")],
        "llama3",
        "llama3.2:latest",
        "sort by uint64(sessionDuration)",
    ),
]


@pytest.mark.parametrize(("cap", "loaded", "new", "victim", "rule"), EVICTION, ids=[r[4] for r in EVICTION])
@pytest.mark.parametrize("vram", ["0", "100000000000000"], ids=["cpu", "huge-vram"])
def test_eviction_order(emulator_factory, cap, loaded, new, victim, rule, vram):  # noqa: PLR0917
    """§6 findRunnerToUnload + §1 MAX_LOADED_MODELS is a global cap however much VRAM is free."""
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS=str(cap), OLLAMA_EMULATOR_VRAM=vram, **FAST)
    for name, ka in loaded:
        load(emu, name, keep_alive=ka)
    before = set(ps_map(emu))
    assert len(before) == cap
    load(emu, new, keep_alive="5m")
    after = set(ps_map(emu))
    assert victim in before and victim not in after, rule
    assert after == (before - {victim}) | {new if ":" in new else new + ":latest"}, rule
    evs = [(e["event"], e["reason"], e["model"]) for e in events(emu) if e["event"] != "load"]
    assert evs == [("eviction", "evicted", victim)], rule


def test_eviction_waits_for_busy_runner(emulator_factory):
    """§6 findRunnerToUnload: every runner busy -> take the first, set its duration to 0 and wait (no timeout);
    it unloads when its request ends, then the pending load proceeds."""
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TOKEN_RATE="20", **FAST)
    s = Streamer(emu, model="llama3.2", prompt="hello", keep_alive=-1)
    s.start()
    assert s.first.wait(10)
    r = generate(emu, model="qwen2.5:7b")
    done_at = time.monotonic()
    s.join(30)
    assert r.status == 200 and r.json()["done_reason"] == "load"
    assert s.lines[-1]["done_reason"] == "stop", "the busy request is not cut short"
    assert s.finished_at <= done_at
    assert [(e["event"], e["model"]) for e in events(emu)] == [
        ("load", "llama3.2:latest"),
        ("eviction", "llama3.2:latest"),
        ("load", "qwen2.5:7b"),
    ]


# ---- VRAM: KV cache grows with num_ctx x num_parallel -------------------------------------------------------------
CONTEXT_FIT = [
    ({}, {"llama3:latest", "qwen2.5:7b", "llama3.2:latest"}, "default context fits next to the others"),
    ({"num_ctx": 32768}, {"llama3:latest", "llama3.2:latest"}, "big KV cache: > 80% of free VRAM -> evict one"),
]


@pytest.mark.parametrize(("options", "expected", "rule"), CONTEXT_FIT, ids=[r[2] for r in CONTEXT_FIT])
def test_big_context_forces_eviction(emulator_factory, options, expected, rule):
    """§6 processPending VRAM rule (v0.30.0+: fits when predicted <= 80% of free memory, else evict and retry)."""
    emu = emulator_factory(**FAST)  # 16 GiB emulated GPU, cap 3
    load(emu, "llama3", keep_alive="10m")
    load(emu, "qwen2.5:7b", keep_alive="5m")
    load(emu, "llama3.2", options=options)
    models = ps_map(emu)
    assert set(models) == expected, rule
    m = models["llama3.2:latest"]
    assert m["size_vram"] == m["size"]
    assert m["context_length"] == options.get("num_ctx", 4096)


@pytest.mark.parametrize(
    ("model", "options"),
    [("llama3.1:70b", {}), ("llama3.2", {"num_ctx": 131072})],
    ids=["70b-weights", "llama3.2-131072-ctx"],
)
def test_partial_offload_when_alone(emulator_factory, model, options):
    """§6: a model loaded alone may be split between GPU and CPU (size_vram < size)."""
    emu = emulator_factory(**FAST)
    load(emu, "llama3.2")
    load(emu, model, options=options)
    models, _ = ps(emu)
    assert len(models) == 1, "it needs the whole GPU: the other model is evicted first"
    m = models[0]
    assert 0 < m["size_vram"] < m["size"]
    assert re.fullmatch(r"\d+%/\d+% CPU/GPU", cli.processor_text(m["size"], m["size_vram"]))


def test_num_parallel_multiplies_kv_cache(emulator_factory):
    """§1 NUM_PARALLEL: the KV cache is num_ctx x num_parallel; context_length stays per slot; 0 becomes 1."""
    sizes = {}
    for np in ("1", "2", "0"):
        emu = emulator_factory(OLLAMA_NUM_PARALLEL=np, **FAST)
        load(emu, "llama3.2")
        m = ps_map(emu)["llama3.2:latest"]
        assert m["context_length"] == 4096
        sizes[np] = m["size"]
        emu.stop()
    assert sizes["2"] - sizes["1"] == 114688 * 4096
    assert sizes["0"] == sizes["1"]


DEFAULT_CTX = [
    ({}, "llama3.2", 4096, "§1 CONTEXT_LENGTH=0: < 23 GiB VRAM -> 4096"),
    ({"OLLAMA_EMULATOR_VRAM": str(24 << 30)}, "llama3.2", 32768, "§1 >= 23 GiB -> 32768"),
    ({"OLLAMA_EMULATOR_VRAM": str(48 << 30)}, "llama3.2", 131072, "§1 >= 47 GiB -> 262144, clamped to training"),
    ({"OLLAMA_CONTEXT_LENGTH": "8192"}, "llama3.2", 8192, "§1 OLLAMA_CONTEXT_LENGTH"),
    ({"OLLAMA_CONTEXT_LENGTH": "16384"}, "llama3", 8192, "§1 clamped to the training context"),
    ({"OLLAMA_CONTEXT_LENGTH": "abc"}, "llama3.2", 4096, "§1 invalid -> warning, then 0 (VRAM tier)"),
]


@pytest.mark.parametrize(("env", "model", "expected", "rule"), DEFAULT_CTX, ids=[r[3] for r in DEFAULT_CTX])
def test_default_context_length(emulator_factory, env, model, expected, rule):
    emu = emulator_factory(**FAST, **env)
    load(emu, model)
    assert ps(emu)[0][0]["context_length"] == expected, rule


# ---- §6 needsReload -------------------------------------------------------------------------------------------
RELOAD = [
    ({}, {"options": {"num_ctx": 8192}}, True, "num_ctx differs"),
    ({"options": {"num_ctx": 8192}}, {"options": {"num_ctx": 8192}}, False, "same num_ctx"),
    ({"options": {"num_ctx": 8192}}, {}, True, "a heartbeat omitting the workload's num_ctx reloads"),
    ({"options": {"num_ctx": 131072}}, {"options": {"num_ctx": 200000}}, False, "clamped to training ctx"),
    ({}, {"options": {"num_gpu": -1}}, False, "num_gpu < 0 never reloads"),
    ({"options": {"num_gpu": 10}}, {"options": {"num_gpu": -1}}, False, "num_gpu < 0 never reloads (2)"),
    ({}, {"options": {"num_gpu": 0}}, True, "num_gpu differs"),
    ({"options": {"num_ctx": 2}}, {"options": {"num_ctx": 4}}, False, "getRunner raises num_ctx < 4 to 4"),
    ({}, {}, False, "both automatic num_ctx: not compared (numCtxAuto, v0.30.0+)"),
    ({}, {"options": {"num_ctx": 4096}}, False, "explicit value equal to the automatic one"),
    ({}, {"options": {"num_batch": 256}}, True, "num_batch differs"),
    ({}, {"options": {"use_mmap": False}}, True, "use_mmap differs"),
    ({}, {"options": {"num_thread": 4}}, True, "num_thread differs"),
    ({}, {"options": {"temperature": 0.1, "top_k": 5}}, False, "sampling options are not runner options"),
    ({}, {"options": {"no_such_option": 1}}, False, "unknown options are ignored"),
    ({}, {"num_ctx": 8192}, False, "§5 top-level num_ctx is ignored"),
    ({"options": {"num_ctx": 8192.9}}, {"options": {"num_ctx": 8192}}, False, "§5 floats truncated (FromMap)"),
]


@pytest.mark.parametrize(("first", "second", "reload", "rule"), RELOAD, ids=[r[3] for r in RELOAD])
def test_reload_on_runner_options(emulator_factory, first, second, reload, rule):
    """§6 runnerRef.needsReload; a reload is counted as a cold start in /emulator/events."""
    emu = emulator_factory(**FAST)
    load(emu, "llama3.2", **first)
    load(emu, "llama3.2", **second)
    evs = [(e["event"], e["reason"]) for e in events(emu)]
    if reload:
        assert evs == [("load", "cold"), ("unload", "reload"), ("reload", "reload")], rule
        assert len(cold_starts(emu)) == 2
    else:
        assert evs == [("load", "cold")], rule


def test_reload_loses_the_pin(emulator_factory):
    """§6 consequences: a reload starts a new runner that takes keep_alive from the triggering request, or from
    OLLAMA_KEEP_ALIVE; a reloading request without keep_alive loses the pin."""
    emu = emulator_factory(**FAST)
    load(emu, "llama3.2", keep_alive=-1)
    _approx(session_left(emu, "llama3.2:latest"), FOREVER, "pinned")
    load(emu, "llama3.2", options={"num_ctx": 8192})
    _approx(session_left(emu, "llama3.2:latest"), 300, "§6 reload without keep_alive: server default")
    assert ps(emu)[0][0]["context_length"] == 8192


# ---- §3 /api/ps shape, order and the forever timestamp -------------------------------------------------------------
def test_ps_order_pinned_first(emulator_factory):
    """§3 Order: stable sort on expires_at.Unix() descending."""
    emu = emulator_factory(OLLAMA_EMULATOR_VRAM="0", OLLAMA_MAX_LOADED_MODELS="4", **FAST)
    for name, ka in (("llama3", "10m"), ("llama3.2", -1), ("qwen2.5:7b", "5m"), ("nomic-embed-text", "1h")):
        load(emu, name, keep_alive=ka)
    names = [m["name"] for m in ps(emu)[0]]
    assert names == ["llama3.2:latest", "nomic-embed-text:latest", "llama3:latest", "qwen2.5:7b"]


def test_ps_entry_shape_and_shared_blob(emulator_factory):
    """§3 key order and values; §6 schedulerModelKey: tags sharing a blob share one runner, named by the request
    that loaded it; `model` in generate answers echoes the request string."""
    emu = emulator_factory(**FAST)
    assert load(emu, "llama3.2:3b")["model"] == "llama3.2:3b"
    assert load(emu, "llama3.2")["model"] == "llama3.2"
    models, _ = ps(emu)
    assert len(models) == 1 and len(cold_starts(emu)) == 1
    m = models[0]
    assert list(m) == ["name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"]
    assert m["name"] == m["model"] == "llama3.2:3b"
    assert re.fullmatch(r"[0-9a-f]{64}", m["digest"])
    assert list(m["details"]) == [
        "parent_model",
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
    ]
    assert m["details"]["parent_model"] == ""
    assert call(emu, "GET", "/api/ps").body.startswith(b'{"models":[{"name":')
    load(emu, "llama3.2", keep_alive=0)
    assert call(emu, "GET", "/api/ps").body == b'{"models":[]}'


FOREVER_TZ = [("UTC", "Z"), ("America/Phoenix", "-07:00"), ("Asia/Kolkata", "+05:30")]


@pytest.mark.parametrize(("tz", "suffix"), FOREVER_TZ, ids=[t for t, _ in FOREVER_TZ])
def test_forever_timestamp_format(emulator_factory, tz, suffix):
    """§3 item 5 + §0: forever = now + MaxInt64 ns (about year 2318), Go RFC 3339 with up to 9 fraction digits
    (trailing zeros trimmed) and the server's local offset; created_at is UTC."""
    emu = emulator_factory(TZ=tz, OLLAMA_KEEP_ALIVE="-1", OLLAMA_MAX_LOADED_MODELS="1", **FAST)
    r = load(emu, "llama3.2")
    assert r["created_at"].endswith("Z")
    models, now = ps(emu)
    exp = models[0]["expires_at"]
    assert re.fullmatch(r"23(1[6-9]|20)-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?" + re.escape(suffix), exp), exp
    assert abs(parse_time(exp) - now - MAX_INT64) < 2 * NS
    assert abs(parse_time(exp) - now - MAX_INT64) < 2 * NS


def test_go_time_formatting():
    """§0 MarshalJSON rules on fixed values, including the documented 2318 sample."""
    import datetime

    base = gotime.parse_go_time("2026-08-15T12:00:00Z")
    want = datetime.datetime(2026, 8, 15, 12) + datetime.timedelta(seconds=MAX_INT64 // NS)
    assert gotime.go_time(base + MAX_INT64, utc=True) == want.strftime("%Y-%m-%dT%H:%M:%S") + ".854775807Z"
    assert gotime.go_time(0, utc=True) == "1970-01-01T00:00:00Z"
    assert gotime.go_time(1_500_000_000, utc=True) == "1970-01-01T00:00:01.5Z"
    assert gotime.go_time(1_000_000_010, utc=True) == "1970-01-01T00:00:01.00000001Z"


# ---- §1 OLLAMA_MAX_LOADED_MODELS parse -------------------------------------------------------------------------------
MAX_LOADED = [
    ("2", 2, False, "§1 Uint"),
    ("", 3, False, "§1 unset: auto = 3 x max(GPUs, 1)"),
    ("0", 3, False, "§1 0 = auto"),
    ("-1", 3, True, "§1 invalid: logged, auto"),
    ("0x10", 3, True, "§1 invalid: logged, auto"),
    ("abc", 3, True, "§1 invalid: logged, auto"),
]


@pytest.mark.parametrize(("env", "cap", "warns", "rule"), MAX_LOADED, ids=[repr(r[0]) for r in MAX_LOADED])
def test_max_loaded_models_parse(emulator_factory, env, cap, warns, rule):
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS=env, OLLAMA_EMULATOR_VRAM="0", **FAST)
    for name in ("llama3.2", "llama3", "qwen2.5:7b", "nomic-embed-text"):
        load(emu, name)
    assert len(ps(emu)[0]) == cap, rule
    emu.proc.terminate()
    out = emu.proc.communicate(timeout=10)[0].decode()
    assert ("invalid environment variable, using default" in out) == warns, rule


# ---- §6 shutdown ----------------------------------------------------------------------------------------------------
def test_sigterm_unloads_every_runner(emulator_factory, tmp_path):
    """§6 Shutdown: SIGTERM -> unloadAllRunners (`stopped` events), exit; nothing persists across restarts."""
    path = tmp_path / "events.jsonl"
    emu = emulator_factory(OLLAMA_EMULATOR_EVENTS_FILE=str(path), **FAST)
    load(emu, "llama3.2", keep_alive=-1)
    load(emu, "qwen2.5:7b", keep_alive=-1)
    emu.proc.terminate()
    assert emu.proc.wait(10) == 0
    evs = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted((e["event"], e["reason"], e["model"]) for e in evs[2:]) == [
        ("unload", "stopped", "llama3.2:latest"),
        ("unload", "stopped", "qwen2.5:7b"),
    ]
    again = emulator_factory(**FAST)
    assert ps(again)[0] == []


def test_repin_of_busy_runner_marked_for_eviction(emulator_factory):
    """§6 (inferred): a request with keep_alive != 0 reaching a busy runner marked for eviction restores its
    duration; that runner then never unloads and the pending load waits for some other unload (the keep-alive
    tool ends up fighting the scheduler). The waiting client gives up; nothing was evicted."""
    emu = emulator_factory(OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TOKEN_RATE="40", **FAST)
    s = Streamer(emu, model="llama3.2", prompt="hello", keep_alive=-1)
    s.start()
    assert s.first.wait(10)
    outcome = []

    def want_qwen():
        try:
            outcome.append(call(emu, "POST", "/api/generate", {"model": "qwen2.5:7b"}, timeout=2.5).status)
        except TimeoutError:
            outcome.append("timeout")

    t = threading.Thread(target=want_qwen)
    t.start()
    # the busy runner is marked: sessionDuration 0, so ps (zero expiresAt during the first request) shows now + 0
    wait_for(lambda: (session_left(emu, "llama3.2:latest") or 99) < 1)
    assert load(emu, "llama3.2", keep_alive=-1)["done_reason"] == "load"  # re-pin through the fast path
    s.join(30)
    t.join(30)
    assert outcome == ["timeout"]
    _approx(session_left(emu, "llama3.2:latest"), FOREVER, "restored pin survives")
    assert [e["event"] for e in events(emu)] == ["load"]
    # once the waiting client is gone, the next request for another model evicts the idle pinned runner normally
    load(emu, "qwen2.5:7b")
    assert [e["event"] for e in events(emu)] == ["load", "eviction", "load"]
