"""Parse and classify `expires_at` from `GET /api/ps`: the one Python implementation for the agent.

Ollama serialises `expires_at` with Go's `time.Time.MarshalJSON` (RFC 3339, up to 9 fraction digits with trailing
zeros trimmed, `Z` or the server's local `+hh:mm` offset). A model pinned with `keep_alive: -1` shows
`now + MaxInt64 ns` (about 292 years ahead: server/sched.go `loadedModels`), never the zero time; guides still cite
`0001-01-01T00:00:00Z` as "forever", so it is accepted as forever too. Classification (shared with the collection's
module_utils, tested on the same table `tests/data/ps_samples.json`):

- forever: more than 20 years (7300 days) ahead, or the zero time;
- stopping: not after now (cmd/cmd.go `ListRunningHandler` prints "Stopping..." for a past `expires_at`);
- timed: otherwise, with `seconds_left`.

The parse is a regular expression over the exact Go layout; `datetime.fromisoformat` is not used because it accepts
other layouts and, before Python 3.11, rejects 9-digit fractions and `Z`.
"""

from __future__ import annotations

import datetime
import re
import time
from typing import NamedTuple, Optional

__all__ = ["FOREVER", "STOPPING", "TIMED", "FOREVER_DAYS", "Expiry", "classify", "parse_expires_at"]

FOREVER = "forever"
TIMED = "timed"
STOPPING = "stopping"
FOREVER_DAYS = 7300
_NS = 1_000_000_000
_FOREVER_NS = FOREVER_DAYS * 86400 * _NS
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

_RFC3339 = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))",
    re.ASCII,
)

# Go's zero time.Time, 0001-01-01T00:00:00Z, in nanoseconds since the Unix epoch.
ZERO_TIME_NS = (datetime.date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86400 * _NS


class Expiry(NamedTuple):
    state: str  # forever | timed | stopping
    seconds_left: Optional[float]  # None when forever; 0.0 when stopping
    epoch_ns: int  # expires_at as nanoseconds since the Unix epoch


def parse_expires_at(text: object) -> int:
    """Return `text` (Go RFC 3339 with nanoseconds) as integer nanoseconds since the epoch; ValueError if invalid."""
    if not isinstance(text, str):
        raise ValueError(f"expires_at is not a string: {text!r}")
    m = _RFC3339.fullmatch(text)
    if not m:
        raise ValueError(f"expires_at is not an RFC 3339 timestamp: {text!r}")
    try:
        days = datetime.date(int(m["y"]), int(m["mo"]), int(m["d"])).toordinal() - _EPOCH_ORDINAL
    except ValueError as exc:
        raise ValueError(f"expires_at has an invalid date: {text!r} ({exc})") from None
    h, mi, s = int(m["h"]), int(m["mi"]), int(m["s"])
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"expires_at has an invalid time of day: {text!r}")
    offset = 0
    if m["sign"]:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            raise ValueError(f"expires_at has an invalid UTC offset: {text!r}")
        offset = (oh * 3600 + om * 60) * (1 if m["sign"] == "+" else -1)
    frac_ns = int((m["frac"] or "").ljust(9, "0"))
    return (days * 86400 + h * 3600 + mi * 60 + s - offset) * _NS + frac_ns


def classify(expires_at: object, now_ns: Optional[int] = None) -> Expiry:
    """Classify an `/api/ps` `expires_at` string at `now_ns` (default: the wall clock); ValueError if invalid."""
    epoch_ns = parse_expires_at(expires_at)
    if now_ns is None:
        now_ns = time.time_ns()
    if epoch_ns == ZERO_TIME_NS:
        return Expiry(FOREVER, None, epoch_ns)
    left = epoch_ns - now_ns
    if left <= 0:
        return Expiry(STOPPING, 0.0, epoch_ns)
    if left > _FOREVER_NS:
        return Expiry(FOREVER, None, epoch_ns)
    return Expiry(TIMED, left / _NS, epoch_ns)
