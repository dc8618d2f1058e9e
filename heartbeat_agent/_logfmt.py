"""One `key=value` line per action on stdout (logfmt), so journald keeps stable, greppable records."""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Optional, TextIO

__all__ = ["Logger", "format_line"]

_BARE = re.compile(r"[A-Za-z0-9_.:/@+-]+", re.ASCII)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        text = f"{value:.3f}" if math.isfinite(value) else str(value)
    else:
        text = str(value)
    if _BARE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def format_line(**fields: Any) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items() if value is not None)


class Logger:
    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream

    def __call__(self, **fields: Any) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(format_line(**fields) + "\n")
        stream.flush()
