"""One heartbeat: read `/api/ps`, repair only what is wrong, read `/api/ps` again and report.

- loaded and pinned: send nothing;
- loaded but expiring (a client sent its own keep_alive, server/sched.go `useLoadedRunner`: last writer wins):
  re-pin with keep_alive -1 and the runner's own `num_ctx` (its `context_length`), because any difference in a
  runner option reloads the model (server/sched.go `needsReload`);
- not loaded (expired, evicted, server restarted): load with the configured options and the long load timeout.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

from ._client import OllamaClient
from ._config import Config, ModelSpec, normalize_name
from ._exceptions import BadResponse, BeatError, HeartbeatError, ServerUnreachable
from ._expiry import FOREVER, STOPPING, TIMED, Expiry, classify
from ._metrics import State

__all__ = ["BeatResult", "ModelResult", "run_beat"]

Log = Callable[..., None]


class ModelResult:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.action = "none"  # none | repin | load
        self.reason: Optional[str] = None  # expiring | unloaded | evicted | reloaded
        self.load_seconds: Optional[float] = None
        self.error: Optional[HeartbeatError] = None
        self.entry: Optional[Dict[str, Any]] = None  # final /api/ps entry
        self.expiry: Optional[Expiry] = None
        self.pinned = False

    def observation(self) -> Dict[str, Any]:
        entry = self.entry or {}
        size, vram = entry.get("size"), entry.get("size_vram")
        gpu = 0.0
        if isinstance(size, int) and isinstance(vram, int) and size > 0:
            gpu = min(vram / size, 1.0)
        if self.expiry is None:
            expiry_seconds = 0.0
        elif self.expiry.state == FOREVER:
            expiry_seconds = float("inf")
        else:
            expiry_seconds = float(self.expiry.seconds_left or 0.0)
        return {
            "model": self.spec.key,
            "loaded": self.entry is not None,
            "pinned": self.pinned,
            "expiry_seconds": expiry_seconds,
            "gpu": gpu,
        }


class BeatResult:
    def __init__(self, models: List[ModelResult]) -> None:
        self.models = models
        self.error: Optional[HeartbeatError] = None  # a beat-wide failure (unreachable, bad /api/ps)
        self.exit_code = 0
        self.up = True
        self.loaded_names: List[str] = []


def _expiry(entry: Dict[str, Any], now_ns: Optional[int]) -> Optional[Expiry]:
    try:
        return classify(entry.get("expires_at"), now_ns)
    except ValueError:
        return None


def is_pinned(expiry: Optional[Expiry], config: Config) -> bool:
    if expiry is None:
        return False
    if config.keep_alive.forever:
        return expiry.state == FOREVER
    # A timed keep_alive: good while it outlives the next two beats; the agent then re-sends it.
    return expiry.state == FOREVER or (expiry.state == TIMED and (expiry.seconds_left or 0) > 2 * config.interval)


def _index(models: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    # /api/ps names are ParseName(...).DisplayShortest(), e.g. "llama3.2:latest" (server/routes.go PsHandler).
    return {normalize_name(m["name"]): m for m in models}


def run_beat(
    client: OllamaClient, config: Config, state: State, log: Log, *, quiet: bool = False, now_ns: Optional[int] = None
) -> BeatResult:
    start = time.monotonic()
    counts_before = dict(client.counts)
    result = BeatResult([ModelResult(spec) for spec in config.models])
    try:
        before = client.ps()
    except HeartbeatError as exc:
        return _finish(result, exc, client=client, counts_before=counts_before, start=start, state=state, log=log)
    loaded = _index(before)
    posted = False
    for r in result.models:
        spec = r.spec
        entry = loaded.get(spec.key)
        mstate = state.model(spec.key)
        try:
            if entry is not None:
                exp = _expiry(entry, now_ns)
                ctx = entry.get("context_length")
                if is_pinned(exp, config):
                    if not quiet:
                        log(action="none", model=spec.key, state=exp.state if exp else "invalid")
                else:
                    prev_ctx = mstate.get("context_length")
                    # A client request with other runner options reloads the model (sched.go needsReload) and the
                    # new runner takes that client's keep_alive: seen here as a changed context_length.
                    r.reason = (
                        "reloaded" if prev_ctx is not None and ctx is not None and ctx != prev_ctx else "expiring"
                    )
                    options = dict(spec.options)
                    if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0:
                        options["num_ctx"] = ctx  # the runner's own num_ctx: an equal value does not reload
                    r.action = "repin"
                    posted = True
                    seconds = client.load(spec.name, options, config.keep_alive.wire)
                    mstate["repairs"][r.reason] += 1
                    log(
                        action="repin",
                        model=spec.key,
                        reason=r.reason,
                        state=exp.state if exp else "invalid",
                        seconds_left=exp.seconds_left if exp and exp.state != FOREVER else None,
                        expires_at=entry.get("expires_at"),
                        num_ctx=options.get("num_ctx"),
                        request_seconds=seconds,
                        result="ok",
                    )
            else:
                blocker = _over_capacity(mstate, loaded, config, now_ns)
                if blocker is not None:
                    r.action = "skip"
                    r.error = BeatError(
                        f"not loaded: loading it evicted {blocker} (listed before it) on an earlier beat; more models "
                        f"are configured than the server keeps loaded (retried after {OVER_CAPACITY_RETRY}s)"
                    )
                    log(action="skip", model=spec.key, reason="over_capacity", result="error", message=str(r.error))
                    continue
                # Another model in /api/ps means the slot (MAX_LOADED_MODELS or VRAM) went to it: evicted.
                others = [m["name"] for m in before]
                r.reason = "evicted" if others else "unloaded"
                r.action = "load"
                posted = True
                seconds = client.load(spec.name, spec.options, config.keep_alive.wire)
                r.load_seconds = seconds
                mstate["cold_loads"] += 1
                mstate["repairs"][r.reason] += 1
                mstate["last_load_seconds"] = round(seconds, 6)
                log(
                    action="load",
                    model=spec.key,
                    reason=r.reason,
                    loaded_instead=",".join(others) if others else None,
                    load_seconds=seconds,
                    result="ok",
                )
        except ServerUnreachable as exc:
            return _finish(result, exc, client=client, counts_before=counts_before, start=start, state=state, log=log)
        except BeatError as exc:
            r.error = exc
            log(action=r.action, model=spec.key, reason=r.reason, result="error", error=exc.kind, message=str(exc))
    after = before
    if posted:
        try:
            after = client.ps()
        except HeartbeatError as exc:
            return _finish(result, exc, client=client, counts_before=counts_before, start=start, state=state, log=log)
    final = _index(after)
    result.loaded_names = [m["name"] for m in after]
    _flag_over_capacity(result, loaded, after=final, state=state, config=config, now_ns=now_ns)
    for r in result.models:
        r.entry = final.get(r.spec.key)
        r.expiry = _expiry(r.entry, now_ns) if r.entry is not None else None
        r.pinned = is_pinned(r.expiry, config)
        ctx = r.entry.get("context_length") if r.entry else None
        if isinstance(ctx, int):
            state.model(r.spec.key)["context_length"] = ctx
        if not r.pinned and r.error is None:
            if r.entry is None:
                why = "not loaded after the beat"
                if r.spec.key in loaded or (r.action in ("load", "repin") and r.error is None):
                    why += " (evicted by this beat's other loads: more models configured than the server keeps)"
            elif r.expiry is None:
                why = f"unparseable expires_at {r.entry.get('expires_at')!r}"
            else:
                state_text = r.expiry.state
                if r.expiry.state in (TIMED, STOPPING):
                    state_text += f" ({r.expiry.seconds_left:.1f}s left)"
                why = f"still {state_text} after the beat"
            r.error = BadResponse(why) if r.expiry is None and r.entry is not None else BeatError(why)
            log(action="verify", model=r.spec.key, result="error", error="not_pinned", message=why)
    return _finish(
        result,
        None,
        client=client,
        counts_before=counts_before,
        start=start,
        state=state,
        log=log,
        quiet=quiet and not posted,
    )


OVER_CAPACITY_RETRY = 3600


def _now(now_ns: Optional[int]) -> float:
    return time.time() if now_ns is None else now_ns / 1e9


def _over_capacity(
    mstate: Dict[str, Any], loaded: Dict[str, Dict[str, Any]], config: Config, now_ns: Optional[int]
) -> Optional[str]:
    """The configured model this one evicted last time, if that model is pinned now and the flag is recent.

    Loading a model that does not fit evicts another one, pinned or not (server/sched.go `findRunnerToUnload`);
    re-pinning the evicted one then evicts this one: a cold load every beat. The configuration order is the
    priority: a model whose load evicted a model listed before it is not loaded again for OVER_CAPACITY_RETRY s.
    """
    flag = mstate.get("over_capacity")
    if not isinstance(flag, dict) or _now(now_ns) - float(flag.get("since", 0)) > OVER_CAPACITY_RETRY:
        mstate.pop("over_capacity", None)
        return None
    victim = str(flag.get("evicted"))
    entry = loaded.get(victim)
    if entry is None or not is_pinned(_expiry(entry, now_ns), config):
        return None
    return victim


def _flag_over_capacity(
    result: BeatResult,
    before: Dict[str, Dict[str, Any]],
    *,
    after: Dict[str, Dict[str, Any]],
    state: State,
    config: Config,
    now_ns: Optional[int],
) -> None:
    keys = [r.spec.key for r in result.models]
    loaded_now = [i for i, r in enumerate(result.models) if r.action == "load" and r.error is None]
    for j, key in enumerate(keys):
        was_pinned = key in before and is_pinned(_expiry(before[key], now_ns), config)
        made_pinned = result.models[j].action in ("load", "repin") and result.models[j].error is None
        if key not in after and (was_pinned or made_pinned):
            for i in loaded_now:
                if i > j:
                    state.model(keys[i])["over_capacity"] = {"evicted": key, "since": _now(now_ns)}


def _finish(
    result: BeatResult,
    error: Optional[HeartbeatError],
    *,
    client: OllamaClient,
    counts_before: Dict[str, int],
    start: float,
    state: State,
    log: Log,
    quiet: bool = False,
) -> BeatResult:
    gets = client.counts.get("GET", 0) - counts_before.get("GET", 0)
    posts = client.counts.get("POST", 0) - counts_before.get("POST", 0)
    duration = time.monotonic() - start
    if error is not None:
        result.error = error
        result.exit_code = error.exit_code
        result.up = not isinstance(error, ServerUnreachable)
        fields: Dict[str, Any] = {"action": "beat", "result": "error", "exit": error.exit_code, "error": error.kind}
        if isinstance(error, ServerUnreachable):
            fields.update(attempts=error.attempts, retry_seconds=error.elapsed)
        log(**fields, gets=gets, posts=posts, duration=duration, message=str(error))
        return result
    pinned = sum(1 for r in result.models if r.pinned)
    result.exit_code = 0 if pinned == len(result.models) else 1
    if result.exit_code == 0:
        state.last_success = time.time()
    if not quiet or result.exit_code:
        log(
            action="beat",
            result="ok" if result.exit_code == 0 else "error",
            exit=result.exit_code,
            models=len(result.models),
            pinned=pinned,
            gets=gets,
            posts=posts,
            duration=duration,
        )
    return result
