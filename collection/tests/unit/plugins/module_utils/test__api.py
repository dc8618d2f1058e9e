"""The API client's errors, over real HTTP on loopback (a scripted server for the edge cases)."""

import socket

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._api import (
    OllamaClient,
    OllamaError,
    OllamaNotFound,
    check_url,
    connection_argspec,
)


@pytest.mark.parametrize("url", ["127.0.0.1:11434", "localhost", "ftp://h", "", "http://", None])
def test_url_without_scheme_is_refused(url):
    with pytest.raises(OllamaError) as exc:
        check_url(url)
    assert "url" in str(exc.value)


def test_url_hint_names_the_fix():
    with pytest.raises(OllamaError) as exc:
        check_url("127.0.0.1:11434")
    assert "http://127.0.0.1:11434" in str(exc.value)
    assert check_url("http://127.0.0.1:11434/") == "http://127.0.0.1:11434"


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server():
    url = "http://127.0.0.1:%d" % _closed_port()
    with pytest.raises(OllamaError) as exc:
        OllamaClient(url, timeout=2).ps()
    assert "cannot reach Ollama at %s" % url in str(exc.value)
    assert "refused" in str(exc.value).lower()


def test_timeout(fake_server):
    fake_server.route("GET", "/api/ps", payload={"models": []}, delay=5)
    with pytest.raises(OllamaError) as exc:
        OllamaClient(fake_server.url, timeout=0.3).ps()
    assert "timeout" in str(exc.value) and "/api/ps" in str(exc.value)


def test_model_not_found_carries_the_server_text(fake_server):
    fake_server.route("POST", "/api/generate", status=404, payload={"error": "model 'nope' not found"})
    with pytest.raises(OllamaNotFound) as exc:
        OllamaClient(fake_server.url).generate({"model": "nope", "keep_alive": -1})
    assert "model 'nope' not found" in str(exc.value)
    assert exc.value.status == 404


def test_unknown_path_404_text_body(fake_server):
    with pytest.raises(OllamaNotFound) as exc:
        OllamaClient(fake_server.url).ps()
    assert "404 page not found" in str(exc.value)


def test_non_json_body(fake_server):
    fake_server.route("GET", "/api/ps", payload=b"<html>proxy login</html>", ctype="text/html")
    with pytest.raises(OllamaError) as exc:
        OllamaClient(fake_server.url).ps()
    assert "not JSON" in str(exc.value) and "proxy login" in str(exc.value)


def test_server_error_text(fake_server):
    fake_server.route("POST", "/api/generate", status=400, payload={"error": 'time: missing unit in duration "-1"'})
    with pytest.raises(OllamaError) as exc:
        OllamaClient(fake_server.url).generate({"model": "m", "keep_alive": "-1"})
    assert "HTTP 400" in str(exc.value) and "missing unit" in str(exc.value)


def test_generate_sends_json_and_headers(fake_server):
    fake_server.route("POST", "/api/generate", payload={"model": "m", "done": True, "done_reason": "load"})
    answer, seconds = OllamaClient(fake_server.url, headers={"X-Test": "1"}).generate({"model": "m", "keep_alive": -1})
    assert answer["done_reason"] == "load" and seconds >= 0
    assert fake_server.requests[-1]["body"] == {"model": "m", "keep_alive": -1, "stream": False}


def test_connection_argspec_copy_is_independent():
    spec = connection_argspec(timeout=dict(default=600.0))
    assert spec["timeout"]["default"] == 600.0
    assert connection_argspec()["timeout"]["default"] == 30.0
    assert spec["headers"]["no_log"] is True
