"""The agent's exception hierarchy. Each class carries the process exit code a systemd unit acts on.

HeartbeatError
 ├── ConfigError          exit 2: bad configuration (names the field)
 ├── ServerUnreachable    exit 3: no answer after bounded retries
 └── BeatError            exit 1: the server answered, but a model could not be pinned or checked
      ├── BadResponse       non-JSON, truncated or unexpected body
      ├── ModelNotFound     404 from /api/generate: the model is not pulled
      ├── LoadTimeout       the load took longer than load_timeout (upstream then aborts the load)
      └── RequestFailed     any other error status, with the server's own error text
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "BadResponse",
    "BeatError",
    "ConfigError",
    "HeartbeatError",
    "LoadTimeout",
    "ModelNotFound",
    "RequestFailed",
    "ServerUnreachable",
]


class HeartbeatError(Exception):
    """Base class: an expected failure, reported as one log line and an exit code, never a traceback."""

    exit_code = 1
    kind = "error"


class ConfigError(HeartbeatError):
    exit_code = 2
    kind = "config"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ServerUnreachable(HeartbeatError):
    exit_code = 3
    kind = "unreachable"

    def __init__(self, message: str, attempts: int = 1, elapsed: float = 0.0) -> None:
        self.attempts = attempts
        self.elapsed = elapsed
        super().__init__(message)


class BeatError(HeartbeatError):
    exit_code = 1


class BadResponse(BeatError):
    kind = "bad_response"


class ModelNotFound(BeatError):
    kind = "not_found"


class LoadTimeout(BeatError):
    kind = "load_timeout"


class RequestFailed(BeatError):
    kind = "request_failed"

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        self.status = status
        super().__init__(message)
