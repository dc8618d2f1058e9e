"""Go time and number rules: RFC 3339 formatting of time.Time, time.ParseDuration, strconv.ParseInt/ParseUint.

Everything here is a pure function of its arguments (no clock, no environment).
"""

import datetime
import time

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
NS = 1_000_000_000
MINUTE_NS = 60 * NS


# --------------------------------------------------------------------------------------------------------------
# Go time formatting (time.Time.MarshalJSON = RFC 3339 with nanoseconds, trailing zeros trimmed)
# --------------------------------------------------------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1)


def local_offset(sec):
    """Local UTC offset in seconds at Unix time `sec` (Go uses the same zone rules as glibc for far-future dates)."""
    try:
        return time.localtime(sec).tm_gmtoff
    except (OverflowError, OSError, ValueError):
        return time.localtime().tm_gmtoff


def go_time(ns, utc=False):
    """Format Unix nanoseconds like Go's time.Time.MarshalJSON (RFC3339Nano): fraction up to 9 digits with trailing
    zeros removed (no dot at all for whole seconds), `Z` for a zero offset, otherwise `+hh:mm`/`-hh:mm`.
    Done by hand because `forever` (now + MaxInt64 ns, about year 2318) needs nanoseconds datetime cannot hold."""
    sec, frac = divmod(ns, NS)
    off = 0 if utc else local_offset(sec)
    dt = _EPOCH + datetime.timedelta(seconds=sec + off)
    s = "%04d-%02d-%02dT%02d:%02d:%02d" % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
    if frac:
        s += "." + ("%09d" % frac).rstrip("0")
    if off == 0:
        return s + "Z"
    sign = "+" if off > 0 else "-"
    off = abs(off) // 60
    return s + "%s%02d:%02d" % (sign, off // 60, off % 60)


def parse_go_time(s):
    """Parse an RFC 3339 timestamp (as produced by go_time) into Unix nanoseconds."""
    s = s.strip()
    if s.endswith("Z"):
        off, body = 0, s[:-1]
    else:
        sign = 1 if s[-6] == "+" else -1
        off = sign * (int(s[-5:-3]) * 3600 + int(s[-2:]) * 60)
        body = s[:-6]
    frac_ns = 0
    if "." in body:
        body, frac = body.split(".", 1)
        frac_ns = int((frac + "000000000")[:9])
    dt = datetime.datetime.strptime(body, "%Y-%m-%dT%H:%M:%S")
    sec = (dt - _EPOCH) // datetime.timedelta(seconds=1) - off
    return sec * NS + frac_ns


# --------------------------------------------------------------------------------------------------------------
# Go duration and number parsing
# --------------------------------------------------------------------------------------------------------------

_UNITS = {
    b"ns": 1,
    b"us": 1000,
    "µs".encode(): 1000,  # U+00B5
    "μs".encode(): 1000,  # U+03BC
    b"ms": 1000_000,
    b"s": NS,
    b"m": MINUTE_NS,
    b"h": 60 * MINUTE_NS,
}


def go_quote(b):
    """time.quote (Go time/format.go): quote with `"`, escaping non-ASCII and control bytes as \\xNN."""
    out = ['"']
    i = 0
    text = b.decode("utf-8", "surrogateescape")
    for ch in text:
        c = ord(ch)
        if c >= 0x80 or c < 0x20:
            raw = ch.encode("utf-8", "surrogateescape")
            out.append("".join("\\x%02x" % x for x in raw))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
        i += 1
    out.append('"')
    return "".join(out)


class GoError(ValueError):
    pass


def parse_go_duration(s):
    """time.ParseDuration (Go time/format.go), byte for byte, including its error texts. Returns int ns."""
    orig = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    b = orig
    d = 0
    neg = False
    if b:
        if b[:1] in (b"-", b"+"):
            neg = b[:1] == b"-"
            b = b[1:]
    if b == b"0":
        return 0
    if not b:
        raise GoError("time: invalid duration " + go_quote(orig))
    while b:
        if not (b[0] == 0x2E or 0x30 <= b[0] <= 0x39):
            raise GoError("time: invalid duration " + go_quote(orig))
        # leadingInt
        i = 0
        v = 0
        while i < len(b) and 0x30 <= b[i] <= 0x39:
            if v > (1 << 63) // 10:
                raise GoError("time: invalid duration " + go_quote(orig))
            v = v * 10 + (b[i] - 0x30)
            if v > 1 << 63:
                raise GoError("time: invalid duration " + go_quote(orig))
            i += 1
        pre = i > 0
        b = b[i:]
        post = False
        f, scale = 0, 1.0
        if b[:1] == b".":
            b = b[1:]
            i = 0
            overflow = False
            while i < len(b) and 0x30 <= b[i] <= 0x39:
                if not overflow:
                    if f > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + (b[i] - 0x30)
                        if y > 1 << 63:
                            overflow = True
                        else:
                            f = y
                            scale *= 10
                i += 1
            post = i > 0
            b = b[i:]
        if not pre and not post:
            raise GoError("time: invalid duration " + go_quote(orig))
        i = 0
        while i < len(b) and not (b[i] == 0x2E or 0x30 <= b[i] <= 0x39):
            i += 1
        if i == 0:
            raise GoError("time: missing unit in duration " + go_quote(orig))
        u = b[:i]
        b = b[i:]
        unit = _UNITS.get(u)
        if unit is None:
            raise GoError("time: unknown unit " + go_quote(u) + " in duration " + go_quote(orig))
        if v > (1 << 63) // unit:
            raise GoError("time: invalid duration " + go_quote(orig))
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise GoError("time: invalid duration " + go_quote(orig))
        d += v
        if d > 1 << 63:
            raise GoError("time: invalid duration " + go_quote(orig))
    if neg:
        return -d
    if d > MAX_INT64:
        raise GoError("time: invalid duration " + go_quote(orig))
    return d


def go_parse_int(s, bits=64):
    """strconv.ParseInt(s, 10, bits): optional sign, decimal digits only."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not all("0" <= c <= "9" for c in body):
        raise ValueError(s)
    n = int(s)
    if not -(1 << (bits - 1)) <= n < (1 << (bits - 1)):
        raise ValueError(s)
    return n


def go_parse_uint(s):
    """strconv.ParseUint(s, 10, 64): decimal digits only, no sign."""
    if not s or not all("0" <= c <= "9" for c in s):
        raise ValueError(s)
    n = int(s)
    if n >= 1 << 64:
        raise ValueError(s)
    return n


def wrap_int64(n):
    return ((n + (1 << 63)) % (1 << 64)) - (1 << 63)
