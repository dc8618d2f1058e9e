"""Classify `expires_at` from `GET /api/ps` for the agent: a typed view of the one rule in the rulebook.

The rule itself lives once, in the collection's `module_utils/_expires.py` (loaded through `_rules`), shared with
the Ansible modules and tested on one table (`tests/data/rules.json`, `tests/data/ps_samples.json`):

- forever: at least 21 x 365 days ahead (format/time.go `humanTime`: `int(hours)/24/365 < -20`), or Go's zero time;
- stopping: not after now (an explicit unload sets `expiresAt = now`; a busy runner keeps a stale value);
- timed: otherwise, with `seconds_left`.

A model pinned with `keep_alive: -1` shows `now + MaxInt64 ns` (about 292 years ahead: server/sched.go
`loadedModels`). Malformed values raise ValueError naming the value.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ._rules import expires as _rule

__all__ = ["FOREVER", "STOPPING", "TIMED", "FOREVER_DAYS", "Expiry", "classify", "parse_expires_at"]

FOREVER: str = _rule.FOREVER
TIMED: str = _rule.TIMED
STOPPING: str = _rule.STOPPING
FOREVER_DAYS: int = _rule.FOREVER_THRESHOLD_NS // (86400 * _rule.NS_PER_SECOND)
ZERO_TIME_NS: int = _rule.ZERO_TIME_NS


class Expiry(NamedTuple):
    state: str  # forever | timed | stopping
    seconds_left: Optional[float]  # None when forever; 0.0 when stopping
    epoch_ns: int  # expires_at as nanoseconds since the Unix epoch


def parse_expires_at(text: object) -> int:
    """Return `text` (Go RFC 3339 with nanoseconds) as integer nanoseconds since the epoch; ValueError if invalid."""
    return int(_rule.parse_expires_at(text))


def classify(expires_at: object, now_ns: Optional[int] = None) -> Expiry:
    """Classify an `/api/ps` `expires_at` string at `now_ns` (default: the wall clock); ValueError if invalid."""
    c = _rule.classify(expires_at, now_ns)
    return Expiry(str(c["state"]), c["seconds_left"], int(c["epoch_ns"]))
