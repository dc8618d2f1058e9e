"""keepwarm heartbeat agent: keep Ollama models loaded and pinned (`keep_alive: -1`), repairing only what is wrong."""

__version__ = "0.1.0"

from ._config import Config, KeepAlive, ModelSpec, load_config, normalize_name, parse_keep_alive  # noqa: E402
from ._exceptions import (  # noqa: E402
    BadResponse,
    BeatError,
    ConfigError,
    HeartbeatError,
    LoadTimeout,
    ModelNotFound,
    RequestFailed,
    ServerUnreachable,
)
from ._expiry import Expiry, classify, parse_expires_at  # noqa: E402

__all__ = [
    "BadResponse",
    "BeatError",
    "Config",
    "ConfigError",
    "Expiry",
    "HeartbeatError",
    "KeepAlive",
    "LoadTimeout",
    "ModelNotFound",
    "ModelSpec",
    "RequestFailed",
    "ServerUnreachable",
    "__version__",
    "classify",
    "load_config",
    "normalize_name",
    "parse_expires_at",
    "parse_keep_alive",
]
