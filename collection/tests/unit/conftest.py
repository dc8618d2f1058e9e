"""Unit-test setup for keepwarm.ollama: importable by plain pytest from a checkout and by ansible-test units.

ansible-test runs from ``.../ansible_collections/keepwarm/ollama`` and puts the folder above
``ansible_collections`` on sys.path itself. From a checkout, ``<repo>/collections`` holds the
``ansible_collections/keepwarm/ollama -> ../../../collection`` link, so it goes on sys.path here.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))


def _add_collections_root():
    parts = _HERE.split(os.sep)
    if "ansible_collections" in parts:
        root = os.sep.join(parts[: len(parts) - parts[::-1].index("ansible_collections") - 1])
    else:
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(_HERE))), "collections")
    if root and root not in sys.path:
        sys.path.insert(0, root)


_add_collections_root()

from ansible.module_utils import basic  # noqa: E402

try:  # ansible-core 2.19+
    from ansible.module_utils.testing import patch_module_args  # noqa: E402
except ImportError:  # ansible-core 2.17 and 2.18 (tools/core_matrix.py) read the arguments from basic._ANSIBLE_ARGS
    import contextlib

    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


class ModuleExit(Exception):
    """exit_json was called; ``result`` holds its keyword arguments."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class ModuleFail(Exception):
    """fail_json was called; ``result`` holds its keyword arguments (with ``msg``)."""

    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


@pytest.fixture
def run_module(monkeypatch):
    """Run a module's main() with args; return the exit_json result or raise ModuleFail."""

    def exit_json(self, **kwargs):
        kwargs.setdefault("changed", False)
        kwargs["warnings"] = list(getattr(self, "_keepwarm_warnings", []))
        raise ModuleExit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs["msg"] = msg
        raise ModuleFail(kwargs)

    def warn(self, warning):
        self.__dict__.setdefault("_keepwarm_warnings", []).append(warning)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", warn)

    def run(main, args, check_mode=False, diff=False):
        args = dict(args)
        if check_mode:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        with patch_module_args(args):
            try:
                main()
            except ModuleExit as exc:
                return exc.result
        raise AssertionError("the module returned without exit_json or fail_json")

    return run


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self):
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server.requests.append({"method": self.command, "path": self.path, "body": json.loads(body) if body else None})
        status, ctype, payload, delay = server.routes.get(
            (self.command, self.path), (404, "text/plain", b"404 page not found", 0)
        )
        if callable(payload):
            status, ctype, payload = payload(server.requests[-1]["body"])
        if delay:
            server.release.wait(delay)
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer


class FakeServer:
    """A scripted HTTP server on loopback for client edge cases (non-JSON bodies, 404s, slow answers)."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.requests = []
        self.httpd.release = threading.Event()
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    def route(self, method, path, *, status=200, payload=None, ctype="application/json; charset=utf-8", delay=0):
        self.httpd.routes[(method, path)] = (status, ctype, payload if payload is not None else b"", delay)

    def close(self):
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def samples():
    """tests/data/ps_samples.json from the checkout, or the copy the assembled tree carries."""
    candidates = [
        os.path.join(_HERE, "ps_samples.json"),
        os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(_HERE))), "tests", "data", "ps_samples.json"),
    ]
    for path in candidates:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    raise RuntimeError("ps_samples.json not found in %s" % candidates)
