# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: /api/ps expires_at parsing and the one classification.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._expires

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
# cmd/cmd.go ListRunningHandler prints "Forever" when the expiry is at least ~20 years ahead; keepwarm uses
# "more than 7300 days" (a pinned model reports now + MaxInt64 ns, i.e. a year near 2318).
FOREVER_THRESHOLD_NS = 7300 * 86400 * NS_PER_SECOND

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

    * ``forever``: more than 7300 days (20 years) ahead, or Go's zero time ``0001-01-01T00:00:00Z``;
      ``seconds_left`` is None.
    * ``stopping``: not after ``now`` (server/sched.go: an explicit unload sets ``expiresAt = now``; a busy
      runner keeps a stale value); ``seconds_left`` is 0.0.
    * ``timed``: otherwise, with ``seconds_left`` as a float.

    ``now`` is integer nanoseconds since the epoch (default: the current time). Returns a dict with
    ``state``, ``seconds_left`` and ``epoch`` (the instant in float seconds).
    """
    ns = parse_expires_at(expires_at)
    if now is None:
        now = now_ns()
    epoch = ns / float(NS_PER_SECOND)
    if ns == ZERO_TIME_NS:
        return {"state": FOREVER, "seconds_left": None, "epoch": epoch}
    delta = ns - now
    if delta <= 0:
        return {"state": STOPPING, "seconds_left": 0.0, "epoch": epoch}
    if delta > FOREVER_THRESHOLD_NS:
        return {"state": FOREVER, "seconds_left": None, "epoch": epoch}
    return {"state": TIMED, "seconds_left": delta / float(NS_PER_SECOND), "epoch": epoch}
