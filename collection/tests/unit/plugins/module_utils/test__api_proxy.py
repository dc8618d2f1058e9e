"""Proxies and credentials in the API client (issue 12 cases 6 and 10), over real HTTP on loopback."""

import socket

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._api import (
    OllamaClient,
    OllamaError,
    proxy_for,
    redact_url,
)


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("url, env, proxy", [
    ("http://127.0.0.1:11434", {"http_proxy": "http://p:3128"}, None),  # loopback: never proxied (Go httpproxy)
    ("http://localhost:11434", {"HTTP_PROXY": "http://p:3128"}, None),
    ("http://[::1]:11434", {"http_proxy": "http://p:3128"}, None),
    ("http://gpu1.lab:11434", {"http_proxy": "http://p:3128"}, "http://p:3128"),
    ("http://gpu1.lab:11434", {"http_proxy": "http://p:3128", "no_proxy": ".lab"}, None),
    ("http://gpu1.lab:11434", {"http_proxy": "http://p:3128", "NO_PROXY": "gpu1.lab:11434"}, None),
    ("http://10.1.2.3:11434", {"http_proxy": "http://p:3128", "no_proxy": "10.0.0.0/8"}, None),  # CIDR
    ("http://10.1.2.3:11434", {"http_proxy": "http://p:3128", "no_proxy": "192.168.0.0/16"}, "http://p:3128"),
    ("http://10.1.2.3:11434", {"http_proxy": "http://p:3128", "no_proxy": "*"}, None),
    ("https://gpu1.lab", {"http_proxy": "http://p:3128"}, None),  # https uses https_proxy only
    ("https://gpu1.lab", {"HTTPS_PROXY": "http://s:3128"}, "http://s:3128"),
])  # fmt: skip
def test_proxy_rule(url, env, proxy):
    assert proxy_for(url, env)[0] == proxy


def test_loopback_ignores_a_host_wide_proxy(fake_server, monkeypatch):
    fake_server.route("GET", "/api/ps", payload={"models": []})
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:%d" % _closed_port())
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert OllamaClient(fake_server.url).ps() == []


def test_errors_name_the_proxy(fake_server, monkeypatch):
    """A non-loopback Ollama URL through a proxy (the scripted server plays the proxy and answers 502)."""
    fake_server.route("GET", "http://gpu1.lab:11434/api/ps", status=502, payload=b"bad gateway", ctype="text/plain")
    monkeypatch.setenv("http_proxy", fake_server.url.replace("http://", "http://pxuser:pxpass@"))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(OllamaError) as exc:
        OllamaClient("http://gpu1.lab:11434").ps()
    msg = str(exc.value)
    assert "through the proxy http://***@127.0.0.1" in msg and "from http_proxy" in msg and "HTTP 502" in msg
    assert "pxpass" not in msg
    assert fake_server.requests[-1]["path"] == "http://gpu1.lab:11434/api/ps"  # it really went to the proxy


def test_use_proxy_false_goes_direct(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:%d" % _closed_port())
    client = OllamaClient("http://gpu1.lab:11434", use_proxy=False)
    assert client.proxy is None and "proxy" not in client._via()


@pytest.mark.parametrize("url, shown", [
    ("http://u:p@h:1/x", "http://***@h:1/x"),
    ("http://u@h", "http://***@h"),
    ("http://h:11434", "http://h:11434"),
])  # fmt: skip
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_unreachable_with_credentials_is_redacted():
    url = "http://keeper:s3cr3t@127.0.0.1:%d" % _closed_port()
    with pytest.raises(OllamaError) as exc:
        OllamaClient(url, timeout=2).ps()
    assert "s3cr3t" not in str(exc.value) and "***@127.0.0.1" in str(exc.value)
