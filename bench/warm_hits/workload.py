"""The seeded client workload every warm_hits setup replays: the same requests at the same emulated times.

Clients come in sessions (one client kind, 1-5 requests 5-45 s apart), with exponential idle gaps between sessions
(mean 3 min, so some gaps outlast the server's 5 min default keep-alive). Each client kind sends what a real client
of that kind sends (the keep_alive rules are server/sched.go `useLoadedRunner`: a non-nil value replaces the
runner's sessionDuration, last writer wins; nil keeps it; api/types.go `Duration.UnmarshalJSON` for the values).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

PINNED = "llama3.2"
PINNED_KEY = "llama3.2:latest"
OTHER = "qwen2.5:7b"
OTHER_KEY = "qwen2.5:7b"
ABSENT = "absent"  # marker: the request has no keep_alive field (nil)


@dataclass(frozen=True)
class Client:
    name: str
    model: str
    keep_alive: Any  # ABSENT or the JSON value sent
    options: Dict[str, Any]
    weight: int
    what: str


CLIENTS = [
    Client("webui", PINNED, "5m", {}, 30, 'chat front end sending its default keep_alive "5m"'),
    Client("ide", PINNED, ABSENT, {}, 20, "editor plugin, no keep_alive (nil: keeps the runner's value)"),
    Client("batch", PINNED, "30s", {}, 10, 'batch script with keep_alive "30s"'),
    Client("pinned-cli", PINNED, -1, {}, 8, "well-behaved client sending keep_alive -1"),
    Client("oneshot", PINNED, 0, {}, 6, "job sending keep_alive 0 (answer, then unload: by design)"),
    Client("rag", PINNED, ABSENT, {"num_ctx": 8192}, 12, "RAG service sending options.num_ctx 8192"),
    Client("other-model", OTHER, ABSENT, {}, 8, f"occasional request for {OTHER} (one model slot)"),
]
BY_NAME = {c.name: c for c in CLIENTS}


@dataclass
class Request:
    index: int
    at: float  # emulated seconds after the start of the run
    client: str
    model: str
    keep_alive: Any
    options: Dict[str, Any] = field(default_factory=dict)

    def body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "model": self.model,
            "prompt": f"request {self.index}: why is the sky blue?",
            "stream": False,
            "options": dict(self.options, num_predict=8),  # num_predict is not a runner option: never reloads
        }
        if self.keep_alive != ABSENT:
            body["keep_alive"] = self.keep_alive
        return body

    def runner_options(self) -> Dict[str, Any]:
        """The options that decide reuse vs reload (server/sched.go needsReload compares Runner options)."""
        return {k: v for k, v in self.options.items() if k in ("num_ctx", "num_batch", "num_gpu", "num_thread")}

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def generate(seed: int, duration: float, first_at: float = 60.0, mean_idle: float = 180.0) -> List[Request]:
    rng = random.Random(seed)
    weights = [c.weight for c in CLIENTS]
    out: List[Request] = []
    t = first_at
    while t < duration:
        client = rng.choices(CLIENTS, weights)[0]
        for _ in range(rng.randint(1, 5)):
            if t >= duration:
                break
            out.append(Request(len(out), round(t, 3), client.name, client.model, client.keep_alive, client.options))
            t += rng.uniform(5.0, 45.0)
        t += rng.expovariate(1.0 / mean_idle)
    return out


def protectable(requests: List[Request]) -> List[bool]:
    """Which requests ANY heartbeat could serve warm: the setup-independent yardstick.

    A request is protectable when it asks for the pinned model and the workload itself did nothing since its
    previous request that a heartbeat cannot undo in advance:
    - the previous request was for the pinned model too (a request for another model evicts the pinned one under
      OLLAMA_MAX_LOADED_MODELS=1: server/sched.go processPending evicts whatever the cap says, pinned or not);
    - it did not send keep_alive 0 (server/sched.go: sessionDuration <= 0 unloads when the request ends);
    - its runner options equal the previous request's (server/sched.go needsReload: a different num_ctx reloads,
      whatever any heartbeat does).
    The first request counts as following a request with server-default options (a heartbeat can preload).
    Left to the heartbeat: client keep_alive values that would let the model expire ("5m", "30s"), idle gaps past
    the server default, and the heartbeat's own options.
    """
    flags: List[bool] = []
    prev: Optional[Request] = None
    for r in requests:
        if r.model != PINNED:
            flags.append(False)
        elif prev is None:
            flags.append(not r.runner_options())
        else:
            flags.append(prev.model == PINNED and prev.keep_alive != 0 and prev.runner_options() == r.runner_options())
        prev = r
    return flags
