"""The scheduler (server/sched.go): runners keyed by blob, keep_alive bookkeeping, reload, eviction, ps.

Two runner kinds, as upstream (OLLAMA_EMULATOR_RUNNER): `llama` (default, llama-server: llm/llama_server.go `Load`
waits in `WaitUntilRunning` inside sched.go `load`, before the runner enters `s.loaded`, so a loading model is not in
/api/ps and ps answers at once) and `mlx` (x/mlxrunner/client.go `Load` only starts the process; the runner enters
`s.loaded` with its refMu held until it is running, so /api/ps, which takes every runner's refMu in sched.go
`loadedModels`, waits for the load).
"""

import json
import threading
import time

from .gotime import NS, go_time
from .logs import log
from .options import RUNNER_KEYS, ScheduleError

# --------------------------------------------------------------------------------------------------------------
# Scheduler (server/sched.go)
# --------------------------------------------------------------------------------------------------------------


# sched.go load: architectures that get one parallel slot whatever OLLAMA_NUM_PARALLEL says (ollama issue 4165)
SINGLE_SLOT_FAMILIES = (
    "mllama",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "qwen3next",
    "lfm2",
    "lfm2moe",
    "nemotron_h",
    "nemotron_h_moe",
    "nemotron_h_omni",
)


def num_parallel(model, setting):
    """sched.go load: max(OLLAMA_NUM_PARALLEL, 1); 1 for a model without the completion capability (embedding
    models) and for the families in SINGLE_SLOT_FAMILIES."""
    if "completion" not in model.capabilities or model.family in SINGLE_SLOT_FAMILIES:
        return 1
    return max(setting, 1)


def context_shift(shift, model):
    """sched.go resolveContextShift: the request's `shift` when set, else supportsContextShift (off for deepseek2)."""
    if shift is not None:
        return shift
    return not (model.family == "deepseek2" or "deepseek2" in model.families)


class Runner:
    def __init__(self, req, session_ns, seq, parallel):
        model = req.model
        self.model = model  # the model that loaded it: ps shows its name and manifest digest
        self.key = model.path
        self.name = req.name
        self.opts = req.opts
        self.auto = req.auto  # set of runner option names that were automatic (numCtxAuto, numBatchAuto)
        self.use_mmap_auto = False  # sched.go applyLlamaServerMmapDefaults turned mmap off by default
        self.context_shift = context_shift(req.shift, model)
        self.num_parallel = parallel
        # llm/llama_server.go Completion/Embedding: a semaphore of num_parallel slots; extra requests wait in it
        self.slots = threading.Semaphore(parallel)
        self.session_ns = session_ns
        self.ref_count = 0
        self.expires_at = None  # None = Go zero time
        self.timer_armed = False
        self.loading = True
        self.unloaded = False
        self.expire_reason = None  # "evicted" / "reload" when the scheduler asked this runner to go
        self.size = 0
        self.size_vram = 0
        self.seq = seq


class Request:
    def __init__(self, model, name, opts, auto, keep_alive, aborted, shift=None):  # noqa: PLR0913, PLR0917
        self.model = model
        self.name = name
        self.opts = opts
        self.auto = auto
        self.keep_alive = keep_alive  # None (nil) or ns
        self.aborted = aborted  # callable: True once the client has gone away
        self.shift = shift  # the request's `shift` (None = nil)
        self.reload = False


class Scheduler:
    def __init__(self, cfg, clock):
        self.cfg = cfg
        self.clock = clock
        self.cv = threading.Condition()
        self.runners = {}  # blob path -> Runner (insertion = load order)
        self.queue = []  # pending requests that need the scheduler (sched.go pendingReqCh), head is processed
        self.events = []
        self.unload_seq = 0
        self.seq = 0
        self.closing = False
        self.max_runners = cfg["max_runners"]
        self.mlx = cfg.get("runner") == "mlx"
        self.recovered_at = 0.0  # time.monotonic() when the last unloaded runner's VRAM counts as recovered
        t = threading.Thread(target=self._timer_loop, name="expiry", daemon=True)
        t.start()

    # ---- events -------------------------------------------------------------------------------------------
    def _event(self, event, reason, model, load_duration=None):
        ev = {"time": go_time(self.clock.now_ns(), utc=True), "event": event, "reason": reason, "model": model}
        if load_duration is not None:
            ev["load_duration"] = load_duration
        self.events.append(ev)
        if len(self.events) > 100000:
            del self.events[:50000]
        line = json.dumps(ev, separators=(",", ":"))
        log("emulator event %s" % line)
        path = self.cfg.get("events_file")
        if path:
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            except OSError as e:
                log("cannot write events file: %s" % e, "WARN")

    def get_events(self):
        with self.cv:
            return list(self.events)

    def clear_events(self):
        with self.cv:
            self.events.clear()

    # ---- memory estimate ------------------------------------------------------------------------------------
    def _estimate(self, model, opts, parallel):
        """Memory of a runner: weights + KV cache (num_ctx x the runner's parallel slots: sched.go load passes
        numParallel, 1 for embedding models, to the memory estimate) + graph overhead."""
        kv = model.kv_bytes_per_token * opts["num_ctx"] * parallel
        return model.size + kv + model.overhead

    def _vram_plan(self, model, opts, size, alone):
        """Bytes that would go to VRAM, or None if the model does not fit next to the loaded ones."""
        vram = self.cfg["vram"]
        if vram <= 0 or opts.get("num_gpu") == 0:
            return 0
        used = sum(r.size_vram for r in self.runners.values())
        free = max(vram - used, 0)
        want = size
        ngpu = opts.get("num_gpu", -1)
        if 0 < ngpu < model.block_count:
            want = size * ngpu // model.block_count
        if alone:
            # a model loaded alone may be split between GPU and CPU (sched.go processPending)
            return want if want <= free else int(free * 0.95)
        # v0.30.0+: with other models resident the new one must fit in 80% of free memory (sched.go processPending)
        return want if want <= free * 0.8 else None

    # ---- needsReload (sched.go runnerRef.needsReload) -----------------------------------------------------
    def _needs_reload(self, r, req):
        """sched.go runnerRef.needsReload: the context shift setting differs, the adapters or projectors differ
        (reflect.DeepEqual on the model's paths: a model created FROM the same blob with an ADAPTER), or a Runner
        option differs under reflect.DeepEqual (main_gpu and use_mmap are pointers: nil differs from any value),
        where num_ctx and num_batch are not compared when automatic on both sides, an unset use_mmap takes the
        runner's value when the scheduler chose it (useMMapAuto), and a negative num_gpu in the request matches any.
        (Ping never fails here: emulated runners do not crash.)"""
        if r.context_shift != context_shift(req.shift, req.model):
            return True
        if r.model.adapters != req.model.adapters or r.model.projectors != req.model.projectors:
            return True
        if self.mlx:
            return False  # `!runner.model.IsMLX() && !reflect.DeepEqual(...)`: MLX runners skip the options
        for k in RUNNER_KEYS:
            new, old = req.opts.get(k), r.opts.get(k)
            if k == "num_gpu" and new is not None and new < 0:
                continue  # num_gpu < 0 in the request never triggers a reload
            if k in ("num_ctx", "num_batch") and k in req.auto and k in r.auto:
                continue  # v0.30.0+ numCtxAuto / numBatchAuto: both automatic -> not compared
            if k == "use_mmap" and r.use_mmap_auto and new is None:
                continue
            if new != old:
                return True
        return False

    # ---- using a loaded runner (sched.go useLoadedRunner) -------------------------------------------------
    def _use(self, r, req):
        r.ref_count += 1
        r.timer_armed = False  # the timer stops; expiresAt stays as it was (stale during the request)
        if req.keep_alive is not None:
            # v0.2.0+: a non-nil keep_alive replaces sessionDuration (last writer wins); nil keeps the old value
            r.session_ns = req.keep_alive
            if req.keep_alive > 0:
                r.expire_reason = None  # (inferred) restores a runner the scheduler marked for eviction
        return r

    def _usable(self, r, req):
        return r is not None and not r.loading and not r.unloaded and not self._needs_reload(r, req)

    # ---- parallel slots (llm/llama_server.go Completion, Embedding: s.sem.Acquire(ctx, 1)) -------------------
    def take_slot(self, r, aborted):
        """Wait for one of the runner's num_parallel slots (the request already counts in refCount: its keep_alive
        applied, the idle timer stopped). False if the client went away meanwhile (sem.Acquire returns ctx.Err)."""
        while not r.slots.acquire(timeout=0.05):
            if aborted() or self.closing:
                return False
        return True

    def give_slot(self, r):
        r.slots.release()

    # ---- acquire / release ----------------------------------------------------------------------------------
    def acquire(self, req):
        """sched.go GetRunner + processPending. Returns a Runner with ref_count taken, or raises ScheduleError."""
        with self.cv:
            r = self.runners.get(req.model.path)
            if self._usable(r, req):
                return self._use(r, req)  # GetRunner fast path: a reusable runner skips the pending queue
            if len(self.queue) > self.cfg["max_queue"]:
                raise ScheduleError(503, "server busy, please try again.  maximum pending requests exceeded")
            self.queue.append(req)
            try:
                while True:
                    if self.closing:
                        raise ScheduleError(500, "server shutting down")
                    if req.aborted():
                        raise ScheduleError(499, "request canceled")
                    r = self.runners.get(req.model.path)
                    if self._usable(r, req):
                        return self._use(r, req)
                    if self.queue[0] is not req or (r is not None and r.loading):
                        self.cv.wait(0.05)
                        continue
                    runner = self._process(req)
                    if runner is not None:
                        return runner
            finally:
                self.queue.remove(req)
                self.cv.notify_all()

    def _process(self, req):
        """One pass of processPending for the head request. Returns a Runner, or None to re-evaluate."""
        r = self.runners.get(req.model.path)
        if r is not None:
            # loaded but needsReload: expire it, wait for it to go, then load anew
            req.reload = True
            self._expire(r, "reload")
            return None
        if self.max_runners > 0 and len(self.runners) >= self.max_runners:
            # the cap is global and applies however much VRAM is free (sched.go processPending)
            victim = self._find_runner_to_unload()
            self._expire(victim, "evicted")
            return None
        parallel = num_parallel(req.model, self.cfg["num_parallel"])
        size = self._estimate(req.model, req.opts, parallel)
        plan = self._vram_plan(req.model, req.opts, size, alone=not self.runners)
        if plan is None:
            victim = self._find_runner_to_unload()
            self._expire(victim, "evicted")
            return None
        return self._load(req, size, plan, parallel)

    def _find_runner_to_unload(self):
        """sched.go findRunnerToUnload: sort by (uint64(sessionDuration), model path); first idle one, else the first
        (busy) one. Not LRU; an idle pinned (-1 = MaxInt64) runner is taken when no shorter idle runner exists."""
        lst = sorted(self.runners.values(), key=lambda r: (r.session_ns % (1 << 64), r.key))
        for r in lst:
            if r.ref_count == 0:
                return r
        return lst[0]

    def _expire(self, r, reason):
        """Ask a runner to unload (sessionDuration = 0); an idle one goes now, a busy one when its requests end.
        Then wait (no timeout, sched.go processPending) for some unload to happen: upstream's unloaded event comes
        only after processCompleted has waited for the GPU's free memory to recover (waitForVRAMRecovery)."""
        seq = self.unload_seq
        r.session_ns = 0
        r.expire_reason = reason
        if r.ref_count == 0:
            self._unload(r)
        while self.unload_seq == seq and not self.closing:
            if self.queue and self.queue[0].aborted():
                raise ScheduleError(499, "request canceled")
            self.cv.wait(0.05)
        while not self.closing:
            left = self.recovered_at - time.monotonic()
            if left <= 0:
                break
            if self.queue and self.queue[0].aborted():
                raise ScheduleError(499, "request canceled")
            self.cv.wait(min(left, 0.05))

    def _unload(self, r, reason=None):
        if r.unloaded:
            return
        reason = reason or r.expire_reason or "keep_alive_0"
        r.unloaded = True
        r.timer_armed = False
        if self.runners.get(r.key) is r:
            del self.runners[r.key]
        if r.size_vram > 0 and not self.closing:
            # sched.go waitForVRAMRecovery: a runner on a discrete GPU (not CPU, Metal or an iGPU) is removed from
            # `loaded` at once, then the unloaded event waits until ~75% of its VRAM shows free again, polled every
            # 250 ms, at most 5 s. Emulated VRAM frees at once: OLLAMA_EMULATOR_VRAM_RECOVERY (default 0.25 s, the
            # first poll) is how long that takes.
            wait = self.clock.real_seconds(self.cfg.get("vram_recovery_ns", 0))
            self.recovered_at = max(self.recovered_at, time.monotonic() + wait)
        self.unload_seq += 1
        self._event("eviction" if reason == "evicted" else "unload", reason, r.name)
        self.cv.notify_all()

    def _load(self, req, size, plan, parallel):
        """sched.go load: one load at a time (the caller is the head of the queue); the load takes size /
        OLLAMA_EMULATOR_LOAD_BPS emulated seconds and is aborted when the client disconnects (llm/llama_server.go
        WaitUntilRunning). llama-server (default): the runner enters `loaded` only once it is running, so /api/ps
        does not list it meanwhile; mlx: it is in `loaded` (and ps waits) while it loads."""
        self.seq += 1
        # First load: the request's keep_alive, or envconfig.KeepAlive() when the request has none (sched.go load)
        session = req.keep_alive if req.keep_alive is not None else self.cfg["keep_alive"]
        r = Runner(req, session, self.seq, parallel)
        r.size, r.size_vram = size, plan
        if r.opts.get("use_mmap") is None and plan == 0:
            # sched.go applyLlamaServerMmapDefaults / disableMmapDefaultReason "cpu": mmap off, chosen by default
            r.opts = dict(r.opts, use_mmap=False)
            r.use_mmap_auto = True
        if self.mlx:
            self.runners[r.key] = r
        load_ns = int(size / self.cfg["load_bps"] * NS)
        deadline = time.monotonic() + self.clock.real_seconds(load_ns)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if req.aborted() or self.closing:
                r.unloaded = True
                if self.runners.get(r.key) is r:
                    del self.runners[r.key]
                self._event("load_aborted", "client_disconnected", r.name)
                log('"client connection closed before llama-server finished loading, aborting load" model=%s' % r.name)
                self.cv.notify_all()
                raise ScheduleError(499, "request canceled")
            self.cv.wait(min(left, 0.02))
        r.loading = False
        r.ref_count = 1
        self.runners[r.key] = r
        self._event("reload" if req.reload else "load", "reload" if req.reload else "cold", r.name, load_ns / NS)
        self.cv.notify_all()
        return r

    def release(self, r):
        """sched.go processCompleted: when refCount reaches 0, sessionDuration <= 0 unloads now, otherwise
        expiresAt = now + sessionDuration and the idle timer starts."""
        with self.cv:
            r.ref_count -= 1
            if r.ref_count > 0 or r.unloaded:
                return
            r.ref_count = 0
            if r.session_ns <= 0:
                self._unload(r)
            else:
                r.expires_at = self.clock.now_ns() + r.session_ns
                r.timer_armed = True
                self.cv.notify_all()

    def expire_runner(self, model):
        """sched.go expireRunner (keep_alive 0 with an empty prompt): expiresAt = now, sessionDuration = 0; unload now
        if idle, else when in-flight requests end. Never loads. It looks only in `loaded`: a llama-server runner
        that is still loading is not there, so nothing changes (it finishes loading with the loading request's
        keep_alive); an mlx runner is, and unloads when its loading request ends."""
        with self.cv:
            r = self.runners.get(model.path)
            if r is None or r.loading:
                if r is not None:
                    r.session_ns = 0
                    r.expire_reason = "keep_alive_0"
                return
            r.expires_at = self.clock.now_ns()
            r.timer_armed = False
            r.session_ns = 0
            if r.expire_reason is None:
                r.expire_reason = "keep_alive_0"
            if r.ref_count <= 0:
                self._unload(r)

    def _timer_loop(self):
        """The per-runner AfterFunc timers, as one thread re-checking under the lock (a stale wake-up cannot unload
        a runner whose expiry moved or that is busy again)."""
        with self.cv:
            while not self.closing:
                now = self.clock.now_ns()
                nearest = None
                for r in list(self.runners.values()):
                    if not r.timer_armed or r.ref_count or r.loading or r.expires_at is None:
                        continue
                    if r.expires_at <= now:
                        self._unload(r, "expired")
                    elif nearest is None or r.expires_at < nearest:
                        nearest = r.expires_at
                timeout = 3600.0 if nearest is None else min(self.clock.real_seconds(nearest - now), 3600.0)
                self.cv.wait(max(timeout, 0.001))

    # ---- /api/ps (routes.go PsHandler, sched.go loadedModels) ---------------------------------------------
    def ps(self, aborted):
        """sched.go loadedModels: every runner in `loaded`, under its refMu. A llama-server runner enters `loaded`
        only once running, so ps answers at once and a loading model is absent; an mlx runner holds its refMu while
        it loads, so ps waits for that load."""
        with self.cv:
            if self.mlx:
                while any(r.loading for r in self.runners.values()) and not aborted() and not self.closing:
                    self.cv.wait(0.05)
            now = self.clock.now_ns()
            rows = []
            for r in self.runners.values():
                if r.unloaded or r.loading:
                    continue
                # a zero expiresAt (loading, or during the first request) is reported as now + sessionDuration
                exp = r.expires_at if r.expires_at is not None else now + r.session_ns
                rows.append((exp, r))
            # v0.2.0+: stable sort on expires_at.Unix() descending (pinned first)
            rows.sort(key=lambda x: -(x[0] // NS))
            out = []
            for exp, r in rows:
                out.append(
                    {
                        "name": r.name,
                        "model": r.name,
                        "size": r.size,
                        "digest": r.model.digest,
                        "details": r.model.details(),
                        "expires_at": go_time(exp),
                        "size_vram": r.size_vram,
                        "context_length": r.opts["num_ctx"],
                    }
                )
            return out

    def unload_all(self, reason):
        """routes.go Serve: on SIGINT/SIGTERM unloadAllRunners after srvr.Close()."""
        with self.cv:
            self.closing = True
            for r in list(self.runners.values()):
                self._unload(r, reason)
            self.cv.notify_all()
