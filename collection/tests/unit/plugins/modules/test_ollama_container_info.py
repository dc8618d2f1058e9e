"""ollama_container_info: restart/recreate pending from docker inspect, the expected values and the process."""

from ansible_collections.keepwarm.ollama.plugins.modules.ollama_container_info import build_facts

INSPECT = {
    "Id": "abcdef0123456789",
    "Name": "/ollama",
    "State": {"Status": "running", "Running": True, "Pid": 7},
    "Config": {"Image": "img", "Env": ["PATH=/bin", "OLLAMA_HOST=0.0.0.0:11434", "OLLAMA_KEEP_ALIVE=-1"]},
}
IMAGE_ENV = {"PATH": "/bin", "OLLAMA_HOST": "0.0.0.0:11434"}


def _facts(expected, proc_env):
    return build_facts(
        INSPECT, IMAGE_ENV, expected, serve_pid=8, serve_cmdline=["/bin/ollama", "serve"], proc_env=proc_env
    )


def test_all_in_step():
    facts = _facts({"OLLAMA_KEEP_ALIVE": "-1"}, {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "-1"})
    assert not facts["recreate_pending"] and not facts["restart_pending"] and facts["reasons"] == []
    assert facts["keep_alive"]["forever"] and facts["keep_alive"]["source"] == "process"
    assert facts["environment"] == {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "-1"}
    assert facts["container"]["running"] and facts["serve_pid"] == 8


def test_recreate_pending_when_the_container_lacks_a_value():
    facts = _facts({"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "1"}, None)
    assert facts["recreate_pending"] and not facts["restart_pending"]
    assert facts["reasons"] == ["OLLAMA_MAX_LOADED_MODELS: expected has '1', the container has nothing"]
    assert facts["keep_alive"]["source"] == "container"


def test_restart_pending_when_the_process_differs():
    facts = _facts(None, {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "5m"})
    assert facts["restart_pending"] and not facts["recreate_pending"]
    assert not facts["keep_alive"]["forever"]  # the process's value counts


def test_no_container():
    facts = build_facts(None, {}, {"OLLAMA_KEEP_ALIVE": "-1"}, serve_pid=0, serve_cmdline=[], proc_env=None)
    assert facts["exists"] is False and facts["recreate_pending"] and "container" not in facts
