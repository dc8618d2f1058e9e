"""systemd's notification protocol (sd_notify(3)) with the standard library: READY=1, WATCHDOG=1, STATUS=, STOPPING=1.

The service manager passes `$NOTIFY_SOCKET` (an AF_UNIX datagram socket; a leading `@` means the abstract
namespace) to `Type=notify` units and `$WATCHDOG_USEC` when `WatchdogSec=` is set. Without them every call is a
no-op, so the agent runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
from typing import Dict, Optional

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, environ: Optional[Dict[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = None
        if path.startswith(("/", "@")):
            self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds: Optional[float] = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1e6
        self._sock: Optional[socket.socket] = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: object) -> bool:
        """Send `KEY=value` lines (READY=1, WATCHDOG=1, STATUS=...); False when there is no socket or it fails."""
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
