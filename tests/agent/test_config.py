"""Configuration errors end with exit 2 and one line naming the field; flags override the file."""

from __future__ import annotations

import json

import pytest

from heartbeat_agent import ConfigError, load_config, normalize_name, parse_keep_alive


def write(tmp_path, data) -> str:
    path = tmp_path / "heartbeat.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


GOOD = {"url": "http://127.0.0.1:11434", "models": [{"name": "llama3.2", "options": {"num_ctx": 8192}}]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"keep_alive": "forever"}, "keep_alive"),
        ({"keep_alive": "1d"}, "keep_alive"),
        ({"keep_alive": ""}, "keep_alive"),
        ({"keep_alive": "10"}, "keep_alive"),  # 10 s (an integer string is sent as a number): under two intervals
        ({"keep_alive": 0}, "keep_alive"),
        ({"keep_alive": "0s"}, "keep_alive"),
        ({"keep_alive": True}, "keep_alive"),
        ({"keep_alive": "40s"}, "keep_alive"),  # not longer than two default intervals (2 x 20 s)
        ({"url": "127.0.0.1:11434"}, "url"),
        ({"url": "ftp://h"}, "url"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"load_timeout": "10m"}, "load_timeout"),
        ({"interval": -5}, "interval"),
        ({"metrics_path": 5}, "metrics_path"),
        ({"models": []}, "models"),
        ({"models": "llama3.2"}, "models"),
        ({"models": [{"name": ""}]}, "models[0].name"),
        ({"models": [{"name": "a", "options": {"num_ctx": "big"}}]}, "models[0].options.num_ctx"),
        ({"models": ["a", {"name": "b", "options": {"num_ctx": 1.5}}]}, "models[1].options.num_ctx"),
        ({"models": ["a", {"name": "b", "opts": {}}]}, "models[1].opts"),
        ({"models": ["llama3", "llama3:latest"]}, "models[1].name"),
        ({"modles": ["a"]}, "modles"),
    ],
)
def test_bad_config_names_the_field(cli, tmp_path, change, field):
    run = cli("--config", write(tmp_path, {**GOOD, **change}), "once")
    assert run.code == 2
    (line,) = run.log
    assert line["action"] == "config" and line["exit"] == "2" and line["field"] == field


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_unparseable_file(cli, tmp_path, text):
    run = cli("--config", write(tmp_path, text), "status")
    assert run.code == 2
    assert run.log[0]["field"] == "config"


def test_missing_file(cli, tmp_path):
    run = cli("--config", str(tmp_path / "nope.json"), "once")
    assert run.code == 2
    assert "cannot read" in run.log[0]["message"]


def test_bad_flag_value(cli):
    run = cli("--model", "llama3.2", "--keep-alive", "forever", "once")
    assert run.code == 2
    assert run.log[0]["field"] == "keep_alive"


def test_usage_error_is_exit_2(cli):
    run = cli("--request-timeout", "soon", "once")
    assert run.code == 2
    assert run.log[0]["error"] == "usage"


def test_flags_override_the_file_and_keep_model_options(tmp_path):
    path = write(tmp_path, {**GOOD, "models": [{"name": "llama3.2", "options": {"num_ctx": 8192}}, "qwen2.5:7b"]})
    config = load_config(path, {"url": "http://127.0.0.1:9", "models": ["llama3.2:latest", "nomic-embed-text"]})
    assert config.url == "http://127.0.0.1:9"
    assert [(m.key, m.options) for m in config.models] == [
        ("llama3.2:latest", {"num_ctx": 8192}),
        ("nomic-embed-text:latest", {}),
    ]
    assert config.keep_alive.forever and config.keep_alive.wire == -1


def test_default_interval_beats_a_30s_client_keep_alive(tmp_path):
    """A client's keep_alive "30s" replaces the pin (server/sched.go useLoadedRunner): the default timer must fire
    before it expires. A timed keep_alive of the agent's own must still outlive two intervals."""
    config = load_config(write(tmp_path, GOOD), {})
    assert config.interval == 20.0 and config.interval < 30
    assert load_config(write(tmp_path, {**GOOD, "keep_alive": "41s"}), {}).keep_alive.seconds == 41.0
    assert load_config(write(tmp_path, {**GOOD, "keep_alive": "1m", "interval": 29.5}), {}).interval == 29.5
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {**GOOD, "keep_alive": "1m", "interval": 30}), {})
    assert info.value.field == "keep_alive" and "(60s)" in str(info.value)


@pytest.mark.parametrize(
    ("value", "wire", "seconds"),
    [(-1, -1, None), (-5, -1, None), (-0.5, -1, None), ("-1m", -1, None), ("-1s", -1, None), ("24h", "24h", 86400.0),
     (7200, 7200, 7200.0), ("1h30m", "1h30m", 5400.0), ("1.5h", "1.5h", 5400.0),
     # the rulebook sends integer strings as numbers (upstream answers the string "-1" with 400 missing unit)
     ("-1", -1, None), ("10", 10, 10.0)],
)  # fmt: skip
def test_keep_alive_accepted(value, wire, seconds):
    ka = parse_keep_alive(value)
    assert (ka.wire, ka.seconds) == (wire, seconds)


@pytest.mark.parametrize(
    "value", ["forever", "1d", "", "5M", " 5m", "-", None, [], {}, float("inf"), 9223372037, "0s", 1e-10]
)
def test_keep_alive_refused(value):
    with pytest.raises(ConfigError) as info:
        parse_keep_alive(value)
    assert info.value.field == "keep_alive"


@pytest.mark.parametrize(
    ("name", "key"),
    [("llama3", "llama3:latest"), ("llama3:latest", "llama3:latest"), ("Llama3:8B", "llama3:8b"),
     ("library/llama3", "llama3:latest"), ("registry.ollama.ai/library/qwen2.5:7b", "qwen2.5:7b"),
     ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m"),
     ("localhost:5000/x/y", "localhost:5000/x/y:latest")],
)  # fmt: skip
def test_names_match_like_ollama(name, key):
    assert normalize_name(name) == key
