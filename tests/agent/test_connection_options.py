"""The agent's connection options (config headers, validate_certs, ca_path; the same set as the keepwarm.ollama
modules' connection doc fragment) against a real TLS server on loopback whose certificate a private CA signed."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from heartbeat_agent._client import OllamaClient
from heartbeat_agent._config import build_config
from heartbeat_agent._exceptions import ConfigError

SEEN: list[dict] = []


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=str(cwd), check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=keepwarm test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)  # fmt: skip
    return d


class _Ps(BaseHTTPRequestHandler):
    def do_GET(self):
        SEEN.append(dict(self.headers))
        body = json.dumps({"models": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_url(pki):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ps)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    SEEN.clear()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def client(config, **kwargs):
    return OllamaClient(
        config.url,
        retry_budget=0.5,
        headers=config.headers,
        validate_certs=config.validate_certs,
        ca_path=config.ca_path,
        use_proxy=config.use_proxy,
        **kwargs,
    )


def test_ca_path_and_headers_reach_a_private_ca_server(tls_url, pki):
    config = build_config(
        {"url": tls_url, "models": ["llama3.2"], "ca_path": str(pki / "ca.pem"), "headers": {"X-Auth": "t0ken"}}
    )
    with client(config) as c:
        assert c.ps() == []
    assert SEEN and SEEN[-1]["X-Auth"] == "t0ken"
    assert SEEN[-1]["User-Agent"].startswith("keepwarm-heartbeat/")


def test_the_private_ca_is_refused_without_ca_path(tls_url):
    config = build_config({"url": tls_url, "models": ["llama3.2"]})
    with client(config) as c, pytest.raises(Exception, match="(?i)certificate"):
        c.ps()
    assert SEEN == []


def test_validate_certs_false_accepts_it(tls_url):
    config = build_config({"url": tls_url, "models": ["llama3.2"], "validate_certs": False})
    with client(config) as c:
        assert c.ps() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"headers": ["X-Auth: t"]}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers.Bad Name"),
        ({"headers": {"X-Auth": "a\r\nInjected: 1"}}, "headers.X-Auth"),
        ({"validate_certs": "yes"}, "validate_certs"),
        ({"ca_path": "/nonexistent/ca.pem"}, "ca_path"),
        ({"use_proxy": "no"}, "use_proxy"),
    ],
)
def test_bad_connection_options_are_refused_by_field(change, field):
    with pytest.raises(ConfigError) as exc:
        build_config({"url": "https://127.0.0.1:1", "models": ["llama3.2"], **change})
    assert exc.value.field == field
    assert "a\r\nInjected" not in str(exc.value)


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy on loopback that answers for the server behind it (it records the absolute-form target)."""

    def do_GET(self):
        SEEN.append({"proxy_target": self.path})
        body = json.dumps({"models": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    SEEN.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_remote_server_goes_through_the_environment_proxy(proxy_url):
    config = build_config({"url": "http://gpu-01.keepwarm.invalid:11434", "models": ["llama3.2"]})
    with client(config, environ={"http_proxy": proxy_url}) as c:
        assert c.ps() == []
    assert SEEN == [{"proxy_target": "http://gpu-01.keepwarm.invalid:11434/api/ps"}]


def test_no_proxy_and_use_proxy_false_bypass_it(proxy_url):
    for extra, env in (({}, {"http_proxy": proxy_url, "no_proxy": ".keepwarm.invalid"}), ({"use_proxy": False}, {})):
        config = build_config({"url": "http://gpu-01.keepwarm.invalid:11434", "models": ["llama3.2"], **extra})
        with client(config, environ={"http_proxy": proxy_url, **env}) as c:
            assert c.proxy is None
    assert SEEN == []


def test_loopback_is_never_proxied(tls_url, pki, proxy_url):
    """A host-wide https_proxy must not capture the local server (Go's rule, as the ollama CLI)."""
    config = build_config({"url": tls_url, "models": ["llama3.2"], "ca_path": str(pki / "ca.pem")})
    with client(config, environ={"https_proxy": proxy_url, "http_proxy": proxy_url}) as c:
        assert c.proxy is None
        assert c.ps() == []
    assert "proxy_target" not in SEEN[-1]
