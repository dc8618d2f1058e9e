"""Environment variables: the upstream ones `ollama serve` reads (envconfig/config.go) and the emulator-only ones.

`load_config()` reads them all once at start-up into a plain dict (see the package docstring for the list).
"""

import math
import os
import socket

from .gotime import MAX_INT64, MINUTE_NS, NS, GoError, go_parse_int, go_parse_uint, parse_go_duration, wrap_int64
from .logs import log

VERSION = os.environ.get("OLLAMA_EMULATOR_VERSION", "0.33.0")
GIB = 1 << 30


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
    runner = os.environ.get("OLLAMA_EMULATOR_RUNNER", "").strip().lower() or "llama"
    if runner not in ("llama", "mlx"):
        log("invalid OLLAMA_EMULATOR_RUNNER %r (llama or mlx), using llama" % runner, "WARN")
        runner = "llama"
    cfg["runner"] = runner
    if os.environ.get("OLLAMA_EMULATOR_PS_BLOCKS") is not None:
        log(
            "OLLAMA_EMULATOR_PS_BLOCKS is ignored: /api/ps never waits for a load (llama-server); "
            "OLLAMA_EMULATOR_RUNNER=mlx imitates the MLX runner, whose ps does",
            "WARN",
        )
    recovery = num("OLLAMA_EMULATOR_VRAM_RECOVERY", 0.25, float)
    if recovery > 5:
        log("OLLAMA_EMULATOR_VRAM_RECOVERY %g s is past upstream's 5 s timeout, using 5" % recovery, "WARN")
        recovery = 5.0
    cfg["vram_recovery_ns"] = int(recovery * NS)
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
