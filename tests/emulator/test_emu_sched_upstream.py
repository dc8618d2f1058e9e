"""Issue 11 items 1, 2, 3, 5, 6, 9, 11, 12: scheduler rules where the emulator used to differ from upstream HEAD.

Each test names the upstream file and function the rule comes from (ollama/ollama fb30760). Real HTTP to a real
`python -m lab.emulator serve` on loopback; order-based checks, no timed assertions.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import pytest

from .conftest import FAST, NS, call, events, load, parse_time, ps, ps_map, wait_for


def _evs(emu) -> list[tuple[str, str]]:
    return [(e["event"], e["reason"]) for e in events(emu)]


def _wait_until_mlx_loading(emu, within: float = 15) -> None:
    """Wait until the mlx runner's load has begun: from then on it sits in `s.loaded` with its refMu held, so a ps
    request waits (x/mlxrunner/client.go `Load`). Before that, ps answers `[]` at once and a `keep_alive: 0` would find
    nothing to expire: the test would race the scheduler picking up the pending request."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            models, _ = ps(emu, timeout=0.5)
        except OSError:  # timed out: ps is waiting for the loading runner
            return
        assert models == [], models
        time.sleep(0.02)
    raise AssertionError("the mlx load did not begin within %ss" % within)


class Pending:
    """A load request on a raw socket, left pending: `answered()` tells whether any response byte has arrived."""

    def __init__(self, emu, body: dict):
        port = int(emu.url.rsplit(":", 1)[1])
        data = json.dumps(body).encode()
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
        )

    def answered(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])

    def response(self, timeout: float = 30) -> bytes:
        self.sock.settimeout(timeout)
        out = b""
        while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


class Call(threading.Thread):
    """call() in a thread; `.result` is the Response."""

    def __init__(self, emu, method, path, body=None, timeout: float = 60):
        super().__init__(daemon=True)
        self.args = (emu, method, path, body)
        self.timeout = timeout
        self.result = None
        self.start()

    def run(self):
        self.result = call(*self.args, timeout=self.timeout)


# ---- item 1: a loading model is not in /api/ps, and ps answers at once ---
def test_loading_model_absent_from_ps_and_ps_does_not_wait(emulator_factory):
    """sched.go `load` calls llm/llama_server.go `Load`, which waits in `WaitUntilRunning`; only then does the runner
    enter `s.loaded`, the only map `loadedModels` (/api/ps) reads. A 9 s load: ps answers while it is pending,
    without the model; a loaded model stays listed meanwhile."""
    emu = emulator_factory(OLLAMA_EMULATOR_LOAD_BPS="3e8", OLLAMA_EMULATOR_VRAM_RECOVERY="0")
    load(emu, "nomic-embed-text")  # 0.9 s
    pending = Pending(emu, {"model": "llama3.2"})
    try:
        wait_for(lambda: any(e["event"] == "load" for e in events(emu)))
        models, _ = ps(emu, timeout=10)
        assert [m["name"] for m in models] == ["nomic-embed-text:latest"]
        assert not pending.answered(), "the load is still running: ps did not wait for it"
    finally:
        pending.close()  # aborts the load (WaitUntilRunning: client connection closed)
    wait_for(lambda: ("load_aborted", "client_disconnected") in _evs(emu))


def test_second_request_joins_the_pending_load(emulator_factory):
    """sched.go `getRunner`: a request for a model that is loading finds nothing in `s.loaded` and waits in
    `pendingReqCh` behind the load; `processPending` then finds the new runner and uses it: one cold load."""
    emu = emulator_factory(OLLAMA_EMULATOR_LOAD_BPS="1e9", OLLAMA_EMULATOR_TIME_SCALE="4")  # 2.8 s emulated, 0.7 real
    first = Call(emu, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": "1h"})
    second = Call(emu, "POST", "/api/generate", {"model": "llama3.2"})
    first.join(30)
    second.join(30)
    assert first.result.status == second.result.status == 200
    assert _evs(emu) == [("load", "cold")]
    assert [m["name"] for m in ps(emu)[0]] == ["llama3.2:latest"]


@pytest.mark.parametrize("runner", ["llama", "mlx"])
def test_client_disconnect_aborts_cold_load(emulator_factory, runner):
    """§5 llm/llama_server.go `WaitUntilRunning`: a client disconnect while the model loads aborts the load and tears
    the runner down (28 s load here). With the llama-server runner ps meanwhile answers `[]` at once (item 1); with
    OLLAMA_EMULATOR_RUNNER=mlx (x/mlxrunner/client.go `Load` returns early, the runner sits in `s.loaded` with its
    refMu held until it runs) ps waits, and answers `[]` once the aborted load is gone."""
    emu = emulator_factory(OLLAMA_EMULATOR_LOAD_BPS="1e8", OLLAMA_EMULATOR_RUNNER=runner)
    pending = Pending(emu, {"model": "llama3.2"})
    if runner == "llama":
        assert ps(emu, timeout=10)[0] == []
        assert not pending.answered()
        pending.close()
    else:
        _wait_until_mlx_loading(emu)
        waiting = Call(emu, "GET", "/api/ps", timeout=30)
        waiting.join(1.0)
        assert waiting.is_alive() and not pending.answered(), "mlx: ps waits for the loading runner's refMu"
        pending.close()
        waiting.join(30)
        assert waiting.result.json()["models"] == []
    wait_for(lambda: _evs(emu) == [("load_aborted", "client_disconnected")])
    assert ps(emu)[0] == []


# ---- item 2: keep_alive 0 while the model is still loading changes nothing ---
@pytest.mark.parametrize("runner", ["llama", "mlx"])
def test_unload_while_loading(emulator_factory, runner):
    """sched.go `expireRunner` looks only in `s.loaded`. llama-server: a loading model is not there yet, so
    `keep_alive: 0` with an empty prompt answers `unload` and changes nothing: the model finishes loading and keeps
    the loading request's keep_alive (1h). mlx: the runner is in `s.loaded`, its sessionDuration becomes 0 and it
    unloads when the loading request ends."""
    emu = emulator_factory(
        OLLAMA_EMULATOR_LOAD_BPS="1e8", OLLAMA_EMULATOR_TIME_SCALE="10", OLLAMA_EMULATOR_RUNNER=runner
    )  # 28 s emulated = 2.8 s real
    loading = Pending(emu, {"model": "llama3.2", "keep_alive": "1h"})
    try:
        if runner == "mlx":
            _wait_until_mlx_loading(emu)
        unload = call(emu, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": 0})
        assert unload.status == 200 and unload.json()["done_reason"] == "unload"
        assert not loading.answered(), "the unload answered while the model was still loading"
        assert b'"done_reason":"load"' in loading.response()
    finally:
        loading.close()
    if runner == "llama":
        models, now = ps(emu)
        assert [m["name"] for m in models] == ["llama3.2:latest"]
        left = (parse_time(models[0]["expires_at"]) - now) / NS
        assert 3500 < left <= 3600, left
        assert _evs(emu) == [("load", "cold")]
    else:
        wait_for(lambda: ps(emu)[0] == [])
        assert _evs(emu) == [("load", "cold"), ("unload", "keep_alive_0")]


# ---- item 3: OLLAMA_NUM_PARALLEL slots per runner ---
def _two_streams(emu, model="llama3.2"):
    """Two concurrent streaming generations; returns the (stream, line) order in which their lines arrived."""
    order = []
    lock = threading.Lock()

    def run(tag):
        import http.client

        port = int(emu.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/generate", body=json.dumps({"model": model, "prompt": "why"}))
        r = conn.getresponse()
        for line in r:
            with lock:
                order.append((tag, json.loads(line)["done"]))
        conn.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in ("a", "b")]
    threads[0].start()
    wait_for(lambda: order)  # a holds a slot and streams
    threads[1].start()
    for t in threads:
        t.join(60)
    return order


def test_one_slot_serializes_generations_and_load_only_takes_none(emulator_factory):
    """llm/llama_server.go `Completion` takes one of numParallel semaphore slots for the whole generation; with
    OLLAMA_NUM_PARALLEL=1 a second generation waits inside the runner until the first is done. A load-only request
    (empty prompt) never calls Completion, so it takes no slot and answers while the slot is busy."""
    emu = emulator_factory(OLLAMA_EMULATOR_TOKEN_RATE="30", **FAST)
    load(emu, "llama3.2")
    gen = Call(emu, "POST", "/api/generate", {"model": "llama3.2", "prompt": "why", "stream": False})
    wait_for(gen.is_alive)
    assert load(emu, "llama3.2", keep_alive="1h")["done_reason"] == "load"
    assert gen.is_alive(), "the load-only request did not wait for the busy slot"
    gen.join(30)
    order = _two_streams(emu)
    a_done = order.index(("a", True))
    assert all(tag == "a" for tag, _ in order[: a_done + 1]), "b streamed before a finished: %s" % order[:8]


def test_two_slots_run_two_generations_at_once(emulator_factory):
    """OLLAMA_NUM_PARALLEL=2 (sched.go `load`: numParallel slots): both generations stream at the same time."""
    emu = emulator_factory(OLLAMA_NUM_PARALLEL="2", OLLAMA_EMULATOR_TOKEN_RATE="30", **FAST)
    order = _two_streams(emu)
    assert order.index(("b", False)) < order.index(("a", True)), "b waited for a: %s" % order


SINGLE_SLOT_CATALOG = {
    "models": [
        {"name": "llama3.2:latest", "size": 2019393189, "kv_bytes_per_token": 114688, "context_length": 131072},
        {"name": "qwen3-next:latest", "family": "qwen3next", "size": 2019393189, "kv_bytes_per_token": 114688,
         "context_length": 131072},
        {"name": "embedder:latest", "family": "nomic-bert", "capabilities": ["embedding"], "size": 274302450,
         "kv_bytes_per_token": 36864, "context_length": 2048},
    ]
}  # fmt: skip


def test_single_slot_families_and_embedding_models(emulator_factory, tmp_path):
    """sched.go `load`: a model without the completion capability (embedding-only) and the listed architectures
    (mllama, qwen3vl, qwen35, qwen3next, lfm2, nemotron_h, ...) get numParallel = 1 whatever OLLAMA_NUM_PARALLEL
    says; the memory estimate (and the KV cache in it) then counts one slot (item 12). A qwen3next model with
    OLLAMA_NUM_PARALLEL=2 serializes two generations."""
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(SINGLE_SLOT_CATALOG))
    sizes = {}
    for np in ("1", "2"):
        emu = emulator_factory(OLLAMA_NUM_PARALLEL=np, OLLAMA_EMULATOR_CATALOG=str(cat), **FAST)
        for name in ("llama3.2", "qwen3-next", "embedder"):
            load(emu, name) if name != "embedder" else call(emu, "POST", "/api/embed", {"model": name, "input": []})
        sizes[np] = {name: m["size"] for name, m in ps_map(emu).items()}
        emu.stop()
    assert sizes["2"]["llama3.2:latest"] - sizes["1"]["llama3.2:latest"] == 114688 * 4096, "completion: 2 slots"
    assert sizes["2"]["qwen3-next:latest"] == sizes["1"]["qwen3-next:latest"], "qwen3next: one slot"
    assert sizes["2"]["embedder:latest"] == sizes["1"]["embedder:latest"], "embedding model: one slot"
    emu = emulator_factory(
        OLLAMA_NUM_PARALLEL="2", OLLAMA_EMULATOR_CATALOG=str(cat), OLLAMA_EMULATOR_TOKEN_RATE="30", **FAST
    )
    order = _two_streams(emu, model="qwen3-next")
    a_done = order.index(("a", True))
    assert all(tag == "a" for tag, _ in order[: a_done + 1]), order[:8]


# ---- item 5: needsReload in full ---
NEEDS_RELOAD = [
    # (model, env, first request, second request, reload?, rule)
    ("llama3.2", {}, {}, {"shift": False}, True, "shift false differs from the resolved default (true)"),
    ("llama3.2", {}, {"shift": False}, {"shift": False}, False, "same shift"),
    ("llama3.2", {}, {"shift": True}, {}, False, "nil shift resolves to supportsContextShift = true"),
    ("deepseek", {}, {}, {"shift": False}, False, "deepseek2 does not support context shift: nil resolves to false"),
    ("llama3.2", {}, {}, {"options": {"main_gpu": 0}}, True, "main_gpu is a *int: nil differs from 0"),
    ("llama3.2", {}, {"options": {"main_gpu": 0}}, {"options": {"main_gpu": 0}}, False, "same main_gpu"),
    ("llama3.2", {}, {}, {"options": {"num_batch": 512}}, False, "num_batch explicit but equal to the default"),
    ("llama3.2", {}, {"options": {"num_batch": 256}}, {}, True, "num_batch auto on one side only is compared"),
    ("llama3.2", {}, {}, {"options": {"use_mmap": False}}, True, "GPU: use_mmap nil vs false"),
    ("llama3.2", {"OLLAMA_EMULATOR_VRAM": "0"}, {}, {"options": {"use_mmap": False}}, False,
     "CPU: the scheduler chose use_mmap=false (useMMapAuto); an explicit false equals it"),
    ("llama3.2", {"OLLAMA_EMULATOR_VRAM": "0"}, {}, {}, False, "CPU: nil use_mmap takes the runner's value"),
    ("llama3.2", {"OLLAMA_EMULATOR_VRAM": "0"}, {}, {"options": {"use_mmap": True}}, True, "CPU: true differs"),
    ("nomic-embed-text", {}, {}, {"options": {"num_batch": 2048}}, False,
     "embedding default num_batch = min(2048, num_ctx), not automatic: an explicit equal value keeps it"),
    ("nomic-embed-text", {}, {}, {"options": {"num_batch": 512}}, True, "embedding num_batch differs"),
]  # fmt: skip

DEEPSEEK = {"name": "deepseek:latest", "family": "deepseek2", "size": 1000000000, "context_length": 32768}


@pytest.mark.parametrize(
    ("model", "env", "first", "second", "reload", "rule"), NEEDS_RELOAD, ids=[r[5][:50] for r in NEEDS_RELOAD]
)
def test_needs_reload(emulator_factory, tmp_path, model, env, first, second, reload, rule):  # noqa: PLR0913, PLR0917
    """sched.go `runnerRef.needsReload`: reload when the context shift setting differs (`resolveContextShift`) or a
    Runner option differs under reflect.DeepEqual, with num_ctx/num_batch skipped only when automatic on both sides
    and an unset use_mmap taking the runner's value only when the scheduler chose it (`useMMapAuto`:
    `applyLlamaServerMmapDefaults` turns mmap off on CPU); embedding models get num_batch
    min(2048, num_ctx) (routes.go `shouldApplyEmbeddingBatchDefault`, llm `WithDefaultEmbeddingNumBatch`)."""
    cat = tmp_path / "catalog.json"
    if model == "deepseek":
        cat.write_text(json.dumps({"models": [DEEPSEEK]}))
        env = dict(env, OLLAMA_EMULATOR_CATALOG=str(cat))
    emu = emulator_factory(**FAST, **env)
    for body in (first, second):
        if "embed" in model:
            r = call(emu, "POST", "/api/embed", dict(body, model=model, input=[]))
        else:
            r = call(emu, "POST", "/api/generate", dict(body, model=model))
        assert r.status == 200, r.body
    expected = [("load", "cold"), ("unload", "reload"), ("reload", "reload")] if reload else [("load", "cold")]
    assert _evs(emu) == expected, rule


# ---- item 9 (and item 5's adapters): runners keyed by the model blob ---
FROM_CATALOG = {
    "models": [
        {"name": "base:latest", "digest": "a" * 64, "size": 2019393189, "context_length": 131072,
         "kv_bytes_per_token": 114688},
        {"name": "base-sys:latest", "from": "base", "digest": "b" * 64},
        {"name": "base-8k:latest", "from": "base", "digest": "c" * 64, "parameters": {"num_ctx": 8192}},
        {"name": "base-lora:latest", "from": "base", "digest": "d" * 64, "adapters": ["e" * 64]},
    ]
}  # fmt: skip


def test_runners_keyed_by_blob_digests_by_manifest(emulator_factory, tmp_path):
    """sched.go `schedulerModelKey` keys runners by ModelPath (the model blob): a model created FROM another shares its
    runner, and ps shows the name and manifest digest of the request that loaded it. It is reloaded only when
    `needsReload` says so: other Modelfile parameters (num_ctx 8192) or other adapters (reflect.DeepEqual on
    AdapterPaths). /api/tags lists each manifest's own digest; /api/show names the shared blob in FROM and the base
    in details.parent_model (server/images.go: ParentModel = the model layer's From)."""
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(FROM_CATALOG))
    emu = emulator_factory(OLLAMA_EMULATOR_CATALOG=str(cat), **FAST)
    tags = {m["name"]: m["digest"] for m in call(emu, "GET", "/api/tags").json()["models"]}
    assert len(set(tags.values())) == 4
    shows = {n: call(emu, "POST", "/api/show", {"model": n}).json() for n in tags}
    froms = {n: s["modelfile"].splitlines()[1] for n, s in shows.items()}
    assert len(set(froms.values())) == 1 and froms["base:latest"] == "FROM /usr/share/ollama/.ollama/models/blobs/" + (
        "sha256-" + "a" * 64
    )
    assert shows["base-sys:latest"]["details"]["parent_model"] == "base"
    assert "ADAPTER " in shows["base-lora:latest"]["modelfile"]

    load(emu, "base")
    load(emu, "base-sys", keep_alive=-1)
    models, _ = ps(emu)
    assert [(m["name"], m["digest"]) for m in models] == [("base:latest", "a" * 64)], "one runner, named by its loader"
    assert _evs(emu) == [("load", "cold")]

    load(emu, "base-8k")
    assert [(m["name"], m["digest"], m["context_length"]) for m in ps(emu)[0]] == [("base-8k:latest", "c" * 64, 8192)]
    load(emu, "base-lora")
    load(emu, "base-lora")
    assert [m["name"] for m in ps(emu)[0]] == ["base-lora:latest"]
    assert _evs(emu)[1:] == [("unload", "reload"), ("reload", "reload")] * 2


# ---- item 6: keep_alive numbers past int64 nanoseconds ---
def test_keep_alive_overflow_loads_then_unloads(emulator_factory):
    """api/types.go `Duration.UnmarshalJSON`: a number is `time.Duration(t * float64(time.Second))`; from about
    9.22e9 s the product is past int64, and amd64's float-to-int conversion gives the minimum int64. That is not 0,
    so an empty prompt is not the unload path (routes.go): the model loads (`done_reason: load`), and, its
    sessionDuration being negative, unloads when the request ends (sched.go `processCompleted`). Just below the
    limit the duration is valid and the model stays."""
    emu = emulator_factory(**FAST)
    load(emu, "llama3.2", keep_alive=-1)
    r = call(emu, "POST", "/api/generate", {"model": "llama3.2", "keep_alive": 1e10})
    assert r.json()["done_reason"] == "load"
    assert ps(emu)[0] == []
    assert _evs(emu) == [("load", "cold"), ("unload", "keep_alive_0")]
    assert load(emu, "llama3.2", keep_alive=9.2e9)["done_reason"] == "load"
    models, now = ps(emu)
    assert (parse_time(models[0]["expires_at"]) - now) / NS > 9.1e9


# ---- item 11: unloads wait for VRAM recovery before the next load ---
def test_eviction_waits_for_vram_recovery(emulator_factory):
    """sched.go `processCompleted` removes an expired runner from `s.loaded` at once (ps no longer lists it), then,
    for a runner on a discrete GPU, waits in `waitForVRAMRecovery` (250 ms polls, at most 5 s) before sending the
    unloaded event that `processPending` waits for: the load that needed the room starts only after that.
    OLLAMA_EMULATOR_VRAM_RECOVERY=5 (emulated s): the next load starts >= 5 s after the eviction (event times)."""
    emu = emulator_factory(
        **dict(FAST, OLLAMA_EMULATOR_VRAM_RECOVERY="5"), OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TIME_SCALE="10"
    )
    load(emu, "llama3.2")
    load(emu, "nomic-embed-text", input=[])
    evs = events(emu)
    assert [(e["event"], e["reason"]) for e in evs] == [("load", "cold"), ("eviction", "evicted"), ("load", "cold")]
    evicted = parse_time(evs[1]["time"])
    load_start = parse_time(evs[2]["time"]) - int(evs[2]["load_duration"] * NS)
    assert load_start - evicted >= 5 * NS
