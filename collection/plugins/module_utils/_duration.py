# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: Ollama's duration rules and the limits of what it reads, written once.
# Not a public API; import it as
# ansible_collections.keepwarm.ollama.plugins.module_utils._duration
#
# RULEBOOK MODULE: standard library only, no imports of other module_utils. The heartbeat agent loads this same
# file (heartbeat_agent/_rules.py; its zipapp vendors a copy).
# Stable API (keep these names and signatures):
#   class DurationError(ValueError)
#   MAX_INT64, MIN_INT64, FOREVER_NS, SECOND, DEFAULT_KEEP_ALIVE_NS, MAX_UINT64
#   parse_go_duration(s) -> int ns                      time.ParseDuration; raises DurationError (Go's text)
#   parse_env_keep_alive(raw) -> (ns, ignored)          envconfig KeepAlive()/LoadTimeout() parse, incl. int64 wrap
#   parse_json_keep_alive(value) -> ns or None          api/types.go Duration.UnmarshalJSON, incl. the amd64 overflow
#   request_keep_alive(value) -> JSON value             what to send; raises DurationError for values Ollama rejects
#                                                        or turns into something else (overflow, < 1 ns)
#   validate_env_keep_alive(value, name=...) -> str      what to write for OLLAMA_KEEP_ALIVE / OLLAMA_LOAD_TIMEOUT
#   validate_env_uint(value, name, bits=64) -> str       what to write for a strconv.ParseUint variable
#   keep_alive_is_forever(json_value) -> bool
#   format_duration(ns) -> str;  keep_alive_report(raw) -> dict

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

import math
import re

MAX_INT64 = (1 << 63) - 1
MIN_INT64 = -(1 << 63)
MAX_UINT64 = (1 << 64) - 1
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
        # encoding/json decodes every number as float64; then time.Duration(t * float64(time.Second))
        t = float(value)
        if t < 0:
            return FOREVER_NS
        product = t * float(SECOND)
        if product >= float(1 << 63):
            # the float64 -> int64 conversion overflows: implementation-defined in Go; amd64 (CVTTSD2SI) gives
            # the minimum int64, a negative duration, so the model unloads when the request ends
            return MIN_INT64
        return int(product)
    if isinstance(value, str):
        ns = parse_go_duration(value)
        return FOREVER_NS if ns < 0 else ns
    raise DurationError("Unsupported type: '%s'" % type(value).__name__)


# The smallest number of seconds a request keep_alive cannot carry: float64(t) * 1e9 >= 2**63.
JSON_OVERFLOW_SECONDS = 9223372037


def _transformed_request(value, ns):
    """Why a request keep_alive that the API accepts does not mean what it says (None when it does)."""
    if ns == MIN_INT64:
        return (
            "keep_alive=%r refused: %s seconds or more overflow Ollama's int64 nanoseconds (api/types.go "
            "Duration.UnmarshalJSON); on amd64 the result is the minimum int64, so the model would unload as soon "
            "as the request ends; use -1 for forever" % (value, "{:,}".format(JSON_OVERFLOW_SECONDS))
        )
    if ns == 0 and value not in (0, "0") and _nonzero(value):
        return (
            "keep_alive=%r refused: it is less than one nanosecond, which Ollama truncates to 0 and so unloads the "
            "model after the request" % (value,)
        )
    return None


def _nonzero(value):
    if isinstance(value, (int, float)):
        return value != 0
    return any(ch in "123456789" for ch in value.split("e")[0])


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


def _why_env_int(s):
    """Why an integer OLLAMA_KEEP_ALIVE/OLLAMA_LOAD_TIMEOUT is not read as that many seconds (None when it is)."""
    if not _DECIMAL_INT.match(s):
        return None
    n = int(s)
    if n > MAX_INT64 or n < MIN_INT64:
        return (
            "it is out of strconv.ParseInt's int64 range, so Ollama silently uses the 5m default "
            "(envconfig/config.go KeepAlive, LoadTimeout)"
        )
    ns = n * SECOND
    if ns > MAX_INT64 or ns < MIN_INT64:
        return (
            "time.Duration(n) * time.Second overflows int64 and wraps around to %s (envconfig/config.go KeepAlive, "
            "LoadTimeout); the largest whole number of seconds is %d; use -1 for forever"
            % (_describe_ns(_wrap_int64(ns)), MAX_INT64 // SECOND)
        )
    return None


def _describe_ns(ns):
    if ns < 0:
        return "a negative duration (%d ns)" % ns
    return format_duration(ns)


def _why_env(s):
    """Explain why Ollama would not accept a non-empty OLLAMA_KEEP_ALIVE string (None when it would)."""
    try:
        parse_go_duration(s)
        return None
    except DurationError as exc:
        go_error = str(exc)
    if _DECIMAL_INT.match(s):
        return _why_env_int(s)
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
    if isinstance(value, float) and math.isfinite(value):
        if value == int(value):
            value = int(value)
    if isinstance(value, int):
        why = _why_env_int(str(value))
        if why:
            raise DurationError("%s=%r refused: %s" % (name, value, why))
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
    if why and _DECIMAL_INT.match(value):
        raise DurationError("%s=%r refused: %s" % (name, value, why))
    if why:
        raise DurationError("%s=%r refused: %s; Ollama would silently use the 5m default" % (name, value, why))
    return value


def validate_env_uint(value, name, bits=64):
    """keepwarm's check of a variable Ollama reads with ``strconv.ParseUint(s, 10, 64)`` (envconfig/config.go
    ``Uint``, ``Uint64``); returns the string to write. Anything ParseUint rejects (a sign, ``0x``, ``_``, a
    value above 18446744073709551615) makes Ollama log "invalid environment variable, using default".
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DurationError(
            "%s=%r refused: expected a whole number >= 0 (Ollama reads it with strconv.ParseUint)" % (name, value)
        )
    text = str(value)
    if not re.match(r"^[0-9]+$", text):
        raise DurationError(
            "%s=%r refused: not a whole number >= 0; Ollama's ParseUint rejects it, logs "
            "'invalid environment variable' and uses its default (envconfig/config.go Uint)" % (name, value)
        )
    if int(text) > (1 << bits) - 1:
        raise DurationError(
            "%s=%r refused: above %d, the largest value strconv.ParseUint reads; Ollama logs 'invalid environment "
            "variable' and uses its default (envconfig/config.go Uint)" % (name, value, (1 << bits) - 1)
        )
    return text


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
        if not math.isfinite(value):
            raise DurationError("keep_alive=%r refused: not a finite number (JSON cannot carry it)" % (value,))
        why = _transformed_request(value, parse_json_keep_alive(value))
        if why:
            raise DurationError(why)
        return value
    if not isinstance(value, str):
        raise DurationError("keep_alive=%r refused: expected a number of seconds or a duration string" % (value,))
    n = _go_parse_int64(value)
    if n is not None:
        why = _transformed_request(value, parse_json_keep_alive(n))
        if why:
            raise DurationError(why)
        return n
    try:
        ns = parse_go_duration(value)
    except DurationError as exc:
        raise DurationError(
            "keep_alive=%r refused: Ollama answers it with 400 (%s)%s"
            % (
                value,
                exc,
                "; Go durations have no day unit, use hours (e.g. 24h)" if value.endswith("d") else "",
            )
        ) from None
    why = _transformed_request(value, ns)
    if why:
        raise DurationError(why)
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
