"""The heartbeat: read `/api/ps`, repair only what is wrong, report.

Per configured model, from what `/api/ps` shows:

- loaded and pinned: send nothing;
- loaded but expiring (a client sent its own keep_alive, server/sched.go `useLoadedRunner`: last writer wins):
  re-pin with keep_alive -1 and options that match the runner (the rulebook's `repin_plan`: any difference in a
  runner option reloads the model, sched.go `needsReload`);
- loaded, but the re-pin did not show (ps still has the `expires_at` it had before the re-pin): the runner is busy
  with a long request and ps shows a stale expiry until it ends (sched.go `useLoadedRunner` stops the timer but keeps
  `expiresAt`). The pin is taken; it is reported as `pending` and never re-sent while the runner stays busy, so a
  request waiting for that runner's eviction (`processPending` sets its duration to 0 and waits without a timeout)
  gets its model when the long request ends (see the README: "Busy runners");
- not listed: it may be loading right now (sched.go puts a runner in `loaded` only once it is up), expired, unloaded by
  a client, evicted or never loaded: load it with the configured options, unless this agent's own load of it is
  still in flight, an over-capacity guard holds it back, or a failed load is backing off.

Loads and re-pins run in worker threads (one per model in flight), so a cold load that takes minutes never holds up
noticing and repairing the other models: `watch` keeps polling while they run; `once` waits for them at the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import _rules
from ._client import OllamaClient
from ._config import Config, ModelSpec
from ._exceptions import BadResponse, BeatError, HeartbeatError, ServerUnreachable
from ._expiry import FOREVER, STOPPING, TIMED, Expiry, classify
from ._rules import names as rule_names
from ._state import State

__all__ = ["BeatResult", "Keeper", "ModelResult", "is_pinned", "run_beat"]

Log = Callable[..., None]

OVER_CAPACITY_RETRY = 3600  # seconds an over-capacity guard holds at most before the agent tries again
BACKOFF_FIRST = 30.0  # seconds after a failed load; doubles per failure
BACKOFF_MAX = 1800.0
RUNNER_KEY_TTL = 3600.0  # seconds a model's runner key (from /api/show) is trusted
SETTLE_SECONDS = 1.0  # upstream updates expires_at just after answering (sched.go processCompleted): wait for it
RELOAD_SECONDS = 1.0  # a re-pin of a loaded runner answers in milliseconds; one that took this long loaded it


class ModelResult:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.action = "none"  # none | repin | load | skip | wait
        self.reason: Optional[str] = None
        self.load_seconds: Optional[float] = None
        self.error: Optional[HeartbeatError] = None
        self.entry: Optional[Dict[str, Any]] = None  # final /api/ps entry
        self.expiry: Optional[Expiry] = None
        self.pinned = False
        self.pending = False  # pinned, but ps shows it only when the runner's long request ends

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
            # expires_at as Unix seconds (the metrics' keepwarm_model_expiry_timestamp_seconds); None when not loaded
            "expires_at_seconds": None if self.expiry is None else self.expiry.epoch_ns / 1e9,
            "gpu": gpu,
        }


class BeatResult:
    def __init__(self, models: List[ModelResult]) -> None:
        self.models = models
        self.error: Optional[HeartbeatError] = None  # a beat-wide failure (unreachable, bad /api/ps)
        self.exit_code = 0
        self.up = True
        self.loaded_names: List[str] = []
        self.inflight = 0


def _expiry(entry: Optional[Dict[str, Any]], now_ns: Optional[int]) -> Optional[Expiry]:
    if entry is None:
        return None
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


def _now(now_ns: Optional[int]) -> float:
    return time.time() if now_ns is None else now_ns / 1e9


class _Job:
    """One load or re-pin in a worker thread."""

    def __init__(self, spec: ModelSpec, action: str, reason: str, options: Dict[str, Any], before: Dict[str, Any]):
        self.spec = spec
        self.action = action
        self.reason = reason
        self.options = options
        self.before = before  # what the beat that started it saw: ps names, entries, expiries
        self.started = time.monotonic()
        self.seconds: Optional[float] = None
        self.preloaded: set = set()  # models this agent loaded just before (same queue), pinned forever by it
        self.fields: Dict[str, Any] = {}  # details of the start line, repeated on the result line
        self.error: Optional[HeartbeatError] = None
        self.thread: Optional[threading.Thread] = None

    @property
    def done(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()


class Keeper:
    """The agent's loop state: the client, the config, the state file and the repairs in flight."""

    def __init__(self, client: OllamaClient, config: Config, state: State, log: Log) -> None:
        self.client = client
        self.config = config
        self.state = state
        self.log = log
        self.jobs: Dict[str, _Job] = {}
        self._last_load: Optional[_Job] = None

    # ---- name resolution (rulebook: names.find_runner, runner_key from /api/show) ----

    def _runner_key(self, name: str) -> Optional[str]:
        """The scheduler's key for `name` (rulebook `names.runner_key` of its /api/show), kept RUNNER_KEY_TTL s in the
        state so `once` asks the server only when a name it has not resolved lately shows up."""
        now = time.time()
        hit = self.state.runner_keys.get(name.lower())
        if hit is not None and now - float(hit[0]) < RUNNER_KEY_TTL:
            return hit[1]
        try:
            show = self.client.show(name)
            key = rule_names.runner_key(show=show) if show is not None else None
        except ServerUnreachable:
            raise
        except HeartbeatError:
            key = None
        self.state.runner_keys[name.lower()] = [now, key]
        return key

    def find(self, ps: List[Dict[str, Any]], spec: ModelSpec) -> Optional[Dict[str, Any]]:
        """The /api/ps entry whose runner serves `spec`: by name, else by blob when another name is listed."""
        key_of = self._runner_key if any(not self._named(e) for e in ps) else None
        return rule_names.find_runner(ps, spec.name, key_of=key_of)

    @staticmethod
    def wrong_digest(spec: ModelSpec, entry: Optional[Dict[str, Any]]) -> Optional[str]:
        """Why the loaded runner is not the configured `name@sha256:<digest>` (None when it is, or none is given):
        the digest is compared, never dropped (rulebook `names.split_digest`, `digest_matches`)."""
        _base, digest = rule_names.split_digest(spec.name)
        if digest is None or entry is None or rule_names.digest_matches(digest, entry.get("digest")):
            return None
        return (
            f"loaded with digest {str(entry.get('digest'))[:12]}, not the configured {digest[:12]}: another version "
            "of the model is loaded (pull the configured one, or change the digest); not re-pinned"
        )

    def _named(self, entry: Dict[str, Any]) -> bool:
        """True when the entry's name is one of the configured names (then no blob lookup is needed for it)."""
        key = rule_names.name_key(str(entry.get("name") or ""))
        return any(rule_names.name_key(rule_names.split_digest(m.name)[0]) == key for m in self.config.models)

    # ---- workers ----

    def _start(self, job: _Job) -> None:
        """Run `job` in its own thread. Loads queue behind the previous load (the server runs one load at a time,
        server/sched.go `processPending`, so nothing is lost) and keep the configured order, which is the priority
        when the server cannot keep every model; re-pins of loaded runners skip the queue, like upstream."""
        previous = self._last_load if job.action == "load" else None

        def work() -> None:
            try:
                if previous is not None and previous.thread is not None:
                    previous.thread.join()
                    job.preloaded = set(previous.preloaded) | ({previous.spec.key} if previous.error is None else set())
                job.started = time.monotonic()
                job.seconds = self.client.load(job.spec.name, job.options, self.config.keep_alive.wire)
            except HeartbeatError as exc:
                job.error = exc
            except Exception as exc:  # noqa: BLE001 - a worker must report, never die silently
                job.error = BeatError(f"{type(exc).__name__}: {exc}")

        job.thread = threading.Thread(target=work, name=f"{job.action}:{job.spec.key}", daemon=True)
        self.jobs[job.spec.key] = job
        if job.action == "load":
            self._last_load = job
        job.thread.start()

    def wait_all(self, stop: Optional[threading.Event] = None) -> None:
        for job in list(self.jobs.values()):
            while job.thread is not None and job.thread.is_alive():
                job.thread.join(0.2)
                if stop is not None and stop.is_set():
                    return

    @property
    def running(self) -> int:
        return sum(1 for job in self.jobs.values() if not job.done)

    def _harvest(self) -> List[_Job]:
        finished = [job for job in self.jobs.values() if job.done]
        for job in finished:
            del self.jobs[job.spec.key]
        return finished

    # ---- one beat ----

    def beat(self, *, wait: bool, quiet: bool = False, now_ns: Optional[int] = None) -> BeatResult:
        """One beat. `wait`: await this beat's repairs and judge them (`once`); else leave them running (`watch`).
        `quiet`: no `none` lines and no `beat` line when nothing was done (watch, while all is well)."""
        self._quiet_none = quiet
        start = time.monotonic()
        counts_before = dict(self.client.counts)
        result = BeatResult([ModelResult(spec) for spec in self.config.models])
        finished = self._harvest()
        try:
            ps = self.client.ps()
        except HeartbeatError as exc:
            self._report_jobs(finished, None, now_ns)
            return self._finish(result, exc, counts_before, start)
        try:
            self._report_jobs(finished, ps, now_ns)
            self._repair(result, ps, now_ns)
            if wait and self.jobs:
                self.wait_all()
                finished = self._harvest()
                ps = self.client.ps()
                if any(j.action == "repin" for j in finished):
                    ps = self._settle(ps, finished, now_ns)
                self._report_jobs(finished, ps, now_ns)
                for r in result.models:
                    job = next((j for j in finished if j.spec.key == r.spec.key), None)
                    if job is not None and job.error is not None:
                        r.error = job.error
                lost = next((j.error for j in finished if isinstance(j.error, ServerUnreachable)), None)
                if lost is not None:
                    return self._finish(result, lost, counts_before, start)
            self._verify(result, ps, now_ns, final=wait)
        except HeartbeatError as exc:  # /api/ps (or /api/show) failed mid-beat: the whole beat reports it
            return self._finish(result, exc, counts_before, start)
        result.inflight = len(self.jobs)
        return self._finish(result, None, counts_before, start, quiet=quiet and not finished and not self._posted)

    _posted = False

    def _settle(self, ps: List[Dict[str, Any]], finished: List[_Job], now_ns: Optional[int]) -> List[Dict[str, Any]]:
        """After a re-pin, wait (at most SETTLE_SECONDS) for ps to show it: upstream sets expiresAt just after the
        answer (sched.go `processCompleted`); a value still unchanged after that means the runner is busy."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            stale = False
            for job in finished:
                if job.action != "repin" or job.error is not None:
                    continue
                entry = self.find(ps, job.spec)
                if entry is not None and entry.get("expires_at") == job.before.get("expires_at"):
                    stale = True
            if not stale or time.monotonic() >= deadline:
                return ps
            time.sleep(0.05)
            ps = self.client.ps()

    def _repair(self, result: BeatResult, ps: List[Dict[str, Any]], now_ns: Optional[int]) -> None:
        self._posted = False
        config, state, log = self.config, self.state, self.log
        names_now = [m["name"] for m in ps]
        arrived = [n for n in names_now if n not in state.loaded]
        for r in result.models:
            spec = r.spec
            mstate = state.model(spec.key)
            if spec.key in self.jobs:
                r.action = "wait"  # this agent's own load/re-pin is in flight: never a second one
                continue
            entry = self.find(ps, spec)
            wrong = self.wrong_digest(spec, entry)
            if wrong is not None:
                r.action, r.reason, r.error = "skip", "digest", BeatError(wrong)
                log(action="skip", model=spec.key, reason="digest", result="error", message=wrong)
                continue
            if entry is not None:
                mstate.pop("backoff", None)
                exp = _expiry(entry, now_ns)
                busy = mstate.get("busy")
                if is_pinned(exp, config):
                    mstate.pop("busy", None)
                    if not self._quiet_none:
                        log(action="none", model=spec.key, state=exp.state if exp else "invalid")
                    continue
                if isinstance(busy, dict) and busy.get("expires_at") == entry.get("expires_at"):
                    # The re-pin was taken, but the runner is still busy: ps shows the stale expiry until its
                    # request ends. Re-sending would change nothing and would put the pin back on a runner that a
                    # waiting request may have marked for eviction (sched.go processPending).
                    r.action, r.reason, r.pending = "wait", "busy", True
                    if not busy.get("reported"):
                        busy["reported"] = True
                        log(
                            action="repin",
                            model=spec.key,
                            result="pending",
                            reason="busy",
                            expires_at=entry.get("expires_at"),
                            message="the runner is busy with a long request: /api/ps shows its old expiry until the "
                            "request ends; the pin applies then and is not re-sent meanwhile",
                        )
                    continue
                mstate.pop("busy", None)
                prev_ctx = mstate.get("context_length")
                ctx = entry.get("context_length")
                # A client request with other runner options reloads the model (sched.go needsReload) and the new
                # runner takes that client's keep_alive: seen here as a changed context_length.
                reason = "reloaded" if prev_ctx is not None and ctx is not None and ctx != prev_ctx else "expiring"
                plan = _rules.runner.repin_plan(entry, dict(spec.options))  # loaded on the first re-pin
                before = {"expires_at": entry.get("expires_at"), "ps": names_now, "expiry": exp, "entry": entry}
                r.action, r.reason = "repin", reason
                self._posted = True
                job = _Job(spec, "repin", reason, plan["options"], before)
                job.fields = {
                    "state": exp.state if exp else "invalid",
                    "seconds_left": exp.seconds_left if exp and exp.state != FOREVER else None,
                    "expires_at": entry.get("expires_at"),
                }
                self._start(job)
                log(action="start", job="repin", model=spec.key, reason=reason, **job.fields)
                continue
            # Not listed.
            if self._guarded(spec, mstate, ps, now_ns, r):
                continue
            backoff = mstate.get("backoff")
            if isinstance(backoff, dict) and _now(now_ns) < float(backoff.get("until", 0)):
                r.action, r.reason = "skip", "backoff"
                r.error = BeatError(
                    f"not loaded: the last {backoff.get('failures', 1)} load(s) failed ({backoff.get('error')}); "
                    f"next try in {float(backoff['until']) - _now(now_ns):.0f}s"
                )
                log(action="skip", model=spec.key, reason="backoff", result="error", message=str(r.error))
                continue
            was_loaded = any(rule_names.same_model(n, spec.name) for n in state.loaded) or bool(mstate.get("seen"))
            busy = mstate.pop("busy", None)
            if busy is not None:
                # It vanished when its long request ended: a request waiting for its slot evicted it (sched.go
                # processPending set its duration to 0), or that request's own keep_alive 0.
                reason = "evicted"
                note = "unloaded when its long request ended (a request waiting for the runner's slot, or keep_alive 0)"
            elif was_loaded and arrived:
                reason, note = "evicted", None
            else:
                reason, note = "unloaded", None
            r.action, r.reason = "load", reason
            self._posted = True
            before = {"ps": names_now, "entries": {m["name"]: m for m in ps}}
            job = _Job(spec, "load", reason, dict(spec.options), before)
            job.fields = {"loaded_instead": ",".join(arrived) if reason == "evicted" and arrived else None}
            self._start(job)
            log(action="start", job="load", model=spec.key, reason=reason, message=note, **job.fields)

    _quiet_none = False

    def _guarded(
        self,
        spec: ModelSpec,
        mstate: Dict[str, Any],
        ps: List[Dict[str, Any]],
        now_ns: Optional[int],
        r: ModelResult,
    ) -> bool:
        """True when this model stays unloaded because loading it evicted an earlier-listed configured model.

        Loading a model that does not fit evicts another one, pinned or not (server/sched.go `findRunnerToUnload`);
        re-pinning the evicted one then evicts this one: a cold load every beat. The configuration order is the
        priority. The guard clears when the capacity is seen again (more models listed than when the eviction was
        seen, or both listed together), when the evicted model is no longer pinned, or after OVER_CAPACITY_RETRY s.
        """
        flag = mstate.get("over_capacity")
        if not isinstance(flag, dict):
            return False
        victim = str(flag.get("evicted"))
        victim_spec = next((m for m in self.config.models if m.key == victim), None)
        victim_entry = self.find(ps, victim_spec) if victim_spec is not None else None
        expired = _now(now_ns) - float(flag.get("since", 0)) > OVER_CAPACITY_RETRY
        capacity_seen = len(ps) > int(flag.get("capacity", 0) or 0)
        if (
            expired
            or capacity_seen
            or victim_entry is None
            or not is_pinned(_expiry(victim_entry, now_ns), self.config)
        ):
            mstate.pop("over_capacity", None)
            why = "retry time passed" if expired else "capacity seen again" if capacity_seen else "evicted model gone"
            self.log(action="guard", model=spec.key, result="cleared", reason="over_capacity", message=why)
            return False
        r.action, r.reason = "skip", "over_capacity"
        r.error = BeatError(
            f"not loaded: loading it evicted {victim} (listed before it); the server keeps {flag.get('capacity')} "
            f"model(s) loaded, fewer than configured (retried after {OVER_CAPACITY_RETRY}s, or at once when "
            "capacity is seen again)"
        )
        self.log(action="skip", model=spec.key, reason="over_capacity", result="error", message=str(r.error))
        return True

    def _report_jobs(self, finished: List[_Job], ps: Optional[List[Dict[str, Any]]], now_ns: Optional[int]) -> None:
        """Log and count finished loads/re-pins; with the ps read after them, spot evictions they caused."""
        state, log = self.state, self.log
        for job in finished:
            spec, mstate = job.spec, state.model(job.spec.key)
            if job.error is not None:
                if isinstance(job.error, ServerUnreachable):
                    log(action=job.action, model=spec.key, reason=job.reason, result="error", error=job.error.kind,
                        message=str(job.error))  # fmt: skip
                    continue
                failures = int((mstate.get("backoff") or {}).get("failures", 0)) + 1
                delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                mstate["backoff"] = {"failures": failures, "until": _now(now_ns) + delay, "error": job.error.kind}
                log(
                    action=job.action,
                    model=spec.key,
                    reason=job.reason,
                    result="error",
                    error=job.error.kind,
                    retry_in=delay,
                    message=str(job.error),
                )
                continue
            mstate.pop("backoff", None)
            entry = self.find(ps, spec) if ps is not None else None
            reloaded = False
            if job.action == "repin":
                prev = job.before.get("entry") or {}
                changed = entry is not None and (
                    entry.get("context_length") != prev.get("context_length") or entry.get("size") != prev.get("size")
                )
                reloaded = changed or (job.seconds or 0) >= RELOAD_SECONDS
                if entry is not None and entry.get("expires_at") == job.before.get("expires_at"):
                    mstate["busy"] = {"expires_at": entry.get("expires_at")}
            if job.action == "load" or reloaded:
                mstate["cold_loads"] += 1
                mstate["last_load_seconds"] = round(job.seconds or 0.0, 6)
            mstate["repairs"][job.reason] += 1
            log(
                action=job.action,
                model=spec.key,
                reason=job.reason,
                result="ok",
                **job.fields,
                reload=1 if reloaded else None,
                load_seconds=job.seconds if job.action == "load" or reloaded else None,
                request_seconds=job.seconds if job.action == "repin" and not reloaded else None,
                num_ctx=job.options.get("num_ctx") if job.action == "repin" else None,
                message="the re-pin reloaded the runner (a client loaded it with runner options /api/ps does not show)"
                if reloaded
                else None,
            )
            if job.action == "load" and ps is not None:
                self._spot_eviction(job, ps, now_ns)

    def _spot_eviction(self, job: _Job, ps: List[Dict[str, Any]], now_ns: Optional[int]) -> None:
        """Did this load evict an earlier-listed configured model? Only a model that could not have expired counts:
        one this agent loaded just before in the same queue (pinned by it), or one pinned forever (or timed with
        more time left than the load took) when the load was queued, that is absent now while this one is loaded."""
        entries_before: Dict[str, Dict[str, Any]] = job.before.get("entries", {})
        order = [m.key for m in self.config.models]
        mine = order.index(job.spec.key)
        if self.find(ps, job.spec) is None:
            return
        elapsed = time.monotonic() - job.started
        for victim in self.config.models[:mine]:
            if victim.key in self.jobs or self.find(ps, victim) is not None:
                continue
            if victim.key not in job.preloaded:
                before = self.find(list(entries_before.values()), victim)
                exp = _expiry(before, now_ns)
                if exp is None or (
                    exp.state != FOREVER and (exp.state == STOPPING or (exp.seconds_left or 0) <= elapsed + 1)
                ):
                    continue  # not loaded before, or could have expired meanwhile: no proof of an eviction
            self.state.model(job.spec.key)["over_capacity"] = {
                "evicted": victim.key,
                "since": _now(now_ns),
                "capacity": len(ps),
            }
            self.log(
                action="guard",
                model=job.spec.key,
                result="set",
                reason="over_capacity",
                evicted=victim.key,
                capacity=len(ps),
                message=f"loading it evicted {victim.key} (listed before it): it stays unloaded until capacity is seen",
            )
            return

    def _verify(self, result: BeatResult, ps: List[Dict[str, Any]], now_ns: Optional[int], *, final: bool) -> None:
        state, log = self.state, self.log
        result.loaded_names = [m["name"] for m in ps]
        own_loads = sum(1 for r in result.models if r.action == "load")
        for r in result.models:
            r.entry = self.find(ps, r.spec)
            r.expiry = _expiry(r.entry, now_ns)
            r.pinned = is_pinned(r.expiry, self.config)
            mstate = state.model(r.spec.key)
            mstate["seen"] = r.entry is not None
            if r.entry is not None and isinstance(r.entry.get("context_length"), int):
                mstate["context_length"] = r.entry["context_length"]
            if not r.pinned and isinstance(mstate.get("busy"), dict) and r.entry is not None:
                if mstate["busy"].get("expires_at") == r.entry.get("expires_at"):
                    r.pending = True
                    if final and r.error is None:
                        log(
                            action="repin",
                            model=r.spec.key,
                            result="pending",
                            reason="busy",
                            expires_at=r.entry.get("expires_at"),
                            message="the runner is busy with a long request: /api/ps shows its old expiry until "
                            "the request ends; the pin applies then",
                        )
                        mstate["busy"]["reported"] = True
            if r.pinned and self.wrong_digest(r.spec, r.entry) is not None:
                r.pinned = False
            if r.pinned or r.pending or r.error is not None:
                continue
            if r.spec.key in self.jobs:
                continue  # watch: still loading; judged when it ends
            if not final:
                if r.action in ("repin", "load"):
                    continue  # watch: started this poll, judged at the next one
            if r.entry is None:
                why = "not loaded after the beat"
                others_loaded = own_loads - (1 if r.action == "load" else 0)
                if r.action in ("load", "repin") and others_loaded > 0:
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
        state.loaded = result.loaded_names

    def _finish(
        self,
        result: BeatResult,
        error: Optional[HeartbeatError],
        counts_before: Dict[str, int],
        start: float,
        *,
        quiet: bool = False,
    ) -> BeatResult:
        client, state, log = self.client, self.state, self.log
        gets = client.counts.get("GET", 0) - counts_before.get("GET", 0)
        posts = client.counts.get("POST", 0) - counts_before.get("POST", 0)
        shows = (client.counts.get("SHOW", 0) - counts_before.get("SHOW", 0)) or None
        duration = time.monotonic() - start
        if error is not None:
            result.error = error
            result.exit_code = error.exit_code
            result.up = not isinstance(error, ServerUnreachable)
            fields: Dict[str, Any] = {"action": "beat", "result": "error", "exit": error.exit_code, "error": error.kind}
            if isinstance(error, ServerUnreachable):
                fields.update(attempts=error.attempts, retry_seconds=error.elapsed)
            log(**fields, gets=gets, posts=posts, shows=shows, duration=duration, message=str(error))
            return result
        pinned = sum(1 for r in result.models if r.pinned or r.pending)
        failed = sum(1 for r in result.models if r.error is not None)
        result.exit_code = 0 if failed == 0 and pinned + self._inflight(result) == len(result.models) else 1
        if result.exit_code == 0 and pinned == len(result.models):
            state.last_success = time.time()
        if not quiet or result.exit_code:
            log(
                action="beat",
                result="ok" if result.exit_code == 0 else "error",
                exit=result.exit_code,
                models=len(result.models),
                pinned=pinned,
                loading=self._inflight(result) or None,
                gets=gets,
                posts=posts,
                shows=shows,
                duration=duration,
            )
        return result

    def _inflight(self, result: BeatResult) -> int:
        return sum(1 for r in result.models if r.spec.key in self.jobs and not (r.pinned or r.pending))


def run_beat(
    client: OllamaClient, config: Config, state: State, log: Log, *, quiet: bool = False, now_ns: Optional[int] = None
) -> BeatResult:
    """One complete beat (`once`): repairs run in parallel workers and are awaited; then /api/ps is read again."""
    keeper = Keeper(client, config, state, log)
    return keeper.beat(wait=True, quiet=quiet, now_ns=now_ns)
