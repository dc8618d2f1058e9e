"""HTTP-layer rules of the emulator that issue 11 found different from upstream HEAD, each against a real emulator
process: the Host-header check (server/routes.go allowedHostsMiddleware, allowedHost, isLocalIP), /api/tags fields
(server/model_list_cache.go buildModelListSummary, api/types.go ListModelResponse/ModelDetails), model-name errors
(server/model_resolver.go parseAndValidateModelRef, internal/modelref ParseRef, routes.go writeModelRefParseError),
and the emulator-only `X-Ollama-Emulator-Now` header that tells a client the emulated "now"."""

from __future__ import annotations

import ipaddress
import subprocess
import time

import pytest

from .conftest import FAST, NS, call, parse_time, ps_map, start_emulator


@pytest.fixture(scope="module")
def emu():
    """Bound to 127.0.0.1 (the fixture's default), so the Host check is enforced; scale 60."""
    e = start_emulator(OLLAMA_EMULATOR_TIME_SCALE="60", **FAST)
    yield e
    e.stop()


# ---- item 7: Host header ---------------------------------------------------------------------------------------

ALLOWED = [
    ("0.0.0.0", "IsUnspecified"),
    ("0.0.0.0:11434", "IsUnspecified (host part of host:port)"),
    ("::", "IsUnspecified (IPv6, no brackets: SplitHostPort fails, the whole value parses)"),
    ("[::]:11434", "IsUnspecified (IPv6)"),
    ("127.0.0.1", "IsLoopback"),
    ("127.1.2.3:80", "IsLoopback (127/8)"),
    ("[::1]:11434", "IsLoopback (IPv6)"),
    ("::ffff:127.0.0.1", "IsLoopback unmaps IPv4-in-IPv6"),
    ("10.1.2.3", "IsPrivate 10/8"),
    ("172.31.255.254:1", "IsPrivate 172.16/12"),
    ("192.168.0.1", "IsPrivate 192.168/16"),
    ("[fd12:3456::1]:80", "IsPrivate fc00::/7"),
    ("", "allowedHost: empty"),
    ("LocalHost:11434", "allowedHost: localhost, case-insensitive"),
    ("printer.local", "allowedHost: .local"),
    ("api.internal:8080", "allowedHost: .internal"),
    ("app.localhost", "allowedHost: .localhost"),
]
DENIED = [
    ("169.254.10.20", "link-local is not IsPrivate"),
    ("[fe80::1234:1]:11434", "IPv6 link-local is not IsPrivate"),
    ("100.64.0.1", "CGNAT 100.64/10 is not IsPrivate"),
    ("100.127.255.254:80", "CGNAT upper end"),
    ("198.18.255.254", "benchmarking 198.18/15 is not IsPrivate"),
    ("198.19.0.1:11434", "benchmarking 198.19"),
    ("172.32.0.1", "just outside 172.16/12"),
    ("::ffff:0.0.0.0", "IsUnspecified does not unmap IPv4-in-IPv6"),
    ("[::1]", "no port: SplitHostPort fails and `[::1]` is no address"),
    ("example.com", "allowedHost: other names"),
    ("localhost.example.com", "allowedHost: suffix rules only"),
]


def local_addresses() -> set[str]:
    """This machine's interface addresses, from iproute2 (independent of the emulator's /proc reading)."""
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines()}


@pytest.mark.parametrize(("host", "rule"), ALLOWED, ids=[h or "empty" for h, _ in ALLOWED])
def test_host_allowed(emu, host, rule):
    """routes.go allowedHostsMiddleware on a loopback bind: loopback, private and unspecified (0.0.0.0, ::)
    addresses and allowedHost names pass."""
    r = call(emu, "GET", "/api/version", headers={"Host": host})
    assert r.status == 200, rule


@pytest.mark.parametrize(("host", "rule"), DENIED, ids=[h for h, _ in DENIED])
def test_host_denied(emu, host, rule):
    """routes.go allowedHostsMiddleware: netip IsPrivate is RFC 1918 + fc00::/7 only, so link-local, CGNAT and
    benchmarking addresses (unless they are this machine's: isLocalIP) and other names get 403, empty body."""
    bare = host[1:].split("]")[0] if "]:" in host else host.split(":")[0] if host.count(":") == 1 else host
    assert bare not in local_addresses()
    r = call(emu, "GET", "/api/version", headers={"Host": host})
    assert (r.status, r.body) == (403, b""), rule


def test_host_local_interface_addresses(emu):
    """routes.go isLocalIP: an address of one of this machine's interfaces passes even when it is not private
    (a link-local fe80:: address, a 198.18/15 lab address, a public one)."""
    for addr in sorted(local_addresses()):
        ip = ipaddress.ip_address(addr)
        host = "[%s]:11434" % addr if ip.version == 6 else addr + ":11434"
        assert call(emu, "GET", "/api/version", headers={"Host": host}).status == 200, addr


def test_options_on_allowed_name_is_204(emu):
    """routes.go allowedHostsMiddleware: a request with an allowed *name* and method OPTIONS is answered 204 by the
    middleware; an allowed address goes on to the router (405 for a known path)."""
    r = call(emu, "OPTIONS", "/api/tags", headers={"Host": "localhost:11434"})
    assert (r.status, r.body) == (204, b"")
    assert call(emu, "OPTIONS", "/api/tags", headers={"Host": "127.0.0.1:11434"}).status == 405


# ---- item 8: /api/tags -----------------------------------------------------------------------------------------


def test_tags_capabilities_and_lengths(emu):
    """server/model_list_cache.go buildModelListSummary: each /api/tags entry carries capabilities (after details,
    api.ListModelResponse) and details.context_length / details.embedding_length (the model's training context and
    embedding size, api.ModelDetails), which agree with /api/show; /api/ps details have neither (PsHandler builds
    ModelDetails without them)."""
    tags = {m["name"]: m for m in call(emu, "GET", "/api/tags").json()["models"]}
    for name, m in tags.items():
        assert list(m) == ["name", "model", "modified_at", "size", "digest", "details", "capabilities"]
        assert list(m["details"])[-2:] == ["context_length", "embedding_length"]
        show = call(emu, "POST", "/api/show", {"model": name}).json()
        assert m["capabilities"] == show["capabilities"]
        arch = show["model_info"]["general.architecture"]
        assert m["details"]["context_length"] == show["model_info"][arch + ".context_length"] > 0
        assert m["details"]["embedding_length"] == show["model_info"][arch + ".embedding_length"] > 0
    assert tags["nomic-embed-text:latest"]["capabilities"] == ["embedding"]
    assert "completion" in tags["llama3.2:latest"]["capabilities"]
    assert call(emu, "POST", "/api/generate", {"model": "llama3.2"}).status == 200
    assert "context_length" not in ps_map(emu)["llama3.2:latest"]["details"]


# ---- item 10: model names --------------------------------------------------------------------------------------

G, C, E, ES, S = "/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show"
BLANK = [
    (G, {}, (404, "model '' not found"), "GenerateHandler fallback"),
    (G, {"model": "   "}, (404, "model '   ' not found"), "GenerateHandler: trimmed to empty, echoed as sent"),
    (C, {"model": " \t"}, (400, "model is required"), "ChatHandler fallback"),
    (E, {}, (404, "model '' not found"), "EmbedHandler fallback"),
    (E, {"model": "  "}, (404, "model '  ' not found"), "EmbedHandler fallback, as sent"),
    (ES, {}, (400, "model is required"), "EmbeddingsHandler fallback"),
    (ES, {"model": " "}, (400, "model is required"), "EmbeddingsHandler fallback"),
    (S, {"model": "  "}, (400, "model is required"), "ShowHandler: err.Error() of ErrModelRequired"),
]


@pytest.mark.parametrize(("path", "body", "expected", "rule"), BLANK, ids=[f"{b[0]}-{b[3]}" for b in BLANK])
def test_blank_model(emu, path, body, expected, rule):
    """model_resolver.go parseAndValidateModelRef -> modelref ErrModelRequired for an empty or blank name;
    routes.go writeModelRefParseError answers with each handler's fallback (so `{}` is 404 on /api/embed and 400
    on /api/embeddings)."""
    r = call(emu, "POST", path, body)
    assert (r.status, r.json()) == (expected[0], {"error": expected[1]}), rule


@pytest.mark.parametrize("path", [G, C, E, ES, S])
@pytest.mark.parametrize(
    "name", ["bad name!", "a/b/c/d", "llama3.2:", ":7b", "-leading-dash", "ns.dot/model", "m\u00f6del", "m" * 81]
)
def test_invalid_model_name_is_400(emu, path, name):
    """model_resolver.go parseAndValidateModelRef: a name that model.ParseName does not accept (types/model
    isValidPart: ASCII letters, digits and `_` first, namespace without `.`, 1-80 characters; a separator with
    nothing on one side is MissingPart) is model.ErrUnqualifiedName, which writeModelRefParseError answers 400
    `invalid model name` on every handler."""
    r = call(emu, "POST", path, {"model": name, "prompt": "", "input": "x"})
    assert (r.status, r.json()) == (400, {"error": "invalid model name"})


@pytest.mark.parametrize("name", ["_private", "m" * 80, "registry.example:5000/team/model:v1.2-rc_3"])
def test_valid_unknown_name_is_not_found(emu, name):
    """types/model isValidPart accepts `_` first, 80 characters, and a host with a port: such names pass
    parseAndValidateModelRef and are simply not found (GenerateHandler 404 `model '<name>' not found`)."""
    r = call(emu, "POST", G, {"model": name})
    assert (r.status, r.json()) == (404, {"error": "model '%s' not found" % name})


def test_conflicting_source_suffixes(emu):
    """internal/modelref ParseRef: `:local` and `:cloud` together is ErrConflictingSourceSuffix, 400 with
    `use either :local or :cloud, not both: "<name>"` (the trimmed name)."""
    for path in (G, C, E, S):
        r = call(emu, "POST", path, {"model": " llama3.2:local:cloud ", "input": "x"})
        assert (r.status, r.json()) == (400, {"error": 'use either :local or :cloud, not both: "llama3.2:local:cloud"'})


def test_spaces_trimmed_and_local_suffix_resolves(emu):
    """modelref ParseRef trims surrounding spaces and splits one `:local` suffix (case-insensitive, spaces
    allowed around it) off before the name is parsed; the response's `model` still echoes the request string."""
    call(emu, "POST", G, {"model": "llama3.2", "keep_alive": 0})
    r = call(emu, "POST", G, {"model": "  llama3.2  "})
    assert (r.status, r.json()["model"], r.json()["done_reason"]) == (200, "  llama3.2  ", "load")
    assert list(ps_map(emu)) == ["llama3.2:latest"]
    for name in ("llama3.2:local", "llama3.2:latest:local", "LLAMA3.2: LOCAL "):
        r = call(emu, "POST", C, {"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": False})
        assert (r.status, r.json()["model"]) == (200, name)
    assert call(emu, "POST", S, {"model": "llama3.2:3b:local"}).status == 200
    assert call(emu, "POST", E, {"model": "nomic-embed-text:local", "input": "x"}).status == 200
    assert set(ps_map(emu)) == {"llama3.2:latest", "nomic-embed-text:latest"}
    r = call(emu, "POST", G, {"model": "nope:local"})
    assert (r.status, r.json()) == (404, {"error": "model 'nope:local' not found"})


# ---- Also: the emulated "now" ----------------------------------------------------------------------------------


def test_emulated_now_header(emu):
    """Emulator-only (no upstream rule): every response, whatever its status or route, carries
    `X-Ollama-Emulator-Now`, the emulated clock as Go RFC 3339 in the server's local zone, like expires_at. It
    runs OLLAMA_EMULATOR_TIME_SCALE times faster than real time, and `expires_at - now` is the keep_alive left."""
    responses = [
        call(emu, "GET", "/"),
        call(emu, "GET", "/nope"),
        call(emu, "GET", "/api/version", headers={"Host": "example.com"}),
        call(emu, "POST", G, {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 1}}),
        call(
            emu,
            "POST",
            "/v1/chat/completions",
            {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1, "stream": True},
        ),  # fmt: skip
        call(emu, "GET", "/v1/models"),
    ]
    assert [r.status for r in responses] == [200, 404, 403, 200, 200, 200]
    nows = [r.now_ns for r in responses]  # parse_time rejects anything Go would not print
    assert nows == sorted(nows)
    first = call(emu, "GET", "/api/version").now_ns
    time.sleep(0.5)
    second = call(emu, "GET", "/api/version").now_ns
    assert 25 * NS <= second - first <= 45 * NS  # 0.5 s real at scale 60 = 30 s emulated
    assert second - time.time_ns() > 25 * NS  # ahead of the wall clock: a client must not use its own
    r = call(emu, "POST", G, {"model": "llama3.2", "keep_alive": "7m"})
    assert r.status == 200
    ps = call(emu, "GET", "/api/ps")
    (m,) = [m for m in ps.json()["models"] if m["name"] == "llama3.2:latest"]
    assert 400 <= (parse_time(m["expires_at"]) - ps.now_ns) / NS <= 420
