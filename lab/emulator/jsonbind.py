"""Go-like JSON request binding: gin ShouldBindJSON over encoding/json, with Go's error texts."""

import base64
import json

from .gotime import MAX_INT64, MIN_INT64, NS, GoError, parse_go_duration

# --------------------------------------------------------------------------------------------------------------
# Go encoding/json emulation: syntax errors (scanner.go) and type errors (decode.go) with Go's messages
# --------------------------------------------------------------------------------------------------------------


def _quote_char(c):
    """encoding/json quoteChar."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    names = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 0x5C: "\\\\"}
    if c in names:
        return "'" + names[c] + "'"
    if c < 0x20 or c == 0x7F:
        return "'\\x%02x'" % c
    ch = chr(c)
    if c >= 0x80 and not ch.isprintable():
        return "'\\u%04x'" % c
    return "'" + ch + "'"


_WS = b" \t\r\n"
_DIGITS = b"0123456789"


def go_scan(data):
    """encoding/json scanner as used by json.Decoder.Decode: checks the FIRST value of `data` only (trailing bytes are
    never read). Returns None if valid, 'EOF' if only whitespace, else the Go error text."""
    n = len(data)
    i = 0
    while i < n and data[i] in _WS:
        i += 1
    if i == n:
        return "EOF"
    stack = []  # 'o' object, 'a' array
    # states: value, key_or_end, key, value_or_end, after_key, after_value, done
    state = "value"

    def err(c, ctx):
        return "invalid character %s %s" % (_quote_char(c), ctx)

    while True:
        if state == "after_value":
            if not stack:
                return None
            while i < n and data[i] in _WS:
                i += 1
            if i >= n:
                return "unexpected EOF"
            c = data[i]
            top = stack[-1]
            if top == "k":  # after an object key
                if c == 0x3A:
                    stack[-1] = "v"
                    i += 1
                    state = "value"
                    continue
                return err(c, "after object key")
            if top == "v":
                if c == 0x2C:
                    stack[-1] = "k"
                    i += 1
                    state = "key"
                    continue
                if c == 0x7D:
                    stack.pop()
                    i += 1
                    continue
                return err(c, "after object key:value pair")
            if c == 0x2C:
                i += 1
                state = "value"
                continue
            if c == 0x5D:
                stack.pop()
                i += 1
                continue
            return err(c, "after array element")
        while i < n and data[i] in _WS:
            i += 1
        if i >= n:
            return "unexpected EOF"
        c = data[i]
        if state == "key_or_end":
            if c == 0x7D:
                stack.pop()
                i += 1
                state = "after_value"
                continue
            state = "key"
        if state == "key":
            if c != 0x22:
                return err(c, "looking for beginning of object key string")
            e, i = _scan_string(data, i)
            if e:
                return e
            state = "after_value"
            continue
        if state == "value_or_end":
            if c == 0x5D:
                stack.pop()
                i += 1
                state = "after_value"
                continue
            state = "value"
        # state == value
        if c == 0x7B:
            if len(stack) >= 10000:
                return "exceeded max depth"
            stack.append("k")
            i += 1
            state = "key_or_end"
        elif c == 0x5B:
            if len(stack) >= 10000:
                return "exceeded max depth"
            stack.append("a")
            i += 1
            state = "value_or_end"
        elif c == 0x22:
            e, i = _scan_string(data, i)
            if e:
                return e
            state = "after_value"
        elif c == 0x2D or c in _DIGITS:
            e, i = _scan_number(data, i, bool(stack))
            if e:
                return e
            state = "after_value"
        elif c in (0x74, 0x66, 0x6E):
            word = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[c]
            lit = word.decode()
            for j in range(1, len(word)):
                if i + j >= n:
                    return "unexpected EOF"
                if data[i + j] != word[j]:
                    return err(data[i + j], "in literal %s (expecting %s)" % (lit, _quote_char(word[j])))
            i += len(word)
            state = "after_value"
        else:
            return err(c, "looking for beginning of value")


def _scan_string(data, i):
    n = len(data)
    i += 1
    while i < n:
        c = data[i]
        if c == 0x22:
            return None, i + 1
        if c == 0x5C:
            i += 1
            if i >= n:
                return "unexpected EOF", i
            e = data[i]
            if e == 0x75:
                for _ in range(4):
                    i += 1
                    if i >= n:
                        return "unexpected EOF", i
                    if data[i] not in b"0123456789abcdefABCDEF":
                        return "invalid character %s in \\u hexadecimal character escape" % _quote_char(data[i]), i
            elif e not in b'bfnrt\\/"':
                return "invalid character %s in string escape code" % _quote_char(e), i
        elif c < 0x20:
            return "invalid character %s in string literal" % _quote_char(c), i
        i += 1
    return "unexpected EOF", i


def _scan_number(data, i, nested):
    """Numbers: a top-level number is complete at EOF (Decoder feeds a space); inside a container EOF is unexpected."""
    n = len(data)

    def at_end(j):
        return (None, j) if not nested else ("unexpected EOF", j)

    if data[i] == 0x2D:
        i += 1
        if i >= n:
            return "unexpected EOF", i
        if data[i] not in _DIGITS:
            return "invalid character %s in numeric literal" % _quote_char(data[i]), i
    if data[i] == 0x30:
        i += 1
    else:
        while i < n and data[i] in _DIGITS:
            i += 1
    if i >= n:
        return at_end(i)
    if data[i] == 0x2E:
        i += 1
        if i >= n:
            return "unexpected EOF", i
        if data[i] not in _DIGITS:
            return "invalid character %s after decimal point in numeric literal" % _quote_char(data[i]), i
        while i < n and data[i] in _DIGITS:
            i += 1
        if i >= n:
            return at_end(i)
    if data[i] in b"eE":
        i += 1
        if i < n and data[i] in b"+-":
            i += 1
        if i >= n:
            return "unexpected EOF", i
        if data[i] not in _DIGITS:
            return "invalid character %s in exponent of numeric literal" % _quote_char(data[i]), i
        while i < n and data[i] in _DIGITS:
            i += 1
        if i >= n:
            return at_end(i)
    return None, i


class _Const(Exception):
    pass


class _Pairs(list):
    """A decoded JSON object as its (key, value) pairs in document order (json object_pairs_hook)."""


def _reject_constant(name):
    raise _Const(name)


_DECODER = json.JSONDecoder(object_pairs_hook=_Pairs, parse_constant=_reject_constant)


class BindError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


def decode_json_body(raw):
    """gin ShouldBindJSON = json.NewDecoder(body).Decode(&req). Returns the first JSON value with objects as lists
    of (key, value) pairs (so duplicate keys and key case can be handled like Go). Raises BindError."""
    text = raw.decode("utf-8", "replace")
    start = 0
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    if start == len(text):
        raise BindError("missing request body")  # io.EOF (routes.go GenerateHandler)
    try:
        value, _ = _DECODER.raw_decode(text, start)
        return value
    except (ValueError, _Const, RecursionError):
        pass
    msg = go_scan(raw)
    if msg is None:
        try:  # valid for Go but too deep or odd for Python's decoder
            value, _ = _DECODER.raw_decode(text, start)
            return value
        except (ValueError, _Const, RecursionError):
            raise BindError("exceeded max depth") from None
    if msg == "EOF":
        raise BindError("missing request body")
    raise BindError(msg)


def _json_kind(v):
    if isinstance(v, _Pairs):
        return "object"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array"


def _plain(v):
    """Convert decoded pairs into plain Python values (Go map semantics: last key wins)."""
    if isinstance(v, _Pairs):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# Field types: "string", "bool", "int", "float", "any", "duration", ("slice", elem, goname), ("map", goname),
# ("struct", GoName, fields), "image".
MESSAGE = (
    "struct",
    "Message",
    {
        "role": "string",
        "content": "string",
        "thinking": "string",
        "images": ("slice", "image", "[]api.ImageData"),
        "tool_calls": "any",
        "tool_name": "string",
        "tool_call_id": "string",
    },
)
SCHEMAS = {
    "generate": (
        "struct",
        "GenerateRequest",
        {
            "model": "string",
            "prompt": "string",
            "suffix": "string",
            "system": "string",
            "template": "string",
            "context": ("slice", "int", "[]int"),
            "stream": "bool",
            "raw": "bool",
            "format": "any",
            "keep_alive": "duration",
            "images": ("slice", "image", "[]api.ImageData"),
            "options": ("map", "map[string]interface {}"),
            "think": "any",
            "truncate": "bool",
            "shift": "bool",
            "logprobs": "bool",
            "top_logprobs": "int",
        },
    ),
    "chat": (
        "struct",
        "ChatRequest",
        {
            "model": "string",
            "messages": ("slice", MESSAGE, "[]api.Message"),
            "stream": "bool",
            "format": "any",
            "keep_alive": "duration",
            "tools": "any",
            "options": ("map", "map[string]interface {}"),
            "think": "any",
            "truncate": "bool",
            "shift": "bool",
            "logprobs": "bool",
            "top_logprobs": "int",
        },
    ),
    "embed": (
        "struct",
        "EmbedRequest",
        {
            "model": "string",
            "input": "any",
            "truncate": "bool",
            "dimensions": "int",
            "keep_alive": "duration",
            "options": ("map", "map[string]interface {}"),
        },
    ),
    "embeddings": (
        "struct",
        "EmbeddingRequest",
        {
            "model": "string",
            "prompt": "string",
            "keep_alive": "duration",
            "options": ("map", "map[string]interface {}"),
        },
    ),
    "show": (
        "struct",
        "ShowRequest",
        {
            "model": "string",
            "system": "string",
            "template": "string",
            "verbose": "bool",
            "options": ("map", "map[string]interface {}"),
            "name": "string",
        },
    ),
    "pull": (
        "struct",
        "PullRequest",
        {
            "model": "string",
            "insecure": "bool",
            "username": "string",
            "password": "string",
            "stream": "bool",
            "name": "string",
        },
    ),
    "delete": ("struct", "DeleteRequest", {"model": "string", "name": "string"}),
}

_GO_NAMES = {"string": "string", "bool": "bool", "int": "int", "float": "float64", "image": "api.ImageData"}


def _type_name(t):
    if isinstance(t, str):
        return _GO_NAMES.get(t, t)
    if t[0] == "slice":
        return t[2]
    if t[0] == "map":
        return t[1]
    return "api." + t[1]


def parse_keep_alive(v):
    """api/types.go Duration.UnmarshalJSON: number = seconds (float, v0.11.8+), negative = forever; string =
    time.ParseDuration, negative = forever; other types -> `Unsupported type: '<Go type>'`."""
    if isinstance(v, bool):
        raise BindError("Unsupported type: 'bool'")
    if isinstance(v, (int, float)):
        if v < 0:
            return MAX_INT64
        ns = float(v) * NS
        if ns >= 2.0**63:
            # time.Duration(t * float64(time.Second)) overflows int64: amd64's CVTTSD2SQ gives the "integer
            # indefinite" value, the minimum int64. A negative sessionDuration is not the `== 0` unload path: the
            # model loads, then unloads when the request ends (sched.go processCompleted: sessionDuration <= 0).
            return MIN_INT64
        return int(ns)
    if isinstance(v, str):
        try:
            d = parse_go_duration(v)
        except GoError as e:
            raise BindError(str(e)) from None
        return MAX_INT64 if d < 0 else d
    if isinstance(v, _Pairs):
        raise BindError("Unsupported type: 'map[string]interface {}'")
    raise BindError("Unsupported type: '[]interface {}'")


class _Walk:
    def __init__(self):
        self.first = None  # first saved UnmarshalTypeError (decode.go saveError)

    def type_error(self, kind, struct, path, t):
        if self.first is None:
            if struct is None:
                self.first = "json: cannot unmarshal %s into Go value of type %s" % (kind, _type_name(t))
            else:
                self.first = "json: cannot unmarshal %s into Go struct field %s.%s of type %s" % (
                    kind,
                    struct,
                    ".".join(path),
                    _type_name(t),
                )

    def value(self, v, t, struct, path):
        """Returns the converted value (or None when Go would leave the zero value)."""
        if v is None:
            return None  # null is a no-op for every Go type
        if t == "any":
            return _plain(v)
        if t == "duration":
            return parse_keep_alive(v)  # hard error: aborts decoding
        kind = _json_kind(v)
        if t == "string":
            if kind != "string":
                return self.type_error(kind, struct, path, t)
            return v
        if t == "bool":
            if kind != "bool":
                return self.type_error(kind, struct, path, t)
            return v
        if t == "int":
            if kind != "number":
                return self.type_error(kind, struct, path, t)
            if isinstance(v, float) or not -(1 << 63) <= v < (1 << 63):
                return self.type_error("number " + _num_text(v), struct, path, t)
            return v
        if t == "image":
            if kind != "string":
                return self.type_error(kind, struct, path, t)
            try:
                return base64.b64decode(v, validate=True)
            except (ValueError, TypeError):
                if self.first is None:
                    self.first = "illegal base64 data at input byte %d" % _b64_bad_index(v)
                return None
        if t[0] == "slice":
            if kind != "array":
                return self.type_error(kind, struct, path, t)
            return [self.value(x, t[1], struct, path) for x in v]
        if t[0] == "map":
            if kind != "object":
                return self.type_error(kind, struct, path, t)
            return {k: _plain(x) for k, x in v}
        # struct
        if kind != "object":
            return self.type_error(kind, struct, path, t)
        fields = t[2]
        out = {}
        for k, x in v:
            name = k if k in fields else next((f for f in fields if f.lower() == k.lower()), None)
            if name is None:
                continue  # unknown keys are ignored silently (no DisallowUnknownFields)
            val = self.value(x, fields[name], t[1], path + [name])
            if x is not None:
                out[name] = val
        return out


def _num_text(v):
    if isinstance(v, float):
        r = repr(v)
        return r[:-2] if r.endswith(".0") else r
    return str(v)


def _b64_bad_index(s):
    ok = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    for i, c in enumerate(s):
        if c not in ok:
            return i
    return len(s) - len(s) % 4


def bind(raw, schema_name):
    """Decode a request body into a dict of known fields like gin ShouldBindJSON; raise BindError with Go's text."""
    value = decode_json_body(raw)
    t = SCHEMAS[schema_name]
    if value is None:
        return {}
    if not isinstance(value, _Pairs):
        kind = _json_kind(value)
        raise BindError("json: cannot unmarshal %s into Go value of type api.%s" % (kind, t[1]))
    w = _Walk()
    out = w.value(value, t, None, [])
    if w.first:
        raise BindError(w.first)
    return out
