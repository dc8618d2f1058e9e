"""The config format the gateway shares with the heartbeat agent (heartbeat_agent/_configfile.py): one file, one
table of option types (the rulebook's _runner.OPTION_TYPES), so the same bad entry gets the same error from both."""

from __future__ import annotations

import json

import pytest

from gateway import _rules as gw_rules
from gateway._config import BOOL_OPTIONS, read_config_file
from gateway._config import ConfigError as GatewayConfigError
from gateway._config import build_config as gateway_build
from heartbeat_agent import _configfile
from heartbeat_agent import _rules as agent_rules
from heartbeat_agent._config import build_config as agent_build
from heartbeat_agent._config import read_config_file as agent_read
from heartbeat_agent._exceptions import ConfigError as AgentConfigError

BAD_MODELS = [
    ({"name": "a", "options": {"nmu_batch": 512}}, "models[0].options.nmu_batch", "did you mean 'num_batch'"),
    ({"name": "a", "options": {"temperature": "hot"}}, "models[0].options.temperature", "must be a number, got"),
    ({"name": "a", "options": {"use_mmap": 1}}, "models[0].options.use_mmap", "must be a boolean, got 1"),
    ({"name": "a", "options": {"stop": "###"}}, "models[0].options.stop", "must be a list of strings"),
    ({"name": "a", "options": {"num_ctx": 1.5}}, "models[0].options.num_ctx", "must be an integer, got 1.5"),
    ({"name": "a", "options": {"num_ctx": 0}}, "models[0].options.num_ctx", "must be positive, got 0"),
    ({"name": "a", "options": []}, "models[0].options", "must be an object of Ollama options"),
    ({"name": "a b"}, "models[0].name", "must be a model name like"),
    ({"name": "a", "colour": 1}, "models[0].colour", "unknown key (allowed: name, options"),
    (42, "models[0]", "must be a model name or an object with 'name'"),
]


@pytest.mark.parametrize("item, field, message", BAD_MODELS)
def test_agent_and_gateway_refuse_a_bad_model_entry_alike(item, field, message):
    errors = []
    for build, error in ((agent_build, AgentConfigError), (gateway_build, GatewayConfigError)):
        with pytest.raises(error) as exc:
            build({"models": [item]})
        errors.append(exc.value)
        assert exc.value.field == field
        assert message in str(exc.value), str(exc.value)
    agent_msg, gateway_msg = (str(e).split(": ", 1)[1] for e in errors)
    if not isinstance(item, int) and "colour" not in item:  # the gateway also allows 'policy'
        assert agent_msg == gateway_msg


def test_duplicates_named_alike():
    for build, error in ((agent_build, AgentConfigError), (gateway_build, GatewayConfigError)):
        with pytest.raises(error, match=r"'llama3.2:latest' duplicates models\[0\]") as exc:
            build({"models": ["llama3.2", "llama3.2:latest"]})
        assert exc.value.field == "models[1].name"


def test_both_load_one_module_and_one_option_table():
    """The gateway loads the agent's _configfile.py file (not a copy of its code) and the same _runner table."""
    assert gw_rules.configfile.__file__ == _configfile.__file__
    assert gw_rules.runner.OPTION_TYPES == agent_rules.runner.OPTION_TYPES
    assert BOOL_OPTIONS == {"use_mmap"}


@pytest.mark.parametrize(
    "text, message",
    [(None, "cannot read"), ("{", "is not valid JSON"), ("[1]", "must hold a JSON object, got list")],
)
def test_the_file_is_read_alike(tmp_path, text, message):
    path = tmp_path / "c.json"
    if text is not None:
        path.write_text(text)
    for read, error in ((agent_read, AgentConfigError), (read_config_file, GatewayConfigError)):
        with pytest.raises(error, match=message) as exc:
            read(str(path))
        assert exc.value.field == "config"


def test_a_good_entry_gives_the_same_options():
    item = {"name": "llama3.2", "options": {"num_ctx": 8192, "use_mmap": False, "stop": ["###"], "temperature": 0}}
    agent = agent_build({"models": [json.loads(json.dumps(item))]}).models[0]
    gateway = gateway_build({"models": [json.loads(json.dumps(item))]}).models[0]
    assert agent.options == gateway.options == item["options"]
    assert gateway.reload_options == {"num_ctx": 8192, "use_mmap": False}


@pytest.mark.parametrize(
    "raw, field, message",
    [
        ({"models": {"llama3.2": {}}}, "models", "must be a list, got {'llama3.2': {}}"),
        ({"models": ["a"], "surprise": 1}, "surprise", "unknown key (allowed: ca_path, "),
    ],
)
def test_list_and_unknown_keys_refused_alike(raw, field, message):
    for build, error in ((agent_build, AgentConfigError), (gateway_build, GatewayConfigError)):
        with pytest.raises(error) as exc:
            build(raw)
        assert exc.value.field == field and message in str(exc.value), str(exc.value)


def test_gateway_section_keys_in_order():
    with pytest.raises(GatewayConfigError, match=r"allowed: keep_alive_min, keep_alive_max\)") as exc:
        gateway_build({"gateway": {"unpinned": {"keep_alive_mid": "1m"}}})
    assert exc.value.field == "gateway.unpinned.keep_alive_mid"
