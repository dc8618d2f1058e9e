"""The policy engine on request bodies, without processes: what Ollama would bind (Go encoding/json rules) decides."""

from __future__ import annotations

import json

import pytest

from gateway._config import ConfigError, build_config, parse_model_flag
from gateway._policy import decide


def cfg(**gateway):
    return build_config({"models": [{"name": "llama3.2", "options": {"num_ctx": 8192}}], "gateway": gateway or {}})


def body_of(decision):
    return json.loads(decision.body) if decision.body is not None else None


def test_keep_alive_zero_with_prompt_is_forced_to_forever():
    d = decide(cfg(), "/api/generate", b'{"model":"llama3.2","prompt":"hi","keep_alive":0}')
    assert d.action == "forward"
    assert "keep_alive.force" in d.rules
    assert body_of(d)["keep_alive"] == -1
    assert body_of(d)["options"] == {"num_ctx": 8192}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"llama3.2","keep_alive":0}',
        b'{"model":"llama3.2","prompt":"","keep_alive":"0s"}',
        b'{"model":"llama3.2","Keep_Alive":0}',  # Go matches keys case-insensitively
        b'{"model":"llama3.2","keep_alive":"5m","KEEP_ALIVE":0.0}',  # the last occurrence wins
        b'{"model":"llama3.2","keep_alive":0} trailing bytes',  # json.Decoder.Decode ignores what follows
        b'  \n{"model":"LLAMA3.2:latest","keep_alive":-0.0}',  # same model for Ollama (name.go EqualFold)
        b'{"model":"llama3.2","\\u212aeep_alive":0}',  # Kelvin sign folds to k in Go
    ],
)
def test_unload_of_pinned_model_is_refused(raw):
    d = decide(cfg(), "/api/generate", raw)
    assert d.action == "refuse", d
    assert d.status == 403
    assert d.rules == ["unload.refuse"]
    assert "unload=refuse" in json.loads(d.body)["error"]


def test_chat_unload_refused_and_allowed_by_policy():
    raw = b'{"model":"llama3.2","messages":[],"keep_alive":0}'
    assert decide(cfg(), "/api/chat", raw).action == "refuse"
    relaxed = build_config({"models": [{"name": "llama3.2", "policy": {"unload": "allow"}}]})
    d = decide(relaxed, "/api/chat", raw)
    assert d.action == "forward" and d.body is None and d.rules == ["unload.allow"]


@pytest.mark.parametrize(
    "raw, rule",
    [
        (b'{"model":"llama3.2","keep_alive":"-1"}', "pass.invalid_keep_alive"),  # 400 missing unit, from Ollama
        (b'{"model":"llama3.2","keep_alive":true}', "pass.invalid_keep_alive"),
        (b'{"model":"llama3.2","prompt":"x","options":{"num_ctx":"big"}}', "pass.invalid_options"),  # 500
        (b'{"model":"llama3.2","prompt":"x","options":[1]}', "pass.invalid_options"),
        (b'{"model":"llama3.2", bad', "pass.unreadable_body"),
        (b"", "pass.unreadable_body"),
        (b"[]", "pass.unreadable_body"),
        (b'{"model":"llama3.2","keep_alive":NaN}', "pass.unreadable_body"),
        (b'{"model":5}', "pass.no_model"),
        (b'{"prompt":"x"}', "pass.no_model"),
    ],
)
def test_requests_ollama_rejects_are_forwarded_unchanged(raw, rule):
    d = decide(cfg(), "/api/generate", raw)
    assert d.action == "forward"
    assert d.body is None  # Ollama answers with its own error
    assert d.rules == [rule]


def test_options_rewritten_to_pinned_values_keeping_the_rest():
    raw = b'{"model":"llama3.2","prompt":"x","options":{"temperature":0.25,"num_ctx":2048,"num_batch":64,"num_gpu":-1}}'
    d = decide(cfg(), "/api/generate", raw)
    opts = body_of(d)["options"]
    assert opts == {"temperature": 0.25, "num_gpu": -1, "num_ctx": 8192}  # num_batch unset like the pin; num_gpu<0 kept
    assert "options.rewrite" in d.rules
    assert "options.num_ctx 2048 -> 8192" in d.details


def test_equal_options_not_rewritten_and_other_fields_kept_byte_for_byte():
    raw = b'{"model":"llama3.2","prompt":"x","options":{"num_ctx":8192.9},"keep_alive":-1,"n":1.50,"big":1234567890123}'
    d = decide(cfg(), "/api/generate", raw)
    assert d.rules == ["pass.pinned"]  # 8192.9 truncates to 8192 (Options.FromMap), -1 is already forever
    assert d.body is None


def test_strip_policy_and_shift():
    c = build_config({"models": [{"name": "llama3.2", "policy": {"keep_alive": "strip"}}]})
    d = decide(
        c,
        "/api/chat",
        b'{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"keep_alive":"5m","shift":false}',
    )
    out = body_of(d)
    assert "keep_alive" not in out and "shift" not in out
    assert d.rules == ["options.shift_strip", "keep_alive.strip"]


def test_rewrite_keeps_duplicate_pairs_in_order():
    d = decide(cfg(), "/api/generate", b'{"model":"other","prompt":"a","Model":"llama3.2","keep_alive":"1m"}')
    assert d.policy is not None and d.policy.name == "llama3.2"  # last "model" key wins, as in Go
    assert d.body.decode().startswith('{"model":"other","prompt":"a","Model":"llama3.2"')


def test_unpinned_floor_and_ceiling():
    c = cfg(unpinned={"keep_alive_min": "1m", "keep_alive_max": "1h"})
    assert (
        body_of(decide(c, "/api/generate", b'{"model":"qwen2.5:7b","prompt":"x","keep_alive":"10s"}'))["keep_alive"]
        == 60
    )
    d = decide(c, "/api/generate", b'{"model":"qwen2.5:7b","prompt":"x","keep_alive":-1}')
    assert body_of(d)["keep_alive"] == 3600 and d.rules == ["keep_alive.ceiling"]
    unload = decide(c, "/api/generate", b'{"model":"qwen2.5:7b","keep_alive":0}')
    assert unload.body is None  # an unload of an unpinned model is not turned into a load


def test_openai_routes_have_no_keep_alive_to_rewrite():
    d = decide(cfg(), "/v1/chat/completions", b'{"model":"llama3.2","messages":[{"role":"user","content":"x"}]}')
    assert d.action == "forward" and d.body is None and d.policy is not None


def test_evict_check_only_for_unpinned_models_when_cap_known():
    c = cfg(max_loaded_models=1)
    assert decide(c, "/api/generate", b'{"model":"qwen2.5:7b","prompt":"x"}').action == "check_evict"
    assert decide(c, "/api/generate", b'{"model":"llama3.2","prompt":"x"}').action == "forward"


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"models": [{"name": "llama3.2", "policy": {"unload": "maybe"}}]}, "models[0].policy.unload"),
        ({"models": [{"name": "llama3.2", "policy": {"evict": "x"}}]}, "models[0].policy.evict"),
        ({"models": [{"name": "llama3.2", "options": {"num_ctx": "8k"}}]}, "models[0].options.num_ctx"),
        ({"models": ["llama3.2", "llama3.2:latest"]}, "models[1].name"),
        ({"gateway": {"unpinned": {"keep_alive_min": "1d"}}}, "gateway.unpinned.keep_alive_min"),
        ({"gateway": {"listen": "nope"}}, "gateway.listen"),
        ({"url": "ftp://x"}, "url"),
        ({"gateway": {"max_loaded_models": 0}}, "gateway.max_loaded_models"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_config_errors_name_the_field(raw, field):
    with pytest.raises(ConfigError) as exc:
        build_config(raw)
    assert exc.value.field == field


def test_model_flag_splits_options_and_policies():
    assert parse_model_flag("llama3.2,num_ctx=8192,unload=allow,use_mmap=false") == {
        "name": "llama3.2",
        "options": {"num_ctx": 8192, "use_mmap": False},
        "policy": {"unload": "allow"},
    }
    with pytest.raises(ConfigError):
        parse_model_flag("llama3.2,num_ctx")


def test_the_agents_config_file_is_accepted_as_is():
    """Every key of heartbeat_agent/_config.py DEFAULTS is accepted, so the agent's file can be the gateway's too."""
    from heartbeat_agent._config import DEFAULTS

    agent_file = dict(DEFAULTS, models=[{"name": "llama3.2", "options": {"num_ctx": 8192}}])
    cfg = build_config(agent_file)
    assert cfg.upstream == DEFAULTS["url"] and cfg.models[0].reload_options == {"num_ctx": 8192}
