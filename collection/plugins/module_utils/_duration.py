# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: Ollama's duration rules, written once.
# Not a public API; import it as
# ansible_collections.keepwarm.ollama.plugins.module_utils._duration

"""Go duration parsing as Ollama uses it, plus keepwarm's strict validators.

Three readers of a keep-alive value exist upstream and they disagree:

* ``OLLAMA_KEEP_ALIVE`` in the server environment (envconfig/config.go ``KeepAlive()``):
  ``time.ParseDuration`` first, then ``strconv.ParseInt`` read as seconds; anything else silently
  becomes the 5m default; a negative result means forever (``MaxInt64`` ns).
* ``keep_alive`` in request JSON (api/types.go ``Duration.UnmarshalJSON``): a number is seconds
  (negative = forever), a string must be a Go duration with a unit (``"-1"`` is a 400 error).
* keepwarm itself refuses everything Ollama would ignore or reject, before anything is written or sent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MAX_INT64 = (1 << 63) - 1
FOREVER_NS = MAX_INT64
NANOSECOND = 1
MICROSECOND = 1000
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DEFAULT_KEEP_ALIVE_NS = 5 * MINUTE  # envconfig/config.go KeepAlive(): "keepAlive = 5 * time.Minute"

# Go time/format.go unitMap: no "d", no "w"; both micro signs are accepted.
_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # U+00B5 micro sign
    "\u03bcs": MICROSECOND,  # U+03BC Greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}

_DECIMAL_INT = re.compile(r"^[+-]?[0-9]+$")


class DurationError(ValueError):
    """A value Ollama would reject or silently ignore; the message names the value and why."""


def _go_quote(s):
    """Roughly Go's strconv.Quote, as used in time.ParseDuration's error text."""
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def parse_go_duration(s):
    """Go ``time.ParseDuration`` (time/format.go): return nanoseconds or raise DurationError with Go's text.

    Grammar: ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+``; ``"0"`` alone needs no unit.
    """
    orig = s
    invalid = DurationError("time: invalid duration " + _go_quote(orig))
    neg = False
    if s and s[0] in "-+":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise invalid
        # leadingInt
        i = 0
        v = 0
        while i < len(s) and "0" <= s[i] <= "9":
            v = v * 10 + (ord(s[i]) - 48)
            if v > (1 << 63):
                raise invalid  # overflow
            i += 1
        pre = i > 0
        s = s[i:]
        f, scale, post = 0, 1, False
        if s and s[0] == ".":
            s = s[1:]
            # leadingFraction: digits past int64 precision are consumed but ignored
            i = 0
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > MAX_INT64 // 10:
                        overflow = True
                    else:
                        f = f * 10 + (ord(s[i]) - 48)
                        scale *= 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise invalid  # no digits, e.g. ".s"
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise DurationError("time: missing unit in duration " + _go_quote(orig))
        u = s[:i]
        s = s[i:]
        if u not in _UNITS:
            raise DurationError("time: unknown unit " + _go_quote(u) + " in duration " + _go_quote(orig))
        unit = _UNITS[u]
        if v > (1 << 63) // unit:
            raise invalid
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > (1 << 63):
                raise invalid
        total += v
        if total > (1 << 63):
            raise invalid
    if neg:
        return -total
    if total > MAX_INT64:
        raise invalid
    return total


def _go_parse_int64(s):
    """strconv.ParseInt(s, 10, 64): optional sign, decimal digits, int64 range; else None."""
    if not _DECIMAL_INT.match(s):
        return None
    n = int(s)
    if n > MAX_INT64 or n < -(1 << 63):
        return None
    return n


def _wrap_int64(n):
    n &= (1 << 64) - 1
    return n - (1 << 64) if n >= (1 << 63) else n


def envconfig_var(raw):
    """envconfig/config.go ``Var``: trim whitespace, then surrounding double and single quotes."""
    return raw.strip().strip("\"'")


def parse_env_keep_alive(raw):
    """How ``ollama serve`` reads OLLAMA_KEEP_ALIVE (envconfig/config.go ``KeepAlive()``).

    Returns ``(nanoseconds, ignored)``. ``ignored`` is True when a non-empty value was not understood and
    Ollama silently fell back to 5m (no log line upstream). Forever is ``MAX_INT64`` ns.
    """
    if raw is None:
        return DEFAULT_KEEP_ALIVE_NS, False
    s = envconfig_var(raw)
    if s == "":
        return DEFAULT_KEEP_ALIVE_NS, raw != ""
    ignored = False
    try:
        ns = parse_go_duration(s)
    except DurationError:
        n = _go_parse_int64(s)
        if n is None:
            ns, ignored = DEFAULT_KEEP_ALIVE_NS, True
        else:
            ns = _wrap_int64(n * SECOND)  # time.Duration(n) * time.Second, int64 arithmetic
    if ns < 0:
        ns = FOREVER_NS  # "if keepAlive < 0 { return time.Duration(math.MaxInt64) }"
    return ns, ignored


def parse_json_keep_alive(value):
    """api/types.go ``Duration.UnmarshalJSON``: what the server does with a request's keep_alive.

    Returns nanoseconds (``MAX_INT64`` = forever, ``None`` for null) or raises DurationError with the
    text upstream answers with a 400.
    """
    if value is None:
        return None  # Go leaves the *Duration nil: keeps the runner's current value
    if isinstance(value, bool):
        raise DurationError("Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        if value < 0:
            return FOREVER_NS
        return int(value * SECOND)
    if isinstance(value, str):
        ns = parse_go_duration(value)
        return FOREVER_NS if ns < 0 else ns
    raise DurationError("Unsupported type: '%s'" % type(value).__name__)


def format_duration(ns):
    """A short human form of a duration: ``forever``, ``5m``, ``1h30m``, ``10s``, ``1.5s``, ``0s``."""
    if ns is None:
        return None
    if ns >= FOREVER_NS or ns < 0:
        return "forever"
    if ns == 0:
        return "0s"
    h, rem = divmod(ns, HOUR)
    m, rem = divmod(rem, MINUTE)
    out = ""
    if h:
        out += "%dh" % h
    if m:
        out += "%dm" % m
    if rem:
        secs = ("%.9f" % (rem / float(SECOND))).rstrip("0").rstrip(".")
        out += secs + "s"
    return out


def _why_env(s):
    """Explain why Ollama would not accept a non-empty OLLAMA_KEEP_ALIVE string (None when it would)."""
    try:
        parse_go_duration(s)
        return None
    except DurationError as exc:
        go_error = str(exc)
    if _go_parse_int64(s) is not None:
        return None
    reasons = []
    if re.search(r"[0-9]d$|[0-9]w$", s):
        reasons.append("Go durations have no day or week unit (use hours, e.g. 24h)")
    if re.search(r"\s", s):
        reasons.append("it contains whitespace")
    if re.match(r"^[+-]?[0-9.]+[eE][+-]?[0-9]+$", s):
        reasons.append("exponent notation is neither a Go duration nor an integer")
    if not reasons:
        reasons.append("it is neither a Go duration (%s) nor an integer number of seconds" % go_error)
    return "; ".join(reasons)


def validate_env_keep_alive(value, name="OLLAMA_KEEP_ALIVE"):
    """keepwarm's strict check of an OLLAMA_KEEP_ALIVE value; returns the string to write.

    Accepts an integer (seconds; negative = forever) or a string that Ollama's ``KeepAlive()`` really
    understands. Refuses, naming the value and the reason, everything Ollama would silently replace by
    5m (``"forever"``, ``"1d"``, ``"5 m"``, ``""``, ``"1e3"``), booleans, floats, and values that only
    work because ``envconfig.Var`` trims whitespace or quotes.
    """
    if isinstance(value, bool):
        raise DurationError(
            "%s=%r refused: a boolean is not a duration (Ollama would silently use the 5m default)" % (name, value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == int(value):
            return str(int(value))
        raise DurationError(
            "%s=%r refused: a fractional number is neither a Go duration nor an integer; Ollama would silently "
            "use the 5m default (write a duration such as '%ss')" % (name, value, value)
        )
    if not isinstance(value, str):
        raise DurationError("%s=%r refused: expected an integer or a duration string" % (name, value))
    if value == "":
        raise DurationError(
            "%s='' refused: an empty value means Ollama's default 5m; give a duration or remove the setting" % name
        )
    if envconfig_var(value) != value:
        raise DurationError(
            "%s=%r refused: surrounding whitespace or quotes; Ollama trims them but keepwarm writes exact values"
            % (name, value)
        )
    why = _why_env(value)
    if why:
        raise DurationError("%s=%r refused: %s; Ollama would silently use the 5m default" % (name, value, why))
    return value


def request_keep_alive(value):
    """Convert a user's keep_alive into a JSON value the API accepts (api/types.go Duration.UnmarshalJSON).

    Integers and floats go out as JSON numbers (seconds; -1 = forever). Integer strings such as ``"-1"``
    or ``"300"`` are sent as numbers, because upstream answers the string ``"-1"`` with 400 ``time: missing
    unit in duration "-1"``. Duration strings (``"1h30m"``, ``"-1m"``) are sent as strings after checking
    them with Go's rules. Everything else raises DurationError.
    """
    if isinstance(value, bool):
        raise DurationError("keep_alive=%r refused: a boolean is not a duration (upstream: Unsupported type)" % value)
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        raise DurationError("keep_alive=%r refused: expected a number of seconds or a duration string" % (value,))
    n = _go_parse_int64(value)
    if n is not None:
        return n
    try:
        parse_go_duration(value)
    except DurationError as exc:
        raise DurationError(
            "keep_alive=%r refused: Ollama answers it with 400 (%s)%s"
            % (
                value,
                exc,
                "; Go durations have no day unit, use hours (e.g. 24h)" if value.endswith("d") else "",
            )
        ) from None
    return value


def keep_alive_is_forever(json_value):
    """True when a validated request keep_alive pins forever (negative, api/types.go Duration.UnmarshalJSON)."""
    ns = parse_json_keep_alive(json_value)
    return ns == FOREVER_NS


def keep_alive_report(raw):
    """Describe OLLAMA_KEEP_ALIVE as the server sees it: ``{raw, effective, seconds, forever, ignored, message}``."""
    ns, ignored = parse_env_keep_alive(raw)
    forever = ns == FOREVER_NS
    effective = format_duration(ns)
    if raw is None:
        message = "OLLAMA_KEEP_ALIVE is not set: the server default 5m applies"
    elif ignored:
        message = "OLLAMA_KEEP_ALIVE=%r is not understood by Ollama and is silently ignored: the server uses 5m" % raw
    elif forever:
        message = "OLLAMA_KEEP_ALIVE=%r: models stay loaded forever" % raw
    else:
        message = "OLLAMA_KEEP_ALIVE=%r: models unload %s after their last request" % (raw, effective)
    return {
        "raw": raw,
        "effective": effective,
        "seconds": None if forever else ns / float(SECOND),
        "forever": forever,
        "ignored": ignored,
        "message": message,
    }
