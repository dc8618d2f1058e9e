"""The `ollama` command line (cmd/cmd.go) and its table formatting (format/time.go, format/bytes.go)."""

import http.client
import json
import math
import sys
import time

from .env import VERSION, env_host
from .gotime import MINUTE_NS, NS, GoError, parse_go_duration, parse_go_time

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
            from .server import serve  # noqa: PLC0415 - the CLI commands need no server code

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
