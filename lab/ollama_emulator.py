#!/usr/bin/env python3
"""A stdlib-only stand-in for `ollama serve` (and a few `ollama` CLI commands) for the keepwarm lab and tests.

It follows /work/shared/ollama-behaviour.md (written from upstream ollama/ollama source, HEAD after v0.33.0-rc2);
each rule below names the upstream file/function it copies. Runs on Python 3.9+ with nothing outside the standard
library: the lab copies this file to /usr/local/bin/ollama and runs it with the host's system python3.

Commands (like the real binary, all but `serve` talk HTTP to OLLAMA_HOST):
    ollama serve                 run the API server
    ollama ps [PREFIX]           NAME / ID / SIZE / PROCESSOR / CONTEXT / UNTIL table (cmd/cmd.go ListRunningHandler)
    ollama list                  NAME / ID / SIZE / MODIFIED table (cmd/cmd.go ListHandler)
    ollama stop MODEL            unload (keep_alive 0, empty prompt) (cmd/cmd.go StopHandler)
    ollama run MODEL [PROMPT]    load (empty prompt) or generate; `--keepalive DURATION`
    ollama pull MODEL            simulated pull
    ollama --version | -v

Environment read by `serve` (upstream parse rules, envconfig/config.go):
    OLLAMA_HOST                 bind address (config.go Host(): scheme default ports, bad port -> 11434)
    OLLAMA_KEEP_ALIVE           default keep-alive (KeepAlive(): ParseDuration, else ParseInt seconds, negative ->
                                forever; anything unparseable -> 5m SILENTLY, no log line, like upstream)
    OLLAMA_MAX_LOADED_MODELS    global cap (Uint; invalid -> logged, auto = 3 x max(GPUs,1) = 3, one emulated GPU)
    OLLAMA_NUM_PARALLEL         slots per runner (Uint; invalid -> warning, 1; 0 -> 1); KV cache = num_ctx x slots
    OLLAMA_CONTEXT_LENGTH       default num_ctx (Uint; 0/invalid -> VRAM tier: >=47 GiB 262144, >=23 GiB 32768,
                                else 4096), always clamped to the model's training context
    OLLAMA_MAX_QUEUE            pending-request queue (Uint, default 512); beyond it 503
    OLLAMA_MODELS               accepted and reported in the startup log only (models come from the catalogue)
    OLLAMA_ORIGINS              extra CORS origins (routes.go GenerateRoutes); a request with a non-allowed Origin
                                gets 403 with an empty body
Emulator-only variables (never read by real Ollama):
    OLLAMA_EMULATOR_TIME_SCALE  default 1. Emulated time runs this many times faster than real time. EVERY duration
                                is emulated: keep-alive expiry, load time, token time; every timestamp the API returns
                                (created_at, expires_at, /emulator/events times) and every *_duration metric is
                                emulated. The emulated clock starts at the real wall clock when the server starts.
    OLLAMA_EMULATOR_CATALOG     path of a JSON file {"models": [...]} replacing the default catalogue (fields as in
                                DEFAULT_CATALOG below; only `name` is required, the rest have defaults)
    OLLAMA_EMULATOR_VRAM        bytes of the one emulated GPU (default 17179869184 = 16 GiB; 0 = CPU-only host)
    OLLAMA_EMULATOR_LOAD_BPS    cold-load speed in bytes per emulated second (default 1e9: llama3.2 ~2 s)
    OLLAMA_EMULATOR_TOKEN_RATE  generated tokens per emulated second (default 100; a warm load-only request takes ~1 ms)
    OLLAMA_EMULATOR_MAX_BODY    request body limit in bytes (default 16777216); larger bodies get 413
    OLLAMA_EMULATOR_PS_BLOCKS   default 1: /api/ps waits while a runner is loading (sched.go loadedModels takes refMu,
                                v0.32.4+, *inferred* in the behaviour doc). 0 answers at once with now+session.
    OLLAMA_EMULATOR_EVENTS_FILE optional path; every scheduler event is also appended there as one JSON line
    OLLAMA_EMULATOR_VERSION     version reported by /api/version (default below)

Emulator-only HTTP endpoints: GET /emulator/events -> {"events": [...]} (load, reload, unload, eviction, and
`load_aborted` with reason `client_disconnected` when a cold load is aborted; aborted loads are NOT cold starts);
DELETE /emulator/events clears it. Every response carries `X-Ollama-Emulator-Now` (emulated RFC 3339 time), which
this file's `ps`/`list` commands use as "now" so their relative times match the emulated clock.

Deviations from upstream (deliberate, see the behaviour doc for the real rules):
  - one emulated GPU; no OOM/retry (`evictAllAndWait`) and no automatic num_ctx step-down on OOM;
  - OLLAMA_LOAD_TIMEOUT is not emulated (emulated loads never stall);
  - the Host-header check (allowedHostsMiddleware) is implemented for loopback binds; the CORS check is implemented
    for the Origin header only (no preflight answers);
  - /api/ps entries whose expires_at fall in the same second keep load order (Go's map order is random);
  - bodies over OLLAMA_EMULATOR_MAX_BODY get 413 (gin has no limit);
  - /api/push, /api/create, /api/copy, /api/blobs and the OpenAI /v1 routes answer 501 (routes exist so the
    method checks give 405 like upstream).

Resident memory: peak RSS = VmHWM from /proc/PID/status of the `serve` process (Python 3.11.7, x86_64), read after
three loads and 200 simultaneous /api/ps connections (tests/emulator/test_emu_robust.py::
test_200_concurrent_ps_and_memory, which asserts < 40 MB): 27.5 MB (27516 kB) measured on 2026-11-26.
"""

import base64
import datetime
import fcntl
import hashlib
import http.client
import json
import math
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

VERSION = os.environ.get("OLLAMA_EMULATOR_VERSION", "0.33.0")
MAX_INT64 = 2**63 - 1
NS = 1_000_000_000
MINUTE_NS = 60 * NS
GIB = 1 << 30

# --------------------------------------------------------------------------------------------------------------
# Logging that never blocks: tests pipe our output and may never read it (a full pipe would hang the server).
# --------------------------------------------------------------------------------------------------------------


def _make_nonblocking(fd):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    except OSError:
        pass


def log(msg, level="INFO"):
    line = "time=%s level=%s source=ollama_emulator.py msg=%s\n" % (
        go_time(time.time_ns(), utc=False),
        level,
        msg,
    )
    try:
        os.write(2, line.encode("utf-8", "backslashreplace"))
    except OSError:
        pass  # pipe full or closed: drop the line rather than block a request thread


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


# --------------------------------------------------------------------------------------------------------------
# envconfig (envconfig/config.go)
# --------------------------------------------------------------------------------------------------------------


def env_var(key):
    """envconfig.Var: trim whitespace, then surrounding quotes."""
    return os.environ.get(key, "").strip().strip("\"'")


def env_keep_alive():
    """envconfig.KeepAlive(): ParseDuration, else ParseInt as seconds; negative -> MaxInt64; failure -> 5m, silently
    (config_test.go TestKeepAlive: `1d`, `1w`, `???`, ` ` all give 5m with no log line)."""
    ka = 5 * MINUTE_NS
    s = env_var("OLLAMA_KEEP_ALIVE")
    if s:
        try:
            ka = parse_go_duration(s)
        except GoError:
            try:
                ka = wrap_int64(go_parse_int(s) * NS)  # time.Duration(n) * time.Second wraps on overflow
            except ValueError:
                pass
    if ka < 0:
        return MAX_INT64
    return ka


def env_uint(key, default):
    """envconfig.Uint: ParseUint base 10; invalid -> warn `invalid environment variable, using default`."""
    s = env_var(key)
    if s:
        try:
            return go_parse_uint(s)
        except ValueError:
            log(
                '"invalid environment variable, using default" key=%s value="%s" default=%d' % (key, s, default), "WARN"
            )
    return default


def env_host():
    """envconfig.Host(): returns (scheme, host, port, path)."""
    default_port = "11434"
    s = env_var("OLLAMA_HOST").strip()
    if "://" in s:
        scheme, hostport = s.split("://", 1)
        if scheme == "http":
            default_port = "80"
        elif scheme == "https":
            default_port = "443"
    else:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    hostport, _, path = hostport.partition("/")
    host, port = split_host_port(hostport)
    if host is None:
        host, port = "127.0.0.1", default_port
        trimmed = hostport.strip("[]")
        if is_ip(trimmed):
            host = trimmed
        elif hostport:
            host = hostport
    try:
        n = go_parse_int(port, 32)
        if n > 65535 or n < 0:
            raise ValueError(port)
    except ValueError:
        log('"invalid port, using default" port=%s default=%s' % (port, default_port), "WARN")
        port = default_port
    return scheme, host, int(port), path


def split_host_port(hp):
    """net.SplitHostPort: returns (host, port) or (None, None) on error."""
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0 or hp[end + 1 : end + 2] != ":":
            return None, None
        return hp[1:end], hp[end + 2 :]
    i = hp.rfind(":")
    if i < 0:
        return None, None
    host = hp[:i]
    if ":" in host:
        return None, None
    return host, hp[i + 1 :]


def is_ip(s):
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, s)
            return True
        except (OSError, ValueError):
            pass
    return False


# --------------------------------------------------------------------------------------------------------------
# Model catalogue
# --------------------------------------------------------------------------------------------------------------

DAY_NS = 86400 * NS
# kv_bytes_per_token = 2 (K and V) x layers x kv_heads x head_dim x 2 bytes (f16), from each model's GGUF metadata.
DEFAULT_CATALOG = [
    {
        "name": "llama3.2:latest",
        "aliases": ["llama3.2:3b"],  # same blob: one runner (sched.go schedulerModelKey)
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "size": 2019393189,
        "family": "llama",
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
        "context_length": 131072,
        "embedding_length": 3072,
        "block_count": 28,
        "kv_bytes_per_token": 114688,
        "capabilities": ["completion", "tools"],
        "age_days": 20,
    },
    {
        "name": "llama3:latest",
        "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
        "size": 4661224676,
        "family": "llama",
        "parameter_size": "8.0B",
        "quantization_level": "Q4_0",
        "context_length": 8192,
        "embedding_length": 4096,
        "block_count": 32,
        "kv_bytes_per_token": 131072,
        "capabilities": ["completion"],
        "age_days": 90,
    },
    {
        "name": "qwen2.5:7b",
        "digest": "845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e",
        "size": 4683087332,
        "family": "qwen2",
        "parameter_size": "7.6B",
        "quantization_level": "Q4_K_M",
        "context_length": 32768,
        "embedding_length": 3584,
        "block_count": 28,
        "kv_bytes_per_token": 57344,
        "capabilities": ["completion", "tools"],
        "age_days": 45,
    },
    {
        "name": "nomic-embed-text:latest",
        "digest": "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        "size": 274302450,
        "family": "nomic-bert",
        "parameter_size": "137M",
        "quantization_level": "F16",
        "context_length": 2048,
        "embedding_length": 768,
        "block_count": 12,
        "kv_bytes_per_token": 36864,
        "capabilities": ["embedding"],
        "parameters": {"num_ctx": 8192},
        "age_days": 60,
    },
    {
        "name": "llama3.1:70b",
        "digest": "711a9e8463af04a2c9b3aaa6ae4c38e0c8a4d86e0e6e0d3d0d7c7e2b5b6f1a9c",
        "size": 42520413916,
        "family": "llama",
        "parameter_size": "70.6B",
        "quantization_level": "Q4_K_M",
        "context_length": 131072,
        "embedding_length": 8192,
        "block_count": 80,
        "kv_bytes_per_token": 327680,
        "capabilities": ["completion", "tools"],
        "age_days": 10,
    },
]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def parse_name(s):
    """types/model ParseName + DisplayShortest: `llama3.2` -> `llama3.2:latest`, default host/namespace dropped.
    Returns None for an invalid name."""
    if not isinstance(s, str) or not s or "@" in s:
        s = s.split("@", 1)[0] if isinstance(s, str) else s
        if not s:
            return None
    name, tag = s, "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) > 3 or not tag:
        return None
    host, ns = "registry.ollama.ai", "library"
    if len(parts) == 3:
        host, ns, model = parts
    elif len(parts) == 2:
        ns, model = parts
    else:
        model = parts[0]
    for part in (ns, model, tag):
        if not part or not set(part) <= _NAME_CHARS or not part[0].isalnum():
            return None
    if len(tag) > 80 or len(model) > 80:
        return None
    if host == "registry.ollama.ai":
        if ns == "library":
            return "%s:%s" % (model, tag)
        return "%s/%s:%s" % (ns, model, tag)
    return "%s/%s/%s:%s" % (host, ns, model, tag)


class Model:
    def __init__(self, d, now_ns):
        self.name = d["name"]
        self.digest = d.get("digest") or hashlib.sha256(self.name.encode()).hexdigest()
        self.size = int(d.get("size", 1_000_000_000))
        self.family = d.get("family", "llama")
        self.families = d.get("families", [self.family])
        self.format = d.get("format", "gguf")
        self.parameter_size = d.get("parameter_size", "1B")
        self.quantization_level = d.get("quantization_level", "Q4_K_M")
        self.context_length = int(d.get("context_length", 8192))
        self.embedding_length = int(d.get("embedding_length", 2048))
        self.block_count = int(d.get("block_count", 32))
        self.kv_bytes_per_token = int(d.get("kv_bytes_per_token", 131072))
        self.overhead = int(d.get("graph_overhead", 300_000_000))
        self.capabilities = list(d.get("capabilities", ["completion"]))
        self.parameters = dict(d.get("parameters", {}))
        if "modified_at" in d:
            self.modified_ns = parse_go_time(d["modified_at"])
        else:
            self.modified_ns = now_ns - int(float(d.get("age_days", 1)) * DAY_NS)
        self.path = "/usr/share/ollama/.ollama/models/blobs/sha256-" + self.digest  # runner key (blob path)

    def details(self):
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


class Catalog:
    def __init__(self, entries, now_ns):
        self.models = {}
        for d in entries:
            m = Model(d, now_ns)
            key = parse_name(m.name)
            if key is None:
                raise ValueError("invalid model name in catalogue: %r" % m.name)
            m.name = key
            self.models[key.lower()] = (key, m)
            for alias in d.get("aliases", []):
                akey = parse_name(alias)
                if akey:
                    self.models[akey.lower()] = (akey, m)
        self.lock = threading.Lock()

    def get(self, name):
        """Returns (display_name, Model) or (None, None)."""
        key = parse_name(name)
        if key is None:
            return None, None
        with self.lock:
            hit = self.models.get(key.lower())
        return hit if hit else (key, None)

    def entries(self):
        with self.lock:
            return list(self.models.values())

    def delete(self, name):
        key = parse_name(name)
        with self.lock:
            return key is not None and self.models.pop(key.lower(), None) is not None


# --------------------------------------------------------------------------------------------------------------
# Emulated clock
# --------------------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, scale):
        self.scale = scale
        self.wall0 = time.time_ns()
        self.mono0 = time.monotonic_ns()

    def now_ns(self):
        return self.wall0 + int((time.monotonic_ns() - self.mono0) * self.scale)

    def real_seconds(self, emulated_ns):
        return emulated_ns / NS / self.scale


# --------------------------------------------------------------------------------------------------------------
# Options (api/types.go Options, Runner, FromMap)
# --------------------------------------------------------------------------------------------------------------

OPTION_TYPES = {
    # Runner options (compared by needsReload)
    "num_ctx": "int",
    "num_batch": "int",
    "num_gpu": "int",
    "main_gpu": "int",
    "use_mmap": "boolptr",
    "num_thread": "int",
    "draft_num_predict": "int",
    # sampling options
    "num_keep": "int",
    "seed": "int",
    "num_predict": "int",
    "top_k": "int",
    "top_p": "float32",
    "min_p": "float32",
    "typical_p": "float32",
    "repeat_last_n": "int",
    "temperature": "float32",
    "repeat_penalty": "float32",
    "presence_penalty": "float32",
    "frequency_penalty": "float32",
    "stop": "array",
}
RUNNER_KEYS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")
RUNNER_DEFAULTS = {
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
    "num_thread": 0,
    "draft_num_predict": 0,
}


class ScheduleError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def options_from_map(m, out):
    """api/types.go Options.FromMap: unknown keys ignored with a log line; wrong types -> error (500 upstream)."""
    for key, val in m.items():
        typ = OPTION_TYPES.get(key)
        if typ is None:
            log('"invalid option provided" option=%s' % key, "WARN")
            continue
        if val is None:
            continue
        if typ == "int":
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ScheduleError(500, 'option "%s" must be of type integer' % key)
            try:
                out[key] = int(val)  # float64 truncated (FromMap SetInt(int64(t)))
            except (OverflowError, ValueError):
                out[key] = 0
        elif typ == "float32":
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ScheduleError(500, 'option "%s" must be of type float32' % key)
            out[key] = float(val)
        elif typ == "boolptr":
            if not isinstance(val, bool):
                raise ScheduleError(500, 'option "%s" must be of type boolean' % key)
            out[key] = val
        elif typ == "array":
            if not isinstance(val, list):
                raise ScheduleError(500, 'option "%s" must be of type array' % key)
            if not all(isinstance(x, str) for x in val):
                raise ScheduleError(500, 'option "%s" must be of an array of strings' % key)
            out[key] = val
    return out


# --------------------------------------------------------------------------------------------------------------
# Scheduler (server/sched.go)
# --------------------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, model, name, opts, auto, session_ns, seq):  # noqa: PLR0917
        self.model = model
        self.key = model.path
        self.name = name
        self.opts = opts
        self.auto = auto  # set of runner option names that were automatic (numCtxAuto etc.)
        self.session_ns = session_ns
        self.ref_count = 0
        self.expires_at = None  # None = Go zero time
        self.timer_armed = False
        self.loading = True
        self.unloaded = False
        self.expire_reason = None  # "evicted" / "reload" when the scheduler asked this runner to go
        self.size = 0
        self.size_vram = 0
        self.seq = seq


class Request:
    def __init__(self, model, name, opts, auto, keep_alive, aborted):  # noqa: PLR0917
        self.model = model
        self.name = name
        self.opts = opts
        self.auto = auto
        self.keep_alive = keep_alive  # None (nil) or ns
        self.aborted = aborted  # callable: True once the client has gone away
        self.reload = False


class Scheduler:
    def __init__(self, cfg, clock):
        self.cfg = cfg
        self.clock = clock
        self.cv = threading.Condition()
        self.runners = {}  # blob path -> Runner (insertion = load order)
        self.queue = []  # pending requests that need the scheduler (sched.go pendingReqCh), head is processed
        self.events = []
        self.unload_seq = 0
        self.seq = 0
        self.closing = False
        self.max_runners = cfg["max_runners"]
        t = threading.Thread(target=self._timer_loop, name="expiry", daemon=True)
        t.start()

    # ---- events -------------------------------------------------------------------------------------------
    def _event(self, event, reason, model, load_duration=None):
        ev = {"time": go_time(self.clock.now_ns(), utc=True), "event": event, "reason": reason, "model": model}
        if load_duration is not None:
            ev["load_duration"] = load_duration
        self.events.append(ev)
        if len(self.events) > 100000:
            del self.events[:50000]
        line = json.dumps(ev, separators=(",", ":"))
        log("emulator event %s" % line)
        path = self.cfg.get("events_file")
        if path:
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
            except OSError as e:
                log("cannot write events file: %s" % e, "WARN")

    def get_events(self):
        with self.cv:
            return list(self.events)

    def clear_events(self):
        with self.cv:
            self.events.clear()

    # ---- memory estimate ------------------------------------------------------------------------------------
    def _estimate(self, model, opts):
        """Memory of a runner: weights + KV cache (num_ctx x num_parallel, llm/memory.go) + graph overhead."""
        kv = model.kv_bytes_per_token * opts["num_ctx"] * self.cfg["num_parallel"]
        return model.size + kv + model.overhead

    def _vram_plan(self, model, opts, size, alone):
        """Bytes that would go to VRAM, or None if the model does not fit next to the loaded ones."""
        vram = self.cfg["vram"]
        if vram <= 0 or opts.get("num_gpu") == 0:
            return 0
        used = sum(r.size_vram for r in self.runners.values())
        free = max(vram - used, 0)
        want = size
        ngpu = opts.get("num_gpu", -1)
        if 0 < ngpu < model.block_count:
            want = size * ngpu // model.block_count
        if alone:
            # a model loaded alone may be split between GPU and CPU (sched.go processPending)
            return want if want <= free else int(free * 0.95)
        # v0.30.0+: with other models resident the new one must fit in 80% of free memory (sched.go processPending)
        return want if want <= free * 0.8 else None

    # ---- needsReload (sched.go runnerRef.needsReload) -----------------------------------------------------
    def _needs_reload(self, r, req):
        for k in RUNNER_KEYS:
            new, old = req.opts.get(k), r.opts.get(k)
            if k == "num_gpu" and new is not None and new < 0:
                continue  # num_gpu < 0 in the request never triggers a reload
            if k in ("num_ctx", "num_batch", "use_mmap") and k in req.auto and k in r.auto:
                continue  # v0.30.0+ numCtxAuto: both automatic -> not compared
            if new != old:
                return True
        return False

    # ---- using a loaded runner (sched.go useLoadedRunner) -------------------------------------------------
    def _use(self, r, req):
        r.ref_count += 1
        r.timer_armed = False  # the timer stops; expiresAt stays as it was (stale during the request)
        if req.keep_alive is not None:
            # v0.2.0+: a non-nil keep_alive replaces sessionDuration (last writer wins); nil keeps the old value
            r.session_ns = req.keep_alive
            if req.keep_alive > 0:
                r.expire_reason = None  # (inferred) restores a runner the scheduler marked for eviction
        return r

    def _usable(self, r, req):
        return r is not None and not r.loading and not r.unloaded and not self._needs_reload(r, req)

    # ---- acquire / release ----------------------------------------------------------------------------------
    def acquire(self, req):
        """sched.go GetRunner + processPending. Returns a Runner with ref_count taken, or raises ScheduleError."""
        with self.cv:
            r = self.runners.get(req.model.path)
            if self._usable(r, req):
                return self._use(r, req)  # GetRunner fast path: a reusable runner skips the pending queue
            if len(self.queue) > self.cfg["max_queue"]:
                raise ScheduleError(503, "server busy, please try again.  maximum pending requests exceeded")
            self.queue.append(req)
            try:
                while True:
                    if self.closing:
                        raise ScheduleError(500, "server shutting down")
                    if req.aborted():
                        raise ScheduleError(499, "request canceled")
                    r = self.runners.get(req.model.path)
                    if self._usable(r, req):
                        return self._use(r, req)
                    if self.queue[0] is not req or (r is not None and r.loading):
                        self.cv.wait(0.05)
                        continue
                    runner = self._process(req)
                    if runner is not None:
                        return runner
            finally:
                self.queue.remove(req)
                self.cv.notify_all()

    def _process(self, req):
        """One pass of processPending for the head request. Returns a Runner, or None to re-evaluate."""
        r = self.runners.get(req.model.path)
        if r is not None:
            # loaded but needsReload: expire it, wait for it to go, then load anew
            req.reload = True
            self._expire(r, "reload")
            return None
        if self.max_runners > 0 and len(self.runners) >= self.max_runners:
            # the cap is global and applies however much VRAM is free (sched.go processPending)
            victim = self._find_runner_to_unload()
            self._expire(victim, "evicted")
            return None
        size = self._estimate(req.model, req.opts)
        plan = self._vram_plan(req.model, req.opts, size, alone=not self.runners)
        if plan is None:
            victim = self._find_runner_to_unload()
            self._expire(victim, "evicted")
            return None
        return self._load(req, size, plan)

    def _find_runner_to_unload(self):
        """sched.go findRunnerToUnload: sort by (uint64(sessionDuration), model path); first idle one, else the first
        (busy) one. Not LRU; an idle pinned (-1 = MaxInt64) runner is taken when no shorter idle runner exists."""
        lst = sorted(self.runners.values(), key=lambda r: (r.session_ns % (1 << 64), r.key))
        for r in lst:
            if r.ref_count == 0:
                return r
        return lst[0]

    def _expire(self, r, reason):
        """Ask a runner to unload (sessionDuration = 0); an idle one goes now, a busy one when its requests end.
        Then wait (no timeout, sched.go) for some unload to happen."""
        seq = self.unload_seq
        r.session_ns = 0
        r.expire_reason = reason
        if r.ref_count == 0:
            self._unload(r)
            return
        while self.unload_seq == seq and not self.closing:
            if self.queue and self.queue[0].aborted():
                raise ScheduleError(499, "request canceled")
            self.cv.wait(0.05)

    def _unload(self, r, reason=None):
        if r.unloaded:
            return
        reason = reason or r.expire_reason or "keep_alive_0"
        r.unloaded = True
        r.timer_armed = False
        if self.runners.get(r.key) is r:
            del self.runners[r.key]
        self.unload_seq += 1
        self._event("eviction" if reason == "evicted" else "unload", reason, r.name)
        self.cv.notify_all()

    def _load(self, req, size, plan):
        """sched.go load: one load at a time; the runner sits in `loaded` while it loads; the load takes
        size / OLLAMA_EMULATOR_LOAD_BPS emulated seconds and is aborted when the client disconnects
        (llm/llama_server.go WaitUntilRunning)."""
        self.seq += 1
        # First load: the request's keep_alive, or envconfig.KeepAlive() when the request has none (sched.go load)
        session = req.keep_alive if req.keep_alive is not None else self.cfg["keep_alive"]
        r = Runner(req.model, req.name, req.opts, req.auto, session, self.seq)
        r.size, r.size_vram = size, plan
        self.runners[r.key] = r
        load_ns = int(size / self.cfg["load_bps"] * NS)
        deadline = time.monotonic() + self.clock.real_seconds(load_ns)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if req.aborted() or self.closing:
                r.unloaded = True
                del self.runners[r.key]
                self._event("load_aborted", "client_disconnected", r.name)
                log('"client connection closed before llama-server finished loading, aborting load" model=%s' % r.name)
                self.cv.notify_all()
                raise ScheduleError(499, "request canceled")
            self.cv.wait(min(left, 0.02))
        r.loading = False
        r.ref_count = 1
        self._event("reload" if req.reload else "load", "reload" if req.reload else "cold", r.name, load_ns / NS)
        self.cv.notify_all()
        return r

    def release(self, r):
        """sched.go processCompleted: when refCount reaches 0, sessionDuration <= 0 unloads now, otherwise
        expiresAt = now + sessionDuration and the idle timer starts."""
        with self.cv:
            r.ref_count -= 1
            if r.ref_count > 0 or r.unloaded:
                return
            r.ref_count = 0
            if r.session_ns <= 0:
                self._unload(r)
            else:
                r.expires_at = self.clock.now_ns() + r.session_ns
                r.timer_armed = True
                self.cv.notify_all()

    def expire_runner(self, model):
        """sched.go expireRunner (keep_alive 0 with an empty prompt): expiresAt = now, sessionDuration = 0; unload now
        if idle, else when in-flight requests end. Never loads."""
        with self.cv:
            r = self.runners.get(model.path)
            if r is None or r.loading:
                if r is not None:
                    r.session_ns = 0
                return
            r.expires_at = self.clock.now_ns()
            r.timer_armed = False
            r.session_ns = 0
            if r.expire_reason is None:
                r.expire_reason = "keep_alive_0"
            if r.ref_count <= 0:
                self._unload(r)

    def _timer_loop(self):
        """The per-runner AfterFunc timers, as one thread re-checking under the lock (a stale wake-up cannot unload
        a runner whose expiry moved or that is busy again)."""
        with self.cv:
            while not self.closing:
                now = self.clock.now_ns()
                nearest = None
                for r in list(self.runners.values()):
                    if not r.timer_armed or r.ref_count or r.loading or r.expires_at is None:
                        continue
                    if r.expires_at <= now:
                        self._unload(r, "expired")
                    elif nearest is None or r.expires_at < nearest:
                        nearest = r.expires_at
                timeout = 3600.0 if nearest is None else min(self.clock.real_seconds(nearest - now), 3600.0)
                self.cv.wait(max(timeout, 0.001))

    # ---- /api/ps (routes.go PsHandler, sched.go loadedModels) ---------------------------------------------
    def ps(self, aborted):
        with self.cv:
            if self.cfg["ps_blocks"]:
                # v0.32.4+ (inferred): loadedModels takes each runner's refMu, held by load() until the runner is up
                while any(r.loading for r in self.runners.values()) and not aborted() and not self.closing:
                    self.cv.wait(0.05)
            now = self.clock.now_ns()
            rows = []
            for r in self.runners.values():
                if r.unloaded or (r.loading and self.cfg["ps_blocks"]):
                    continue
                # a zero expiresAt (loading, or during the first request) is reported as now + sessionDuration
                exp = r.expires_at if r.expires_at is not None else now + r.session_ns
                rows.append((exp, r))
            # v0.2.0+: stable sort on expires_at.Unix() descending (pinned first)
            rows.sort(key=lambda x: -(x[0] // NS))
            out = []
            for exp, r in rows:
                out.append(
                    {
                        "name": r.name,
                        "model": r.name,
                        "size": r.size,
                        "digest": r.model.digest,
                        "details": r.model.details(),
                        "expires_at": go_time(exp),
                        "size_vram": r.size_vram,
                        "context_length": r.opts["num_ctx"],
                    }
                )
            return out

    def unload_all(self, reason):
        """routes.go Serve: on SIGINT/SIGTERM unloadAllRunners after srvr.Close()."""
        with self.cv:
            self.closing = True
            for r in list(self.runners.values()):
                self._unload(r, reason)
            self.cv.notify_all()


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
            return 0  # float64 -> int64 overflow is implementation-defined; amd64 goes negative and acts like 0
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


# --------------------------------------------------------------------------------------------------------------
# HTTP server (server/routes.go GenerateRoutes)
# --------------------------------------------------------------------------------------------------------------

ROUTES = {
    "/": ("GET", "HEAD"),
    "/api/version": ("GET", "HEAD"),
    "/api/tags": ("GET", "HEAD"),
    "/api/ps": ("GET",),
    "/api/generate": ("POST",),
    "/api/chat": ("POST",),
    "/api/embed": ("POST",),
    "/api/embeddings": ("POST",),
    "/api/show": ("POST",),
    "/api/pull": ("POST",),
    "/api/push": ("POST",),
    "/api/create": ("POST",),
    "/api/copy": ("POST",),
    "/api/delete": ("DELETE",),
    "/v1/chat/completions": ("POST",),
    "/v1/completions": ("POST",),
    "/v1/embeddings": ("POST",),
    "/v1/models": ("GET",),
    "/emulator/events": ("GET", "DELETE"),
}
NOT_IMPLEMENTED = {"/api/push", "/api/create", "/api/copy", "/v1/chat/completions", "/v1/completions"}
NOT_IMPLEMENTED |= {"/v1/embeddings", "/v1/models"}

BUILTIN_ORIGINS = [
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
]

RESPONSE_WORDS = (
    "The sky appears blue because molecules in the air scatter short blue wavelengths of sunlight more than "
    "the longer red ones, an effect called Rayleigh scattering."
).split(" ")


def origin_allowed(origin, allowed):
    for pat in allowed:
        if pat in ("*", origin):
            return True
        if "*" in pat:
            pre, _, post = pat.partition("*")
            if origin.startswith(pre) and origin.endswith(post) and len(origin) >= len(pre) + len(post):
                return True
    return False


def host_allowed(host_header):
    """routes.go allowedHostsMiddleware (only enforced when bound to loopback)."""
    host = host_header
    h, _ = split_host_port(host_header)
    if h is not None:
        host = h
    host = host.strip("[]").lower()
    if not host:
        return True
    if is_ip(host):
        return host.startswith(("127.", "10.", "192.168.", "169.254.")) or _private_ip(host) or host in _local_ips()
    if host == "localhost" or host == socket.gethostname().lower():
        return True
    return host.endswith((".localhost", ".local", ".internal"))


def _private_ip(ip):
    if ":" in ip:
        return ip in ("::1",) or ip.startswith(("fc", "fd", "fe80"))
    a, b = (int(x) for x in ip.split(".")[:2])
    return a == 172 and 16 <= b <= 31 or a == 100 and 64 <= b <= 127 or a == 198 and b in (18, 19)


def _local_ips():
    try:
        return set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        return set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-emulator"
    sys_version = ""
    timeout = 120  # socket timeout: a stalled client cannot pin a thread forever

    # ---- plumbing ---------------------------------------------------------------------------------------------
    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler signature
        pass

    def log_request(self, code="-", size="-"):
        log(
            '[GIN] %s | %s | %s | "%s"'
            % (code, self.client_address[0] if self.client_address else "-", self.command, self.path)
        )

    def version_string(self):
        return ""

    def _start(self, status, ctype, length=None, extra=None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("X-Ollama-Emulator-Now", go_time(self.server.app.clock.now_ns(), utc=False))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _json(self, status, obj):
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
        self._start(status, "application/json; charset=utf-8", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message):
        self._json(status, {"error": message})

    def _text(self, status, text):
        body = text.encode()
        self._start(status, "text/plain; charset=utf-8", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream_start(self):
        self._start(200, "application/x-ndjson", extra={"Transfer-Encoding": "chunked"})

    def _chunk(self, obj):
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace") + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream_end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _read_body(self):
        """Read the request body (Content-Length or chunked). Raises _TooLarge / _BadRequest."""
        limit = self.server.app.cfg["max_body"]
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise _BadRequest("unexpected EOF")
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    raise _BadRequest("invalid chunk length") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                if len(out) + size > limit:
                    raise _TooLarge()
                out += self.rfile.read(size)
                self.rfile.readline(1024)
        cl = self.headers.get("Content-Length")
        if not cl:
            return b""
        try:
            n = int(cl)
            if n < 0:
                raise ValueError(cl)
        except ValueError:
            raise _BadRequest("invalid Content-Length") from None
        if n > limit:
            raise _TooLarge()
        data = self.rfile.read(n)
        return data

    def aborted(self):
        """True once the client closed its side (select + recv(MSG_PEEK) on the request socket)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ---- dispatch ---------------------------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self):
        app = self.server.app
        try:
            path = urlsplit(self.path).path
        except ValueError:
            path = self.path
        try:
            self.body = b""
            if self.command in ("POST", "PUT", "PATCH", "DELETE") or self.headers.get("Content-Length"):
                self.body = self._read_body()
        except _TooLarge:
            self.close_connection = True
            self._error(413, "request body too large")
            return
        except _BadRequest as e:
            self.close_connection = True
            self._text(400, "400 Bad Request: %s" % e)
            return
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            if app.loopback and not host_allowed(self.headers.get("Host", "")):
                self._start(403, None, 0)
                return
            origin = self.headers.get("Origin")
            if origin is not None and not origin_allowed(origin, app.origins):
                self._start(403, None, 0)
                return
            methods = ROUTES.get(path)
            if methods is None:
                self._text(404, "404 page not found")
                return
            if self.command not in methods:
                self._text(405, "405 method not allowed")
                return
            if path in NOT_IMPLEMENTED:
                self._error(501, "not implemented by the ollama emulator")
                return
            getattr(self, "h_" + path.strip("/").replace("/", "_").replace(".", "_") if path != "/" else "h_root")()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # never let one bad request kill the thread silently
            log("internal error on %s %s: %r" % (self.command, path, e), "ERROR")
            self.close_connection = True
            try:
                self._error(500, "internal emulator error: %s" % e)
            except OSError:
                pass

    # ---- simple endpoints ---------------------------------------------------------------------------------
    def h_root(self):
        self._text(200, "Ollama is running")

    def h_api_version(self):
        self._json(200, {"version": VERSION})

    def h_api_tags(self):
        """routes.go ListHandler: models sorted by modified_at, newest first; `[]` when empty."""
        app = self.server.app
        models = []
        for name, m in sorted(app.catalog.entries(), key=lambda x: (-x[1].modified_ns, x[0])):
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": go_time(m.modified_ns),
                    "size": m.size,
                    "digest": m.digest,
                    "details": m.details(),
                }
            )
        self._json(200, {"models": models})

    def h_api_ps(self):
        self._json(200, {"models": self.server.app.sched.ps(self.aborted)})

    def h_emulator_events(self):
        sched = self.server.app.sched
        if self.command == "DELETE":
            sched.clear_events()
            self._json(200, {"events": []})
        else:
            self._json(200, {"events": sched.get_events()})

    def _bind(self, schema):
        try:
            return bind(self.body, schema)
        except BindError as e:
            self._error(400, e.message)
            return None

    def h_api_show(self):
        """routes.go ShowHandler."""
        req = self._bind("show")
        if req is None:
            return
        name = req.get("model") or req.get("name") or ""
        if not name:
            self._error(400, "model is required")
            return
        display, m = self.server.app.catalog.get(name)
        if m is None:
            self._error(404, "model '%s' not found" % (display or name))
            return
        arch = m.family.replace("-", "_")
        params = dict(m.parameters)
        param_text = "\n".join("%-30s %s" % (k, v) for k, v in params.items())
        self._json(
            200,
            {
                "license": "LICENSE (emulated)",
                "modelfile": "# Modelfile generated by the ollama emulator\nFROM %s\n%s" % (m.path, param_text),
                "parameters": param_text,
                "template": "{{ .Prompt }}",
                "details": m.details(),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": _param_count(m.parameter_size),
                    "general.file_type": 15,
                    "%s.context_length" % arch: m.context_length,
                    "%s.embedding_length" % arch: m.embedding_length,
                    "%s.block_count" % arch: m.block_count,
                },
                "capabilities": m.capabilities,
                "modified_at": go_time(m.modified_ns),
            },
        )

    def h_api_delete(self):
        req = self._bind("delete")
        if req is None:
            return
        name = req.get("model") or req.get("name") or ""
        if not name:
            self._error(400, "model is required")
            return
        if not self.server.app.catalog.delete(name):
            self._error(404, "model '%s' not found" % name)
            return
        self._start(200, None, 0)

    def h_api_pull(self):
        """server/images.go PullModel: NDJSON status lines; unknown model -> error line (status 200 when streaming)."""
        req = self._bind("pull")
        if req is None:
            return
        name = req.get("model") or req.get("name") or ""
        if not name:
            self._error(400, "model is required")
            return
        app = self.server.app
        display, m = app.catalog.get(name)
        if display is None:
            self._error(400, "invalid model name")
            return
        stream = req.get("stream", True)
        lines = [{"status": "pulling manifest"}]
        if m is None:
            lines.append({"error": "pull model manifest: file does not exist"})
        else:
            layers = [(m.digest, m.size), (hashlib.sha256(m.name.encode() + b"license").hexdigest(), 12403)]
            for digest, total in layers:
                for frac in (0, 1):
                    lines.append(
                        {
                            "status": "pulling %s" % digest[:12],
                            "digest": "sha256:" + digest,
                            "total": total,
                            "completed": total * frac,
                        }
                    )
            lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        if not stream:
            last = lines[-1]
            if "error" in last:
                self._error(500, last["error"])  # routes.go waitForStream
            else:
                self._json(200, last)
            return
        self._stream_start()
        for line in lines:
            self._chunk(line)
        self._stream_end()

    # ---- scheduled endpoints ---------------------------------------------------------------------------------
    def _model_options(self, m, req_options):
        """routes.go modelOptions: defaults, then Modelfile parameters, then request options (FromMap).
        Returns (runner options dict, set of automatic runner options, full options dict)."""
        app = self.server.app
        opts = dict(RUNNER_DEFAULTS)
        opts["num_ctx"] = app.default_num_ctx
        auto = {"num_ctx", "num_batch", "use_mmap"}
        if app.cfg["context_length"] > 0:
            auto.discard("num_ctx")  # OLLAMA_CONTEXT_LENGTH sets it: not automatic
        options_from_map(m.parameters, opts)
        options_from_map(req_options or {}, opts)
        for k in ("num_ctx", "num_batch", "use_mmap"):
            if k in m.parameters or (req_options and req_options.get(k) is not None):
                auto.discard(k)
        # the effective num_ctx is clamped to the training context (llm/server.go) and raised to 4 (sched.go
        # GetRunner); needsReload compares the clamped value
        opts["num_ctx"] = max(min(opts["num_ctx"], m.context_length), 4)
        runner = {k: opts.get(k) for k in RUNNER_KEYS}
        return runner, auto, opts

    def _schedule(self, m, display, req, caps_name=None):
        """routes.go scheduleRunner + handleScheduleError. Returns (runner, options) or (None, None) on error."""
        app = self.server.app
        try:
            if caps_name and "completion" not in m.capabilities:
                raise ScheduleError(400, '"%s" does not support %s' % (req.get("model"), caps_name))
            runner_opts, auto, opts = self._model_options(m, req.get("options"))
            sreq = Request(m, display, runner_opts, auto, req.get("keep_alive"), self.aborted)
            r = app.sched.acquire(sreq)
            return r, opts
        except ScheduleError as e:
            self._error(e.status, e.message)
            return None, None

    def _lookup(self, req, empty_msg, empty_status):
        name = req.get("model") or ""
        if not name:
            self._error(empty_status, empty_msg)
            return None, None
        display, m = self.server.app.catalog.get(name)
        if m is None:
            self._error(404, "model '%s' not found" % name)
            return None, None
        return display, m

    def h_api_generate(self):
        self._complete(chat=False)

    def h_api_chat(self):
        self._complete(chat=True)

    def _complete(self, chat):
        """routes.go GenerateHandler / ChatHandler."""
        app = self.server.app
        req = self._bind("chat" if chat else "generate")
        if req is None:
            return
        if chat:
            display, m = self._lookup(req, "model is required", 400)
        else:
            display, m = self._lookup(req, "model '' not found", 404)
        if m is None:
            return
        empty = not req.get("messages") if chat else not req.get("prompt")
        base = {"model": req.get("model"), "created_at": go_time(app.clock.now_ns(), utc=True)}
        if chat:
            base["message"] = {"role": "assistant", "content": ""}
        else:
            base["response"] = ""
        ka = req.get("keep_alive")
        if empty and ka is not None and ka == 0:
            # v0.3.11+: keep_alive 0 with an empty prompt unloads (sched.go expireRunner); never loads
            app.sched.expire_runner(m)
            self._json(200, _done(base, chat, "unload"))
            return
        t0 = app.clock.now_ns()
        r, opts = self._schedule(m, display, req, "chat" if chat else "generate")
        if r is None:
            return
        try:
            if empty:
                # load only: one JSON object whatever `stream` says, no metrics
                self._json(200, _done(base, chat, "load"))
                return
            self._generate(req, chat, opts, base, t0)
        finally:
            app.sched.release(r)

    def _generate(self, req, chat, opts, base, t0):
        app = self.server.app
        if chat:
            prompt = " ".join(str(mm.get("content") or "") for mm in req.get("messages") or [] if mm)
        else:
            prompt = req.get("prompt") or ""
        load_ns = max(app.clock.now_ns() - t0, 0)
        n_prompt = max(len(prompt.split()), 1) + 10
        limit = opts.get("num_predict", -1)
        words = RESPONSE_WORDS if limit is None or limit < 0 else RESPONSE_WORDS[:limit]
        reason = "length" if len(words) < len(RESPONSE_WORDS) else "stop"
        tok_ns = int(NS / app.cfg["token_rate"])
        stream = req.get("stream", True)
        prompt_ns = n_prompt * tok_ns // 10
        time.sleep(app.clock.real_seconds(prompt_ns))
        if stream:
            self._stream_start()
        text = []
        for i, w in enumerate(words):
            time.sleep(app.clock.real_seconds(tok_ns))
            piece = w if i == 0 else " " + w
            text.append(piece)
            if stream:
                chunk = dict(base, created_at=go_time(app.clock.now_ns(), utc=True), done=False)
                if chat:
                    chunk["message"] = {"role": "assistant", "content": piece}
                else:
                    chunk["response"] = piece
                self._chunk(chunk)
        final = dict(base, created_at=go_time(app.clock.now_ns(), utc=True))
        if chat and not stream:
            final["message"] = {"role": "assistant", "content": "".join(text)}
        elif not chat and not stream:
            final["response"] = "".join(text)
        final = _done(final, chat, reason)
        if not chat and not req.get("raw"):
            final["context"] = list(range(1, n_prompt + len(words) + 1))
        final.update(
            {
                "total_duration": max(app.clock.now_ns() - t0, 1),
                "load_duration": max(load_ns, 1),
                "prompt_eval_count": n_prompt,
                "prompt_eval_duration": max(prompt_ns, 1),
                "eval_count": len(words),
                "eval_duration": max(len(words) * tok_ns, 1),
            }
        )
        if stream:
            self._chunk(final)
            self._stream_end()
        else:
            self._json(200, final)

    def h_api_embed(self):
        """routes.go EmbedHandler: input string or list of strings; any model can embed."""
        app = self.server.app
        req = self._bind("embed")
        if req is None:
            return
        name = req.get("model") or ""
        if not name:
            self._error(400, "model is required")
            return
        inp = req.get("input")
        if isinstance(inp, str):
            inputs = [inp] if inp else []
        elif inp is None:
            inputs = []
        elif isinstance(inp, list) and all(isinstance(x, str) for x in inp):
            inputs = inp
        else:
            self._error(400, "invalid input type")
            return
        display, m = app.catalog.get(name)
        if m is None:
            self._error(404, 'model "%s" not found, try pulling it first' % name)
            return
        t0 = app.clock.now_ns()
        r, _ = self._schedule(m, display, req)
        if r is None:
            return
        try:
            load_ns = app.clock.now_ns() - t0
            vecs = [_embedding(m, s) for s in inputs]
            out = {"model": req.get("model"), "embeddings": vecs}
            if inputs:
                out.update(
                    {
                        "total_duration": max(app.clock.now_ns() - t0, 1),
                        "load_duration": max(load_ns, 1),
                        "prompt_eval_count": sum(len(s.split()) + 2 for s in inputs),
                    }
                )
            self._json(200, out)
        finally:
            app.sched.release(r)

    def h_api_embeddings(self):
        """routes.go EmbeddingsHandler (legacy): {"embedding": [...]}; empty prompt loads only."""
        app = self.server.app
        req = self._bind("embeddings")
        if req is None:
            return
        name = req.get("model") or ""
        display, m = app.catalog.get(name) if name else (None, None)
        if m is None:
            self._error(404, 'model "%s" not found, try pulling it first' % name)
            return
        r, _ = self._schedule(m, display, req)
        if r is None:
            return
        try:
            prompt = req.get("prompt") or ""
            self._json(200, {"embedding": _embedding(m, prompt) if prompt else []})
        finally:
            app.sched.release(r)


class _TooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


def _done(base, chat, reason):
    d = dict(base)
    if chat:
        d["done_reason"] = reason
        d["done"] = True
    else:
        d["done"] = True
        d["done_reason"] = reason
    return d


def _embedding(m, text):
    dim = min(m.embedding_length, 4096)
    seed = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    vals = []
    while len(vals) < dim:
        seed = hashlib.sha256(seed).digest()
        vals.extend(x / 32768.0 - 1.0 for x in struct.unpack("<16H", seed))
    vals = vals[:dim]
    norm = math.sqrt(sum(v * v for v in vals)) or 1.0
    return [round(v / norm, 7) for v in vals]


def _param_count(s):
    try:
        mult = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[s[-1].upper()]
        return int(float(s[:-1]) * mult)
    except (KeyError, ValueError, IndexError):
        return 0


# --------------------------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------------------------


class App:
    pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        log("connection error from %s: %r" % (client_address, sys.exc_info()[1]), "WARN")


class Server6(Server):
    address_family = socket.AF_INET6


def load_config():
    cfg = {}
    try:
        scale = float(os.environ.get("OLLAMA_EMULATOR_TIME_SCALE", "1") or "1")
        if not scale > 0 or math.isinf(scale):
            raise ValueError(scale)
    except ValueError:
        log("invalid OLLAMA_EMULATOR_TIME_SCALE, using 1", "WARN")
        scale = 1.0
    cfg["scale"] = scale
    cfg["keep_alive"] = env_keep_alive()
    # MaxRunners: 0 = auto = defaultModelsPerGPU (3) x max(#GPUs, 1); one emulated GPU (sched.go processPending)
    cfg["max_runners"] = env_uint("OLLAMA_MAX_LOADED_MODELS", 0) or 3
    cfg["num_parallel"] = max(env_uint("OLLAMA_NUM_PARALLEL", 1), 1)  # sched.go load: max(n, 1)
    cfg["context_length"] = env_uint("OLLAMA_CONTEXT_LENGTH", 0)
    cfg["max_queue"] = env_uint("OLLAMA_MAX_QUEUE", 512)

    def num(key, default, conv=int):
        try:
            v = conv(os.environ.get(key, "") or default)
            if v < 0:
                raise ValueError(v)
            return v
        except ValueError:
            log("invalid %s, using %s" % (key, default), "WARN")
            return conv(default)

    cfg["vram"] = num("OLLAMA_EMULATOR_VRAM", 16 * GIB)
    cfg["load_bps"] = num("OLLAMA_EMULATOR_LOAD_BPS", 1e9, float) or 1e9
    cfg["token_rate"] = num("OLLAMA_EMULATOR_TOKEN_RATE", 100, float) or 100.0
    cfg["max_body"] = num("OLLAMA_EMULATOR_MAX_BODY", 16 * 1024 * 1024)
    cfg["ps_blocks"] = os.environ.get("OLLAMA_EMULATOR_PS_BLOCKS", "1").strip() not in ("0", "false", "no")
    cfg["events_file"] = os.environ.get("OLLAMA_EMULATOR_EVENTS_FILE") or None
    return cfg


def default_num_ctx(cfg):
    """routes.go Serve: OLLAMA_CONTEXT_LENGTH, else by total VRAM (>= 47 GiB 262144, >= 23 GiB 32768, else 4096)."""
    if cfg["context_length"] > 0:
        return cfg["context_length"]
    vram = cfg["vram"]
    if vram >= 47 * GIB:
        return 262144
    if vram >= 23 * GIB:
        return 32768
    return 4096


def serve():
    _make_nonblocking(1)
    _make_nonblocking(2)
    cfg = load_config()
    app = App()
    app.cfg = cfg
    app.clock = Clock(cfg["scale"])
    path = os.environ.get("OLLAMA_EMULATOR_CATALOG")
    try:
        if path:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            entries = data["models"] if isinstance(data, dict) else data
        else:
            entries = DEFAULT_CATALOG
        app.catalog = Catalog(entries, app.clock.now_ns())
    except (OSError, ValueError, KeyError, TypeError) as e:
        log("cannot load OLLAMA_EMULATOR_CATALOG %s: %s" % (path, e), "ERROR")
        return 1
    app.default_num_ctx = default_num_ctx(cfg)
    app.sched = Scheduler(cfg, app.clock)
    origins = [o for o in env_var("OLLAMA_ORIGINS").split(",") if o] if env_var("OLLAMA_ORIGINS") else []
    app.origins = origins + BUILTIN_ORIGINS
    _scheme, host, port, _path = env_host()
    bind_host = host
    cls = Server6 if ":" in bind_host else Server
    try:
        httpd = cls((bind_host, port), Handler)
    except OSError as e:
        log("Error: listen tcp %s:%d: %s" % (host, port, e.strerror), "ERROR")
        return 1
    app.loopback = bind_host in ("127.0.0.1", "::1", "localhost") or bind_host.startswith("127.")
    httpd.app = app

    def on_signal(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(
        '"Listening on %s:%d (version %s, ollama emulator)" OLLAMA_KEEP_ALIVE=%dns OLLAMA_MAX_LOADED_MODELS=%d '
        "OLLAMA_NUM_PARALLEL=%d OLLAMA_CONTEXT_LENGTH=%d OLLAMA_MODELS=%s time_scale=%g vram=%d"
        % (
            host,
            port,
            VERSION,
            cfg["keep_alive"],
            cfg["max_runners"],
            cfg["num_parallel"],
            cfg["context_length"],
            os.environ.get("OLLAMA_MODELS") or "~/.ollama/models",
            cfg["scale"],
            cfg["vram"],
        )
    )
    try:
        httpd.serve_forever(poll_interval=0.25)
    except SystemExit:
        pass
    finally:
        # routes.go Serve: srvr.Close() drops connections at once, then unloadAllRunners
        try:
            httpd.socket.close()
        except OSError:
            pass
        app.sched.unload_all("stopped")
        log('"shutting down" reason=signal')
        os._exit(0)
    return 0


# --------------------------------------------------------------------------------------------------------------
# CLI client (cmd/cmd.go) and format helpers (format/time.go, format/bytes.go)
# --------------------------------------------------------------------------------------------------------------


def human_bytes(b):
    """format/bytes.go HumanBytes: decimal units; >= 10 prints an integer, non-integers below 10 one decimal."""
    for unit_name, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if b >= size:
            value, unit = b / size, unit_name
            break
    else:
        return "%d B" % b
    if value >= 10:
        return "%d %s" % (int(value), unit)
    if value != math.trunc(value):
        return "%.1f %s" % (value, unit)
    return "%d %s" % (int(value), unit)


def _tdiv(a, b):
    """Go integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _go_round(x):
    """Go math.Round: half away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def human_duration(d_ns):
    """format/time.go HumanDuration."""
    seconds = int(d_ns / NS)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return "%d seconds" % seconds
    minutes = int(d_ns / MINUTE_NS)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return "%d minutes" % minutes
    hours_f = d_ns / (3600 * NS)
    hours = int(_go_round(hours_f))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return "%d hours" % hours
    if hours < 24 * 7 * 2:
        return "%d days" % _tdiv(hours, 24)
    if hours < 24 * 30 * 2:
        return "%d weeks" % _tdiv(_tdiv(hours, 24), 7)
    if hours < 24 * 365 * 2:
        return "%d months" % _tdiv(_tdiv(hours, 24), 30)
    return "%d years" % int(hours_f / 24 / 365)


def human_time(t_ns, now_ns, zero_value):
    """format/time.go humanTime; t_ns None = Go zero time."""
    if t_ns is None:
        return zero_value
    delta = now_ns - t_ns
    if _tdiv(_tdiv(int(delta / (3600 * NS)), 24), 365) < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def processor_text(size, size_vram):
    """cmd/cmd.go ListRunningHandler PROCESSOR column."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = int(_go_round((size - size_vram) / size * 100))
    return "%d%%/%d%% CPU/GPU" % (cpu, 100 - cpu)


def until_text(expires_at, now_ns):
    """cmd/cmd.go ListRunningHandler UNTIL column: past (incl. zero time) -> Stopping..., else humanTime."""
    t = parse_go_time(expires_at)
    if t <= -62135596800 * NS:  # 0001-01-01T00:00:00Z
        return "Stopping..."
    if now_ns - t > 0:
        return "Stopping..."
    return human_time(t, now_ns, "Never")


def format_table(header, rows):
    """olekukonko/tablewriter as configured by cmd.go: no borders, left aligned, 4-space padding."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header] + rows:
        lines.append("    ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(lines) + "\n"


def ps_table(models, now_ns, prefix=None):
    rows = []
    for m in models:
        if prefix and not m["name"].startswith(prefix):
            continue
        rows.append(
            [
                m["name"],
                m["digest"][:12],
                human_bytes(m["size"]),
                processor_text(m["size"], m.get("size_vram", 0)),
                str(m.get("context_length", 0)),
                until_text(m["expires_at"], now_ns),
            ]
        )
    return format_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows)


def list_table(models, now_ns):
    rows = []
    for m in models:
        rows.append(
            [
                m["name"],
                m["digest"][:12],
                human_bytes(m["size"]),
                human_time(parse_go_time(m["modified_at"]), now_ns, "Never"),
            ]
        )
    return format_table(["NAME", "ID", "SIZE", "MODIFIED"], rows)


class CLIError(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def _client_request(method, path, body=None, stream=False):
    """api/client.go ClientFromEnvironment: OLLAMA_HOST as Host() gives it."""
    scheme, host, port, base = env_host()
    if not host or host in ("0.0.0.0", "::"):  # noqa: S104 - Go dials these as the local host
        host = "127.0.0.1" if host != "::" else "::1"
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = cls(host, port, timeout=600)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    full = ("/" + base.strip("/") if base else "") + path
    try:
        conn.request(method, full, body=data, headers=headers)
        resp = conn.getresponse()
    except OSError as e:
        raise CLIError("could not connect to ollama server, run 'ollama serve' to start it (%s)" % e) from None
    now_hdr = resp.getheader("X-Ollama-Emulator-Now")
    now_ns = parse_go_time(now_hdr) if now_hdr else time.time_ns()
    if stream:
        return resp, now_ns
    raw = resp.read()
    conn.close()
    try:
        obj = json.loads(raw) if raw else {}
    except ValueError:
        obj = {"error": raw.decode("utf-8", "replace").strip()}
    if resp.status >= 400:
        msg = obj.get("error") if isinstance(obj, dict) else None
        raise CLIError(msg or raw.decode("utf-8", "replace").strip(), resp.status)
    return obj, now_ns


def cli(argv):
    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(
            "Usage:\n  ollama [flags]\n  ollama [command]\n\nAvailable Commands:\n  serve, run, stop, pull, list, ps\n"
        )
        return 0
    cmd = args.pop(0)
    try:
        if cmd in ("--version", "-v", "version"):
            try:
                obj, _ = _client_request("GET", "/api/version")
                print("ollama version is %s" % obj.get("version", "0.0.0"))
                if obj.get("version") != VERSION:
                    print("Warning: client version is %s" % VERSION, file=sys.stderr)
            except CLIError:
                print("Warning: could not connect to a running Ollama instance", file=sys.stderr)
                print("Warning: client version is %s" % VERSION, file=sys.stderr)
            return 0
        if cmd == "serve":
            return serve()
        if cmd == "ps":
            obj, now = _client_request("GET", "/api/ps")
            sys.stdout.write(ps_table(obj.get("models") or [], now, args[0] if args else None))
            return 0
        if cmd in ("list", "ls"):
            obj, now = _client_request("GET", "/api/tags")
            sys.stdout.write(list_table(obj.get("models") or [], now))
            return 0
        if cmd == "stop":
            if len(args) != 1:
                raise CLIError("accepts 1 arg(s), received %d" % len(args))
            try:
                # cmd/cmd.go StopHandler -> loadOrUnloadModel with KeepAlive 0 (marshalled as "0s")
                _client_request("POST", "/api/generate", {"model": args[0], "keep_alive": "0s"})
            except CLIError as e:
                if e.status == 404:
                    raise CLIError('couldn\'t find model "%s" to stop' % args[0]) from None
                raise
            return 0
        if cmd == "run":
            return _cli_run(args)
        if cmd == "pull":
            if len(args) != 1:
                raise CLIError("accepts 1 arg(s), received %d" % len(args))
            resp, _ = _client_request("POST", "/api/pull", {"model": args[0]}, stream=True)
            for line in resp:
                obj = json.loads(line)
                if "error" in obj:
                    raise CLIError(obj["error"])
                print(obj.get("status", ""))
            return 0
        raise CLIError('unknown command "%s" for "ollama"' % cmd)
    except CLIError as e:
        print("Error: %s" % e, file=sys.stderr)
        return 1


def _cli_run(args):
    keepalive = None
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "--keepalive" and i + 1 < len(args):
            try:
                keepalive = parse_go_duration(args[i + 1])  # cmd.go uses time.ParseDuration for --keepalive
            except GoError as e:
                raise CLIError('invalid argument "%s" for "--keepalive" flag: %s' % (args[i + 1], e)) from None
            i += 2
            continue
        rest.append(args[i])
        i += 1
    if not rest:
        raise CLIError("requires at least 1 arg(s), only received 0")
    body = {"model": rest[0], "prompt": " ".join(rest[1:])}
    if keepalive is not None:
        # api/types.go Duration.MarshalJSON: negative -> -1, else a duration string (sent here in ns)
        body["keep_alive"] = (
            -1 if keepalive < 0 else "%ds" % (keepalive // NS) if keepalive % NS == 0 else "%dns" % keepalive
        )
    resp, _ = _client_request("POST", "/api/generate", body, stream=True)
    if resp.status >= 400:
        raw = resp.read()
        try:
            msg = json.loads(raw).get("error")
        except ValueError:
            msg = raw.decode("utf-8", "replace")
        raise CLIError(msg)
    for line in resp:
        obj = json.loads(line)
        if "error" in obj:
            raise CLIError(obj["error"])
        sys.stdout.write(obj.get("response", ""))
        sys.stdout.flush()
    if body["prompt"]:
        sys.stdout.write("\n")
    return 0


def main():
    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
