"""ca_path (the connection options) against a real TLS server on loopback whose certificate a private CA signed:
verified with that CA, refused without it, and a bad ca_path refused by name before any request."""

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._api import OllamaClient, OllamaError


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=str(cwd), check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=keepwarm test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
        cwd=d,
    )
    return d


class _Ps(BaseHTTPRequestHandler):
    def do_GET(self):
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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_ca_path_verifies_a_private_ca(tls_url, pki):
    client = OllamaClient(tls_url, timeout=10, ca_path=str(pki / "ca.pem"), use_proxy=False)
    assert client.ps() == []  # /api/ps answered {"models": []} over the verified connection


def test_without_ca_path_the_private_ca_is_refused(tls_url):
    client = OllamaClient(tls_url, timeout=10, use_proxy=False)
    with pytest.raises(OllamaError) as exc:
        client.ps()
    assert "certificate" in str(exc.value).lower()


def test_a_bad_ca_path_is_refused_by_name(tmp_path):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(OllamaError) as exc:
        OllamaClient("https://127.0.0.1:1", ca_path=missing)
    assert missing in str(exc.value)
