"""`ollama serve`: configuration, the threaded HTTP server, signals and shutdown (routes.go Serve)."""

import json
import os
import signal
import socket
import sys
from http.server import ThreadingHTTPServer

from .api import BUILTIN_ORIGINS, Handler
from .catalog import DEFAULT_CATALOG, Catalog
from .clock import Clock
from .env import VERSION, default_num_ctx, env_host, env_var, load_config
from .logs import _make_nonblocking, log
from .scheduler import Scheduler

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


class ConfigError(Exception):
    pass


def make_app():
    """The server's state from the environment (load_config, catalogue, scheduler, CORS origins)."""
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
        raise ConfigError("cannot load OLLAMA_EMULATOR_CATALOG %s: %s" % (path, e)) from None
    app.default_num_ctx = default_num_ctx(cfg)
    app.sched = Scheduler(cfg, app.clock)
    origins = [o for o in env_var("OLLAMA_ORIGINS").split(",") if o] if env_var("OLLAMA_ORIGINS") else []
    app.origins = origins + BUILTIN_ORIGINS
    return app


def make_server(app, host, port, handler=Handler):
    """Bind (cmd/cmd.go RunServer: net.Listen on Host()); raises OSError. Serve with serve_forever()."""
    cls = Server6 if ":" in host else Server
    httpd = cls((host, port), handler)
    app.loopback = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
    httpd.app = app
    return httpd


def serve():
    _make_nonblocking(1)
    _make_nonblocking(2)
    try:
        app = make_app()
    except ConfigError as e:
        log(str(e), "ERROR")
        return 1
    cfg = app.cfg
    _scheme, host, port, _path = env_host()
    try:
        httpd = make_server(app, host, port)
    except OSError as e:
        log("Error: listen tcp %s:%d: %s" % (host, port, e.strerror), "ERROR")
        return 1

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
