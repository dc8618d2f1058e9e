"""Issue 13 items 5-8 at the HTTP edge (httpx.MockTransport) and the command line: each fails on the agent before it.

Faults a real server cannot be made to produce on demand (a proxy's 502, a trickling body) use a scripted server
or MockTransport; everything else runs against the emulator elsewhere.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from .test_faults import PINNED, transport

ARGS = ("--url", "http://ollama.test:11434", "--model", "llama3.2", "--interval", "1")


# ---- 13.8 input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://127.0.0.1:11434/?token=x", "must not have a query"),
        ("http://127.0.0.1:11434/#frag", "must not have a query"),
        ("http://127.0.0.1:99999", "Port out of range"),
    ],
    ids=["unclosed-ipv6", "query", "fragment", "port"],
)
def test_bad_url_exit_2_naming_it(cli, url, text):
    run = cli("--url", url, "--model", "llama3.2", "once")
    assert run.code == 2
    (line,) = run.log
    assert line["field"] == "url" and text in line["message"]


def _config_file(tmp_path, options):
    path = tmp_path / "hb.json"
    path.write_text(json.dumps({"models": [{"name": "llama3.2", "options": options}]}))
    return str(path)


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        ({"temperature": "hot"}, "models[0].options.temperature", "must be a number"),
        ({"nmu_batch": 512}, "models[0].options.nmu_batch", "did you mean 'num_batch'"),
        ({"use_mmap": 1}, "models[0].options.use_mmap", "must be a boolean"),
        ({"stop": "###"}, "models[0].options.stop", "list of strings"),
        ({"top_k": 1.5}, "models[0].options.top_k", "must be an integer"),
        ([], "models[0].options", "must be an object"),
    ],
    ids=["temperature-str", "typo", "use_mmap-int", "stop-str", "top_k-float", "empty-list"],
)
def test_bad_options_exit_2_before_any_request(cli, tmp_path, options, field, text):
    t = transport(httpx.Response(200, json={"models": []}))
    run = cli("--config", _config_file(tmp_path, options), "--url", "http://ollama.test:1", "once", transport=t)
    assert run.code == 2
    (line,) = run.log
    assert line["field"] == field and text in line["message"]
    assert t.seen == []


def test_valid_options_of_every_type_accepted(cli, tmp_path):
    options = {"num_ctx": 8192, "temperature": 0.2, "use_mmap": False, "stop": ["###"], "main_gpu": 0}
    t = transport(httpx.Response(200, json={"models": [PINNED]}))
    run = cli("--config", _config_file(tmp_path, options), "--url", "http://ollama.test:1", "once", transport=t)
    assert run.code == 0, run.out


def test_model_flags_before_and_after_the_command_add_up(cli):
    t = transport(httpx.Response(200, json={"models": [PINNED, {**PINNED, "name": "qwen2.5:7b"}]}))
    run = cli("--url", "http://ollama.test:1", "--model", "llama3.2", "once", "--model", "qwen2.5:7b", transport=t)
    assert run.code == 0
    assert run.beat["models"] == "2"
    assert {line["model"] for line in run.actions("none")} == {"llama3.2:latest", "qwen2.5:7b"}


def test_later_scalar_option_wins(cli):
    t = transport(httpx.Response(200, json={"models": []}), httpx.Response(500, json={"error": "x"}))
    run = cli("--url", "http://a.test:1", "--model", "llama3.2", "once", "--url", "http://ollama.test:1", transport=t)
    assert {str(req[1]) for req in t.seen} == {"/api/ps", "/api/generate"}
    assert run.code == 1


def test_help_lists_exit_codes(capsys):
    from heartbeat_agent import _cli

    for argv in (["--help"], ["once", "--help"], ["watch", "--help"]):
        assert _cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "exit codes:" in out
        for code in ("0 ", "1 ", "2 ", "3 ", "130", "143"):
            assert f"\n  {code}" in out


# ---- 13.7 timeouts and proxy answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_proxy_5xx_retried_like_a_refused_connection(cli, status):
    answers = [httpx.Response(status, text="<html>Bad Gateway</html>"), httpx.Response(200, json={"models": [PINNED]})]
    t = transport(lambda request: answers.pop(0))
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 0, run.out
    assert run.beat["gets"] == "2"


def test_proxy_5xx_until_the_budget_ends_exit_3(cli):
    t = transport(httpx.Response(502, text="Bad Gateway"))
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 3
    assert run.beat["error"] == "unreachable" and "HTTP 502" in run.beat["message"]
    assert int(run.beat["attempts"]) >= 2


class TricklingServer:
    """A real HTTP server on loopback that answers /api/ps with a body sent one byte every `gap` seconds."""

    def __init__(self, gap: float = 0.3) -> None:
        self.gap = gap
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        body = json.dumps({"models": [PINNED]}).encode()
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
            for i in range(len(body)):
                if self.stop.is_set():
                    break
                conn.sendall(body[i : i + 1])
                time.sleep(self.gap)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_total_request_timeout_not_per_read(cli):
    """Each byte arrives well within the read timeout, but the answer as a whole takes minutes: abandoned at 1 s."""
    server = TricklingServer(gap=0.3)
    try:
        start = time.monotonic()
        run = cli("--url", server.url, "--model", "llama3.2", "--request-timeout", "1", "--interval", "2", "once")
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert run.code == 3
    assert "no complete answer within request_timeout=1s" in run.beat["message"]
    # budget 1 s of retries (half the interval) plus at most one request of 1 s, plus slack for a loaded CI box
    assert elapsed < 4.0, elapsed


# ---- 13.5 false alarms -----------------------------------------------------------------------------------------


def test_one_model_never_blames_other_loads(cli):
    """Loaded, then gone right away: with one model configured, no other load of this beat can have evicted it."""
    states = [[], []]
    t = transport(
        lambda r: httpx.Response(200, json={"models": states.pop(0)}),
        httpx.Response(200, json={"model": "llama3.2", "done": True, "done_reason": "load"}),
    )
    run = cli(*ARGS, "once", transport=t)
    assert run.code == 1
    (verify,) = run.actions("verify")
    assert verify["message"] == "not loaded after the beat"


def test_last_load_seconds_excludes_retries(cli, tmp_path):
    prom = tmp_path / "k.prom"
    answers = [httpx.ConnectError("refused")]

    def generate(request):
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json={"model": "llama3.2", "done": True, "done_reason": "load"})

    states = [[], [PINNED]]
    t = transport(lambda r: httpx.Response(200, json={"models": states.pop(0)}), generate)
    run = cli(*ARGS, "--metrics-path", str(prom), "once", transport=t)
    assert run.code == 0, run.out
    (load,) = run.actions("load")
    assert float(load["load_seconds"]) < 0.2  # the retry slept 0.25 s before the answered attempt
    line = next(x for x in prom.read_text().splitlines() if x.startswith("keepwarm_model_last_load_seconds{"))
    assert float(line.split()[-1]) < 0.2


def test_pinned_help_text_describes_timed_keep_alive(cli, tmp_path):
    prom = tmp_path / "k.prom"
    t = transport(httpx.Response(200, json={"models": [PINNED]}))
    assert cli(*ARGS, "--metrics-path", str(prom), "once", transport=t).code == 0
    help_line = next(x for x in prom.read_text().splitlines() if x.startswith("# HELP keepwarm_model_pinned "))
    assert "keep_alive -1)" not in help_line and "configured keep_alive" in help_line


# ---- 12.10/12.11 credentials in the URL -------------------------------------------------------------------------


def test_credentials_in_url_never_logged(cli):
    run = cli("--url", "http://admin:s3cret@ollama.test:11434", "--model", "llama3.2", "--interval", "1", "once",
              transport=transport(httpx.ConnectError("refused")))  # fmt: skip
    assert run.code == 3
    assert "s3cret" not in run.out + run.err
    assert "http://***@ollama.test:11434/api/ps" in run.beat["message"]
    bad = cli("--url", "http://admin:s3cret@ollama.test:99999", "--model", "llama3.2", "once")
    assert bad.code == 2 and "s3cret" not in bad.out + bad.err
