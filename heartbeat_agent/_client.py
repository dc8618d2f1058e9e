"""A small Ollama API client on httpx: `GET /api/ps`, `GET /api/tags` and load/re-pin requests, bounded retries.

Every request has a **total** deadline, not a per-read one: the body is read in chunks and the request is abandoned
once `request_timeout` (a load: `load_timeout`) has passed since it was sent, so a server (or proxy) that trickles a
byte every few seconds cannot hold a beat. Transport failures (connection refused or reset, a connection closed
before a complete answer, a timeout on a cheap request) and the 502/503/504 a reverse proxy answers while Ollama
restarts are retried with exponential backoff until `retry_budget` seconds have passed, then raise
ServerUnreachable (exit 3). A load that exceeds `load_timeout` is never retried: upstream aborts a load when its client
disconnects (llm/llama_server.go `WaitUntilRunning`), so a retry would only start it again.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import httpx

from . import __version__
from ._config import redact_url
from ._exceptions import BadResponse, LoadTimeout, ModelNotFound, RequestFailed, ServerUnreachable
from ._rules import urls

__all__ = ["Answer", "OllamaClient", "redact_url"]

_RETRIABLE = (httpx.TransportError,)  # ConnectError, ReadError, RemoteProtocolError, timeouts, ...
# Statuses a reverse proxy (nginx, a load balancer) answers while Ollama restarts; 503 is also Ollama's own
# "server busy, please try again" when its queue is full (server/routes.go handleScheduleError).
RETRY_STATUSES = (502, 503, 504)


def _ssl_context(url: str, validate_certs: bool = True, ca_path: Optional[str] = None) -> Any:
    """TLS settings without certifi: plain http never uses them; https uses the system trust store.

    httpx's default (`verify=True`) calls `certifi.where()`, which extracts the CA bundle to a temporary file per
    process when running from a zipapp (a problem under PrivateTmp=/ProtectSystem=strict).
    """
    if url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=ca_path)  # ca_path: a private CA instead of the system store
        if not validate_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
    # Never used for http:// URLs; verifying and trusting nothing, so an https redirect fails closed.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class Answer(NamedTuple):
    """A complete HTTP answer: status, body bytes, and the seconds the (last) attempt took."""

    status: int
    content: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def _error_text(resp: Answer) -> str:
    """Ollama errors are `{"error": "<text>"}` (docs/api/errors.mdx); routing errors are plain text."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    text = resp.text.strip()
    return text[:200] if text else f"HTTP {resp.status} with an empty body"


class _Deadline(Exception):
    pass


class OllamaClient:
    def __init__(
        self,
        url: str,
        *,
        request_timeout: float = 10.0,
        load_timeout: float = 600.0,
        retry_budget: float = 30.0,
        transport: Optional[httpx.BaseTransport] = None,
        sleep: Callable[[float], None] = time.sleep,
        headers: Optional[Dict[str, str]] = None,
        validate_certs: bool = True,
        ca_path: Optional[str] = None,
        use_proxy: bool = True,
        environ: Optional[Dict[str, str]] = None,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.request_timeout = request_timeout
        self.load_timeout = load_timeout
        self.retry_budget = retry_budget
        self.sleep = sleep
        self.counts: Dict[str, int] = {"GET": 0, "POST": 0, "SHOW": 0}
        # The one proxy rule (rules urls.proxy_for, Go's useProxy): loopback never, no_proxy honoured; httpx's own
        # environment handling (trust_env) stays off because it would send loopback calls to a host-wide proxy.
        self.proxy, self.proxy_variable = urls.proxy_for(url, environ) if use_proxy else (None, None)
        self._client = httpx.Client(
            base_url=url,
            timeout=httpx.Timeout(request_timeout, connect=min(request_timeout, 3.0)),
            verify=_ssl_context(url, validate_certs, ca_path),
            transport=transport,
            trust_env=False,
            proxy=self.proxy,
            headers={"User-Agent": f"keepwarm-heartbeat/{__version__}", **(headers or {})},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _attempt(self, method: str, path: str, body: Optional[Dict[str, Any]], budget: float, kind: str) -> Answer:
        """One request with a total deadline of `budget` seconds (headers, then the body chunk by chunk)."""
        start = time.monotonic()
        deadline = start + budget
        timeout = httpx.Timeout(budget, connect=min(budget, self.request_timeout, 3.0))
        request = self._client.build_request(method, path, json=body, timeout=timeout)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        resp = self._client.send(request, stream=True)
        try:
            chunks = []
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Deadline()
            return Answer(resp.status_code, b"".join(chunks), time.monotonic() - start)
        finally:
            resp.close()

    def _send(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None, load: bool = False, kind: str = ""
    ) -> Answer:
        """`kind` names the counter (default the method; /api/show counts as SHOW, not as a repair POST)."""
        start = time.monotonic()
        delay = 0.25
        attempt = 0
        budget = self.load_timeout if load else self.request_timeout
        while True:
            attempt += 1
            try:
                answer = self._attempt(method, path, body, budget, kind or method)
                if answer.status not in RETRY_STATUSES:
                    return answer
                error = f"HTTP {answer.status}: {_error_text(answer)}"
            except (httpx.TimeoutException, _Deadline) as exc:
                if load and not isinstance(exc, httpx.ConnectTimeout):
                    raise LoadTimeout(
                        f"no complete answer within load_timeout={self.load_timeout:g}s; the load was aborted "
                        "(Ollama cancels a load whose client disconnects)"
                    ) from None
                error = f"no complete answer within request_timeout={budget:g}s"
            except _RETRIABLE as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            elapsed = time.monotonic() - start
            if elapsed + delay > self.retry_budget:
                raise ServerUnreachable(
                    f"{method} {self.shown_url}{path} failed: {error}", attempts=attempt, elapsed=elapsed
                ) from None
            self.sleep(delay)
            delay *= 2

    @staticmethod
    def _json(resp: Answer, what: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            snippet = resp.content[:60]
            raise BadResponse(
                f"{what}: answer is not JSON (HTTP {resp.status}, {len(resp.content)} bytes: {snippet!r})"
            ) from None

    def _models(self, path: str) -> List[Dict[str, Any]]:
        resp = self._send("GET", path)
        if resp.status != 200:
            raise RequestFailed(f"GET {path}: HTTP {resp.status}: {_error_text(resp)}", resp.status)
        data = self._json(resp, f"GET {path}")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list) or not all(
            isinstance(m, dict) and isinstance(m.get("name"), str) for m in models
        ):
            raise BadResponse(f"GET {path}: unexpected body, no 'models' list of named entries: {str(data)[:80]!r}")
        return models

    def ps(self) -> List[Dict[str, Any]]:
        """`GET /api/ps` (server/routes.go `PsHandler`): the loaded models (a model still loading is not listed)."""
        return self._models("/api/ps")

    def tags(self) -> List[Dict[str, Any]]:
        """`GET /api/tags` (server/routes.go `ListHandler`): the pulled models with their digests."""
        return self._models("/api/tags")

    def show(self, name: str) -> Optional[Dict[str, Any]]:
        """`POST /api/show` (server/routes.go `ShowHandler`): the model's details, None when it is not pulled."""
        resp = self._send("POST", "/api/show", {"model": name}, kind="SHOW")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RequestFailed(f"POST /api/show {name}: HTTP {resp.status}: {_error_text(resp)}", resp.status)
        data = self._json(resp, f"POST /api/show {name}")
        return data if isinstance(data, dict) else None

    def load(self, name: str, options: Dict[str, Any], keep_alive: Any) -> float:
        """Load or re-pin `name` with an empty request; return the seconds the successful attempt took.

        An empty prompt with a non-zero keep_alive goes through the scheduler: it cold-loads the model if needed,
        reloads it if the runner options differ, and sets the runner's keep_alive (server/routes.go
        `GenerateHandler`; server/sched.go `useLoadedRunner`, `needsReload`). The answer is one JSON object with
        `done_reason: "load"` whatever `stream` says. Time spent on retries is not counted.
        """
        body: Dict[str, Any] = {"model": name, "keep_alive": keep_alive}
        if options:
            body["options"] = options
        resp = self._send("POST", "/api/generate", body, load=True)
        if resp.status == 400 and "does not support generate" in _error_text(resp):
            # Embedding-only models refuse generate (capability check, 400); /api/embed with no input schedules the
            # runner, applies keep_alive and answers with no embeddings (server/routes.go `EmbedHandler`, inferred).
            resp = self._send("POST", "/api/embed", body, load=True)
        if resp.status == 404:
            raise ModelNotFound(f"{name}: {_error_text(resp)} (pull it on this host first)")
        if resp.status != 200:
            raise RequestFailed(f"{name}: HTTP {resp.status}: {_error_text(resp)}", resp.status)
        data = self._json(resp, f"POST load {name}")
        if not isinstance(data, dict):
            raise BadResponse(f"POST load {name}: unexpected body {str(data)[:80]!r}")
        if isinstance(data.get("error"), str):
            raise RequestFailed(f"{name}: {data['error']}", resp.status)
        return resp.seconds
