# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: /api/ps expires_at parsing and the one classification.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._expires
#
# RULEBOOK MODULE: standard library only, no imports of other module_utils. The heartbeat agent loads this same
# file (heartbeat_agent/_rules.py; its zipapp vendors a copy), so both classify expires_at by this one rule.
# Stable API (keep these names and signatures):
#   FOREVER, TIMED, STOPPING                      the three states (str)
#   NS_PER_SECOND, ZERO_TIME_NS, FOREVER_THRESHOLD_NS
#   class ExpiresAtError(ValueError)
#   parse_expires_at(value) -> int                ns since the Unix epoch; raises ExpiresAtError
#   now_ns() -> int
#   classify(expires_at, now=None) -> dict        {"state", "seconds_left", "epoch", "epoch_ns"}

"""Parse ``expires_at`` as Ollama sends it and classify it as forever, timed or stopping.

Ollama serialises ``time.Time`` with Go's ``MarshalJSON`` (RFC 3339, up to nine fraction digits with
trailing zeros trimmed, ``Z`` or the server's local ``±hh:mm``). ``datetime.fromisoformat`` rejects
nanoseconds before Python 3.11, so a regular expression and integer nanoseconds are used instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import time

_RFC3339 = re.compile(
    r"^(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))?(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})$"
)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
NS_PER_SECOND = 1000000000
# Go's zero time.Time, 0001-01-01T00:00:00Z, as nanoseconds since the Unix epoch.
ZERO_TIME_NS = (datetime.date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86400 * NS_PER_SECOND
# format/time.go humanTime prints "Forever" when int(delta.Hours())/24/365 < -20 with delta = now - expires_at and Go's
# integer division truncating toward zero: that holds exactly when expires_at is at least 183,960 hours
# (21 x 365 days = 7665 days) ahead. A pinned model reports now + MaxInt64 ns, a year near 2318.
FOREVER_THRESHOLD_NS = 21 * 365 * 24 * 3600 * NS_PER_SECOND

FOREVER = "forever"
TIMED = "timed"
STOPPING = "stopping"


class ExpiresAtError(ValueError):
    """expires_at is not an RFC 3339 timestamp as Go's MarshalJSON writes it."""


def parse_expires_at(value):
    """Return the instant as integer nanoseconds since the Unix epoch; raise ExpiresAtError if malformed."""
    if not isinstance(value, str):
        raise ExpiresAtError("expires_at %r is not a string" % (value,))
    m = _RFC3339.match(value)
    if not m:
        raise ExpiresAtError("expires_at %r is not an RFC 3339 timestamp" % value)
    try:
        day = datetime.date(int(m.group("y")), int(m.group("mo")), int(m.group("d")))
    except ValueError as exc:
        raise ExpiresAtError("expires_at %r has an invalid date: %s" % (value, exc)) from None
    hour, minute, second = int(m.group("h")), int(m.group("mi")), int(m.group("s"))
    if hour > 23 or minute > 59 or second > 59:
        raise ExpiresAtError("expires_at %r has an invalid time of day" % value)
    tz = m.group("tz")
    offset = 0
    if tz != "Z":
        oh, om = int(tz[1:3]), int(tz[4:6])
        if oh > 23 or om > 59:
            raise ExpiresAtError("expires_at %r has an invalid UTC offset" % value)
        offset = (oh * 3600 + om * 60) * (-1 if tz[0] == "-" else 1)
    frac = m.group("frac") or ""
    frac_ns = int(frac.ljust(9, "0")) if frac else 0
    seconds = (day.toordinal() - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds * NS_PER_SECOND + frac_ns


def now_ns():
    """The current time as integer nanoseconds since the epoch."""
    return time.time_ns()


def classify(expires_at, now=None):
    """The one classification used everywhere in keepwarm.

    * ``forever``: at least 7665 days (21 x 365, upstream format/time.go ``humanTime``) ahead, or Go's zero time
      ``0001-01-01T00:00:00Z`` (cited by guides; upstream never sends it in /api/ps); ``seconds_left`` is None.
    * ``stopping``: not after ``now`` (server/sched.go: an explicit unload sets ``expiresAt = now``; a busy
      runner keeps a stale value); ``seconds_left`` is 0.0.
    * ``timed``: otherwise, with ``seconds_left`` as a float.

    ``now`` is integer nanoseconds since the epoch (default: the current time). Returns a dict with
    ``state``, ``seconds_left``, ``epoch`` (the instant in float seconds) and ``epoch_ns`` (integer ns).
    """
    ns = parse_expires_at(expires_at)
    if now is None:
        now = now_ns()
    epoch = ns / float(NS_PER_SECOND)
    if ns == ZERO_TIME_NS:
        return {"state": FOREVER, "seconds_left": None, "epoch": epoch, "epoch_ns": ns}
    delta = ns - now
    if delta <= 0:
        return {"state": STOPPING, "seconds_left": 0.0, "epoch": epoch, "epoch_ns": ns}
    if delta >= FOREVER_THRESHOLD_NS:
        return {"state": FOREVER, "seconds_left": None, "epoch": epoch, "epoch_ns": ns}
    return {"state": TIMED, "seconds_left": delta / float(NS_PER_SECOND), "epoch": epoch, "epoch_ns": ns}
