"""The HTTP API (server/routes.go GenerateRoutes): routing, Host/CORS checks, and one handler per endpoint.

ROUTES maps each path to its methods and its handler method name; add a route by adding an entry there.
"""

import hashlib
import ipaddress
import json
import math
import select
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from . import openai as v1
from .catalog import ModelRefError, parse_model_ref
from .env import VERSION, split_host_port
from .gotime import NS, go_time
from .jsonbind import BindError, bind
from .logs import log
from .options import RUNNER_DEFAULTS, RUNNER_KEYS, ScheduleError, options_from_map
from .scheduler import Request

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
NOT_IMPLEMENTED = {"/api/push", "/api/create", "/api/copy"}

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


def host_verdict(host_header):
    """routes.go allowedHostsMiddleware (enforced only when bound to loopback): the Host header's host part
    (net.SplitHostPort, else the whole header) is allowed if it is an IP address that is loopback, private or
    unspecified (netip IsLoopback/IsPrivate/IsUnspecified) or an address of a local interface (isLocalIP), or a
    name allowed by allowedHost. Returns "ip", "name" (an allowed name answers OPTIONS with 204) or None (403).
    IsPrivate is RFC 1918 + fc00::/7 only: link-local (169.254/16, fe80::/10), CGNAT (100.64/10) and benchmarking
    (198.18/15) addresses are not private and pass only if they are this machine's own."""
    host, _ = split_host_port(host_header)
    if host is None:
        host = host_header  # no port (or unparseable): used as is, so "[::1]" without a port is no IP
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is not None:
        plain = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped else addr
        if plain.is_loopback or any(plain in net for net in _GO_PRIVATE):  # both unmap 4-in-6 first
            return "ip"
        if addr in (ipaddress.IPv4Address(0), ipaddress.IPv6Address(0)):  # IsUnspecified: exact, no unmap/zone
            return "ip"
        if str(addr) in _local_ips():
            return "ip"
    return "name" if allowed_host(host) else None


def allowed_host(host):
    """routes.go allowedHost: empty, `localhost`, this machine's hostname (case-insensitive), or a name ending
    in .localhost, .local or .internal."""
    host = host.lower()
    if host in ("", "localhost") or host == socket.gethostname().lower():
        return True
    return host.endswith((".localhost", ".local", ".internal"))


_GO_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


def _local_ips():
    """routes.go isLocalIP: every address of every interface, read now (interfaces come and go): IPv4 from the
    kernel's local routes (/proc/net/fib_trie), IPv6 from /proc/net/if_inet6; the hostname's addresses elsewhere."""
    ips = set()
    try:
        with open("/proc/net/fib_trie", encoding="ascii") as f:
            last = None
            for line in f:
                part = line.split()
                if len(part) >= 2 and part[0] in ("|--", "+--"):
                    last = part[1]
                elif "/32 host LOCAL" in line and last:
                    ips.add(last)
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                ips.add(str(ipaddress.IPv6Address(int(line.split()[0], 16))))
    except (OSError, ValueError, IndexError):
        pass
    if not ips:
        try:
            ips.update(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    return ips


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-emulator"
    sys_version = ""
    timeout = 120  # socket timeout: a stalled client cannot pin a thread forever
    # Go's net package sets TCP_NODELAY on every TCP connection it creates, accepted ones included (net/tcpsock.go
    # newTCPConn -> setNoDelay(true)); socketserver.StreamRequestHandler.setup() does the same when this is True.
    disable_nagle_algorithm = True
    v1 = None  # the /v1 writer (lab/emulator/openai.py) while a /v1 request runs its native handler

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

    def _request_done(self):
        """The request's context ends: its runner reference goes back to the scheduler (sched.go processCompleted:
        refCount down; idle -> expiry timer or unload). Go's net/http conn.serve cancels the request context
        (w.cancelCtx) BEFORE w.finishRequest flushes the buffered response, so this runs before the last bytes of
        a response are written; called again (no-op) when the handler returns."""
        r, self._runner = getattr(self, "_runner", None), None
        if r is not None:
            self.server.app.sched.release(r)

    def _start(self, status, ctype, length=None, extra=None, *, body=b"", final=True):
        """Status line, headers and (when `final`) the whole body in ONE write: a response split into small writes
        waits ~40 ms for the peer's delayed ACK on a kept-alive connection (issue 17)."""
        if final:
            self._request_done()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("X-Ollama-Emulator-Now", go_time(self.server.app.clock.now_ns(), utc=False))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n")  # what end_headers() adds before it flushes on its own
        data = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(data + body if body and self.command != "HEAD" else data)

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _json(self, status, obj):
        if self.v1 is not None:  # a /v1 route: its writer rewrites the native answer (middleware/openai.go)
            body = self.v1.write(status, obj)
            self._start(status, self.v1.content_type(status), len(body), body=body)
            return
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
        self._start(status, "application/json; charset=utf-8", len(body), body=body)

    def _error(self, status, message):
        self._json(status, {"error": message})

    def _text(self, status, text):
        body = text.encode()
        self._start(status, "text/plain; charset=utf-8", len(body), body=body)

    def _stream_start(self):
        ctype = self.v1.content_type(200) if self.v1 is not None else "application/x-ndjson"
        self._start(200, ctype, extra={"Transfer-Encoding": "chunked"}, final=False)

    def _chunk(self, obj):
        if self.v1 is not None:  # SSE events for a /v1 stream
            data = self.v1.write(200, obj)
        else:
            data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace") + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream_end(self):
        self._request_done()
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
        self.v1 = None  # one handler object serves every request of a kept-alive connection
        try:
            path = urlsplit(self.path).path
        except ValueError:
            path = self.path
        try:
            self.body = b""
            self._runner = None
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
            verdict = host_verdict(self.headers.get("Host", "")) if app.loopback else "ip"
            if verdict is None:
                self._start(403, None, 0)
                return
            if verdict == "name" and self.command == "OPTIONS":
                self._start(204, None)
                return
            origin = self.headers.get("Origin")
            if origin is not None and not origin_allowed(origin, app.origins):
                self._start(403, None, 0)
                return
            methods = ROUTES.get(path) or v1.methods(path)
            if methods is None:
                self._text(404, "404 page not found")
                return
            if self.command not in methods:
                self._text(405, "405 method not allowed")
                return
            if path in NOT_IMPLEMENTED:
                self._error(501, "not implemented by the ollama emulator")
                return
            if path.startswith("/v1/"):
                self._v1(path)
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

    def _v1(self, path):
        """The OpenAI-compatible routes (routes.go GenerateRoutes, the /v1 lines): the middleware translates the
        request (or answers a 400 itself), then the native handler runs with self.v1 rewriting what it writes
        (lab/emulator/openai.py). Nothing else differs: no keep_alive, no num_ctx reach the scheduler."""
        t = v1.translate(path, self.body)
        if not isinstance(t, v1.Translation):
            status, ctype, body = t
            self._start(status, ctype, len(body), body=body)
            return
        self.body, self.v1 = t.body, t.writer
        getattr(self, "h_" + t.native_path.strip("/").replace("/", "_"))()

    # ---- simple endpoints ---------------------------------------------------------------------------------
    def h_root(self):
        self._text(200, "Ollama is running")

    def h_api_version(self):
        self._json(200, {"version": VERSION})

    def h_api_tags(self):
        """routes.go ListHandler (server/model_list_cache.go buildModelListSummary): models sorted by modified_at,
        newest first, `[]` when empty; details add the model's context_length and embedding_length, and the entry
        ends with its capabilities (api.ListModelResponse, all three omitempty)."""
        app = self.server.app
        models = []
        for name, m in sorted(app.catalog.entries(), key=lambda x: (-x[1].modified_ns, x[0])):
            details = m.details()
            for key, val in (("context_length", m.context_length), ("embedding_length", m.embedding_length)):
                if val:
                    details[key] = val
            entry = {
                "name": name,
                "model": name,
                "modified_at": go_time(m.modified_ns),
                "size": m.size,
                "digest": m.digest,
                "details": details,
            }
            if m.capabilities:
                entry["capabilities"] = list(m.capabilities)
            models.append(entry)
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
        base = self._model_ref(name, 400, "model is required")
        if base is None:
            return
        display, m = self.server.app.catalog.get(base)
        if m is None:
            self._error(404, "model '%s' not found" % display)
            return
        arch = m.family.replace("-", "_")
        params = dict(m.parameters)
        param_text = "\n".join("%-30s %s" % (k, v) for k, v in params.items())
        self._json(
            200,
            {
                "license": "LICENSE (emulated)",
                "modelfile": "# Modelfile generated by the ollama emulator\nFROM %s\n%s%s"
                % (m.path, "".join("ADAPTER %s\n" % x for x in m.adapters), param_text),
                "parameters": param_text,
                "template": "{{ .Prompt }}",
                "details": dict(m.details(), parent_model=m.parent_model),  # images.go: ParentModel = layer.From
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
        if "embedding" in m.capabilities and "num_batch" in auto:
            # routes.go shouldApplyEmbeddingBatchDefault + llm WithDefaultEmbeddingNumBatch: an embedding model
            # without num_batch gets min(2048, num_ctx), and that num_batch is not automatic (numBatchAuto false)
            opts["num_batch"] = min(2048, opts["num_ctx"]) if opts["num_ctx"] > 0 else 2048
            auto.discard("num_batch")
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
            sreq = Request(m, display, runner_opts, auto, req.get("keep_alive"), self.aborted, req.get("shift"))
            r = app.sched.acquire(sreq)
            self._runner = r  # released by _request_done()
            return r, opts
        except ScheduleError as e:
            self._error(e.status, e.message)
            return None, None

    def _model_ref(self, raw, fallback_status, fallback_message):
        """model_resolver.go parseAndValidateModelRef + routes.go writeModelRefParseError: the name to look up, or
        None after answering 400 (both source suffixes; `invalid model name`) or the handler's own answer for an
        empty/blank name. `:local` is split off; there is no cloud here, so a `:cloud` name is looked up as sent."""
        try:
            base, source = parse_model_ref(raw)
        except ModelRefError as e:
            if e.kind == "required":
                self._error(fallback_status, fallback_message)
            else:
                self._error(400, e.message)
            return None
        return raw.strip() if source == "cloud" else base

    def _lookup(self, req, empty_msg, empty_status):
        name = req.get("model") or ""
        base = self._model_ref(name, empty_status, empty_msg)
        if base is None:
            return None, None
        display, m = self.server.app.catalog.get(base)
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
            display, m = self._lookup(req, "model '%s' not found" % (req.get("model") or ""), 404)
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
            self._request_done()

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
        r = self._runner
        if not app.sched.take_slot(r, self.aborted):  # llm/llama_server.go Completion: s.sem.Acquire(ctx, 1)
            self.close_connection = True
            return
        try:
            text = self._tokens(req, chat, base, words, stream, prompt_ns, tok_ns)
        finally:
            app.sched.give_slot(r)  # Completion returns (defer s.sem.Release) before the handler's last write
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

    def _tokens(self, req, chat, base, words, stream, prompt_ns, tok_ns):  # noqa: PLR0913, PLR0917
        """Prompt evaluation, then one token at a time (streamed as NDJSON lines when `stream`); the text."""
        app = self.server.app
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
        return text

    def h_api_embed(self):
        """routes.go EmbedHandler: input string or list of strings; any model can embed."""
        app = self.server.app
        req = self._bind("embed")
        if req is None:
            return
        name = req.get("model") or ""
        base = self._model_ref(name, 404, "model '%s' not found" % name)  # EmbedHandler's fallback
        if base is None:
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
        display, m = app.catalog.get(base)
        if m is None:
            self._error(404, 'model "%s" not found, try pulling it first' % name)
            return
        t0 = app.clock.now_ns()
        r, _ = self._schedule(m, display, req)
        if r is None:
            return
        try:
            load_ns = app.clock.now_ns() - t0
            if inputs and not app.sched.take_slot(r, self.aborted):  # llama_server.go Embedding: sem.Acquire
                self.close_connection = True
                return
            try:
                vecs = [_embedding(m, s, req.get("dimensions") or 0) for s in inputs]
            finally:
                if inputs:
                    app.sched.give_slot(r)
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
            self._request_done()

    def h_api_embeddings(self):
        """routes.go EmbeddingsHandler (legacy): {"embedding": [...]}; empty prompt loads only."""
        app = self.server.app
        req = self._bind("embeddings")
        if req is None:
            return
        name = req.get("model") or ""
        base = self._model_ref(name, 400, "model is required")  # EmbeddingsHandler's fallback
        if base is None:
            return
        display, m = app.catalog.get(base)
        if m is None:
            self._error(404, 'model "%s" not found, try pulling it first' % name)
            return
        r, _ = self._schedule(m, display, req)
        if r is None:
            return
        try:
            prompt = req.get("prompt") or ""
            vec = []
            if prompt:
                if not app.sched.take_slot(r, self.aborted):  # llama_server.go Embedding: sem.Acquire
                    self.close_connection = True
                    return
                try:
                    vec = _embedding(m, prompt)
                finally:
                    app.sched.give_slot(r)
            self._json(200, {"embedding": vec})
        finally:
            self._request_done()


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


def _embedding(m, text, dimensions=0):
    """A deterministic unit vector for `text`; routes.go EmbedHandler: 0 < dimensions < length truncates it to
    `dimensions` values and normalizes again."""
    dim = min(m.embedding_length, 4096)
    if 0 < dimensions < dim:
        dim = dimensions
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
