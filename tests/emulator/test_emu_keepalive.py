"""keep_alive parsing: the request field (§2 api/types.go Duration.UnmarshalJSON) and OLLAMA_KEEP_ALIVE
(§1 envconfig/config.go KeepAlive), checked through what /api/ps reports over real HTTP."""

from __future__ import annotations

import pytest

from .conftest import FAST, MAX_INT64, NS, call, generate, load, ps_map, session_left, start_emulator

FOREVER = "forever"
UNLOAD = "unload"


class _Nil:
    def __repr__(self):
        return "absent"


NIL = _Nil()  # the key is left out of the request


@pytest.fixture(scope="module")
def emu():
    e = start_emulator(**FAST)
    yield e
    e.stop()


# (JSON keep_alive value, expected: seconds | FOREVER | UNLOAD | ("error", Go text)), rule
KEEP_ALIVE_JSON = [
    (300, 300, "§2 a number means seconds"),
    (42.5, 42.5, "§2 fractional seconds kept (v0.11.8+)"),
    ("5m", 300, "§2 time.ParseDuration"),
    ("+5m", 300, "§2 ParseDuration accepts a leading +"),
    ("1h30m", 5400, "§2 ParseDuration compound"),
    ("1.5h", 5400, "§2 ParseDuration fraction"),
    ("2h45m30.5s", 9930.5, "§2 ParseDuration compound with fraction"),
    ("90s", 90, "§2 ParseDuration seconds"),
    (-1, FOREVER, "§2 any number < 0 is MaxInt64"),
    (-5.5, FOREVER, "§2 any number < 0 is MaxInt64"),
    ("-1m", FOREVER, "§2 negative duration string is MaxInt64"),
    ("-1s", FOREVER, "§2 negative duration string is MaxInt64"),
    (0, UNLOAD, "§2/§5 0 with an empty prompt unloads"),
    (0.0, UNLOAD, "§2 0.0 is 0"),
    (-0.0, UNLOAD, "§2 -0.0 is 0"),
    ("0", UNLOAD, '§2 "0" is the one unitless string ParseDuration accepts'),
    ("0s", UNLOAD, "§2 0s"),
    ("-1", ("error", 'time: missing unit in duration "-1"'), '§2 the string "-1" is a 400'),
    ("10", ("error", 'time: missing unit in duration "10"'), "§2 unit required"),
    ("5M", ("error", 'time: unknown unit "M" in duration "5M"'), "§2 units are case sensitive"),
    ("1d", ("error", 'time: unknown unit "d" in duration "1d"'), "§2 no d unit"),
    ("", ("error", 'time: invalid duration ""'), "§2 empty string"),
    (" 5m", ("error", 'time: invalid duration " 5m"'), "§2 no trimming"),
    (True, ("error", "Unsupported type: 'bool'"), "§2 reflect.TypeOf name"),
    ({}, ("error", "Unsupported type: 'map[string]interface {}'"), "§2 reflect.TypeOf name"),
    ([], ("error", "Unsupported type: '[]interface {}'"), "§2 reflect.TypeOf name"),
    (None, 300, "§2 null leaves it nil: server default on first load (5m)"),
    (NIL, 300, "§2 absent leaves it nil: server default on first load (5m)"),
]


@pytest.mark.parametrize(("value", "expected", "rule"), KEEP_ALIVE_JSON, ids=[repr(r[0]) for r in KEEP_ALIVE_JSON])
def test_keep_alive_json(emu, value, expected, rule):
    # start from a loaded runner so that UNLOAD rows can show the unload; first load uses the row's value
    load(emu, "llama3.2", keep_alive=0)
    assert "llama3.2:latest" not in ps_map(emu)
    body = {"model": "llama3.2"}
    if value is not NIL:
        body["keep_alive"] = value
    if expected == UNLOAD:
        load(emu, "llama3.2", keep_alive="1h")
        r = generate(emu, **body)
        assert r.status == 200, rule
        assert r.json()["done_reason"] == "unload", rule
        assert "llama3.2:latest" not in ps_map(emu), rule
        return
    r = generate(emu, **body)
    if isinstance(expected, tuple):
        assert r.status == 400, rule
        assert r.headers["content-type"] == "application/json; charset=utf-8"
        assert r.json() == {"error": expected[1]}, rule
        assert "llama3.2:latest" not in ps_map(emu), "a bind error fails before any scheduling: " + rule
        return
    assert r.status == 200, (rule, r.body)
    assert r.json()["done_reason"] == "load"
    left = session_left(emu, "llama3.2:latest")
    if expected == FOREVER:
        assert left > MAX_INT64 / NS - 5, rule
    else:
        assert expected - 2 < left <= expected, rule


# (OLLAMA_KEEP_ALIVE, expected seconds | FOREVER | 0), rule. All from config_test.go TestKeepAlive or §1 table.
ENV_KEEP_ALIVE = [
    (None, 300, "§1 unset: default 5m"),
    ("10m", 600, "§1 ParseDuration"),
    ("60", 60, "§1 ParseInt read as seconds"),
    ("3600", 3600, "§1 ParseInt read as seconds"),
    ("0", 0, "§1 0: unload after every request"),
    ("-0", 0, "§1 -0 is 0"),
    ("-1", FOREVER, "§1 negative -> MaxInt64"),
    ("-1m", FOREVER, "§1 negative -> MaxInt64"),
    ("-1s", FOREVER, "§1 negative -> MaxInt64"),
    ("1d", 300, "§1 unparseable: silent 5m"),
    ("1w", 300, "§1 unparseable: silent 5m"),
    ("???", 300, "§1 unparseable: silent 5m"),
    (" ", 300, "§1 blank: silent 5m"),
    ("'10m'", 600, "§1 envconfig.Var trims quotes"),
    (' "-1" ', FOREVER, "§1 envconfig.Var trims spaces then quotes"),
]


@pytest.mark.parametrize(("env", "expected", "rule"), ENV_KEEP_ALIVE, ids=[repr(r[0]) for r in ENV_KEEP_ALIVE])
def test_env_keep_alive(emulator_factory, env, expected, rule):
    extra = {} if env is None else {"OLLAMA_KEEP_ALIVE": env}
    emu = emulator_factory(**FAST, **extra)
    load(emu, "llama3.2")  # keep_alive nil: the server default applies on first load (§6 load)
    left = session_left(emu, "llama3.2:latest")
    if expected == 0:
        assert left is None, rule
        assert [e["reason"] for e in call(emu, "GET", "/emulator/events").json()["events"]] == [
            "cold",
            "keep_alive_0",
        ], rule
    elif expected == FOREVER:
        assert left > MAX_INT64 / NS - 5, rule
    else:
        assert expected - 2 < left <= expected, rule
    emu.proc.terminate()
    log = emu.proc.communicate(timeout=10)[0].decode()
    assert "Listening on" in log
    assert "level=WARN" not in log, "upstream falls back silently: " + rule
