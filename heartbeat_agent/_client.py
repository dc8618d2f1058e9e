"""A small Ollama API client on httpx: `GET /api/ps` and load/re-pin requests, with bounded retries.

Every request has a timeout. Transport failures (connection refused or reset, a connection closed before a complete
answer, a read timeout on a cheap request) are retried with exponential backoff until `retry_budget` seconds have
passed, then raise ServerUnreachable (exit 3). A load that exceeds `load_timeout` is never retried: upstream aborts a
load when its client disconnects (llm/llama_server.go `WaitUntilRunning`), so a retry would only start it again.
"""

from __future__ import annotations

import ssl
import time
from typing import Any, Callable, Dict, List, Optional

import httpx

from . import __version__
from ._exceptions import BadResponse, LoadTimeout, ModelNotFound, RequestFailed, ServerUnreachable

__all__ = ["OllamaClient"]

_RETRIABLE = (httpx.TransportError,)  # ConnectError, ReadError, RemoteProtocolError, timeouts, ...


def _ssl_context(url: str) -> ssl.SSLContext:
    """TLS settings without certifi: plain http never uses them; https uses the system trust store.

    httpx's default (`verify=True`) calls `certifi.where()`, which extracts the CA bundle to a temporary file per
    process when running from a zipapp (a problem under PrivateTmp=/ProtectSystem=strict).
    """
    if url.startswith("https://"):
        return ssl.create_default_context()
    # Never used for http:// URLs; verifying and trusting nothing, so an https redirect fails closed.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _error_text(resp: httpx.Response) -> str:
    """Ollama errors are `{"error": "<text>"}` (docs/api/errors.mdx); routing errors are plain text."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    text = resp.text.strip()
    return text[:200] if text else f"HTTP {resp.status_code} with an empty body"


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
    ) -> None:
        self.url = url
        self.request_timeout = request_timeout
        self.load_timeout = load_timeout
        self.retry_budget = retry_budget
        self.sleep = sleep
        self.counts: Dict[str, int] = {"GET": 0, "POST": 0}
        self._client = httpx.Client(
            base_url=url,
            timeout=httpx.Timeout(request_timeout, connect=min(request_timeout, 3.0)),
            verify=_ssl_context(url),
            transport=transport,
            trust_env=False,  # no proxy from the environment between the agent and its local server
            headers={"User-Agent": f"keepwarm-heartbeat/{__version__}"},
            event_hooks={"request": [self._count]},
        )

    def _count(self, request: httpx.Request) -> None:
        self.counts[request.method] = self.counts.get(request.method, 0) + 1

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None, load: bool = False
    ) -> httpx.Response:
        start = time.monotonic()
        delay = 0.25
        attempt = 0
        timeout = httpx.Timeout(self.load_timeout, connect=min(self.request_timeout, 3.0)) if load else None
        while True:
            attempt += 1
            try:
                if timeout is None:
                    return self._client.request(method, path, json=body)
                return self._client.request(method, path, json=body, timeout=timeout)
            except httpx.ReadTimeout:
                if load:
                    raise LoadTimeout(
                        f"no answer within load_timeout={self.load_timeout:g}s; the load was aborted "
                        "(Ollama cancels a load whose client disconnects)"
                    ) from None
                error = f"no answer within request_timeout={self.request_timeout:g}s"
            except _RETRIABLE as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            elapsed = time.monotonic() - start
            if elapsed + delay > self.retry_budget:
                raise ServerUnreachable(
                    f"{method} {self.url}{path} failed: {error}", attempts=attempt, elapsed=elapsed
                ) from None
            self.sleep(delay)
            delay *= 2

    @staticmethod
    def _json(resp: httpx.Response, what: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            snippet = resp.content[:60]
            raise BadResponse(
                f"{what}: answer is not JSON (HTTP {resp.status_code}, {len(resp.content)} bytes: {snippet!r})"
            ) from None

    def ps(self) -> List[Dict[str, Any]]:
        """`GET /api/ps` (server/routes.go `PsHandler`): the loaded models."""
        resp = self._send("GET", "/api/ps")
        if resp.status_code != 200:
            raise RequestFailed(f"GET /api/ps: HTTP {resp.status_code}: {_error_text(resp)}", resp.status_code)
        data = self._json(resp, "GET /api/ps")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list) or not all(
            isinstance(m, dict) and isinstance(m.get("name"), str) for m in models
        ):
            raise BadResponse(f"GET /api/ps: unexpected body, no 'models' list of named entries: {str(data)[:80]!r}")
        return models

    def load(self, name: str, options: Dict[str, Any], keep_alive: Any) -> float:
        """Load or re-pin `name` with an empty request; return the seconds the request took.

        An empty prompt with a non-zero keep_alive goes through the scheduler: it cold-loads the model if needed,
        reloads it if the runner options differ, and sets the runner's keep_alive (server/routes.go
        `GenerateHandler`; server/sched.go `useLoadedRunner`, `needsReload`). The answer is one JSON object with
        `done_reason: "load"` whatever `stream` says.
        """
        body: Dict[str, Any] = {"model": name, "keep_alive": keep_alive}
        if options:
            body["options"] = options
        start = time.monotonic()
        resp = self._send("POST", "/api/generate", body, load=True)
        if resp.status_code == 400 and "does not support generate" in _error_text(resp):
            # Embedding-only models refuse generate (capability check, 400); /api/embed with no input schedules the
            # runner, applies keep_alive and answers with no embeddings (server/routes.go `EmbedHandler`, inferred).
            start = time.monotonic()
            resp = self._send("POST", "/api/embed", body, load=True)
        seconds = time.monotonic() - start
        if resp.status_code == 404:
            raise ModelNotFound(f"{name}: {_error_text(resp)} (pull it on this host first)")
        if resp.status_code != 200:
            raise RequestFailed(f"{name}: HTTP {resp.status_code}: {_error_text(resp)}", resp.status_code)
        data = self._json(resp, f"POST load {name}")
        if not isinstance(data, dict):
            raise BadResponse(f"POST load {name}: unexpected body {str(data)[:80]!r}")
        if isinstance(data.get("error"), str):
            raise RequestFailed(f"{name}: {data['error']}", resp.status_code)
        return seconds
