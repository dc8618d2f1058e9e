"""ollama_compose_override: which project value keepwarm's file overrides and which one wins over it."""

import yaml
from ansible_collections.keepwarm.ollama.plugins.modules.ollama_compose_override import (
    find_conflicts,
    render,
)


class FakeDocker:
    """compose config per file, as compose would print it (only the service's environment matters here)."""

    def __init__(self, per_file):
        self.per_file = per_file

    def compose_config(self, project_dir, files):
        assert len(files) == 1
        return {"services": {"ollama": {"environment": self.per_file[files[0]]}}}


def test_overridden_and_winning_values_are_reported_with_their_file():
    docker = FakeDocker(
        {
            "/p/docker-compose.yml": {"OLLAMA_KEEP_ALIVE": "10m", "OLLAMA_DEBUG": "1"},
            "/p/late.yml": {"OLLAMA_MAX_LOADED_MODELS": "3"},
        }
    )
    env = [("OLLAMA_KEEP_ALIVE", "-1"), ("OLLAMA_MAX_LOADED_MODELS", "1")]
    merged = {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "3", "OLLAMA_DEBUG": "1"}
    files = ["/p/docker-compose.yml", "/p/late.yml", "/p/docker-compose.override.yml"]
    conflicts = find_conflicts(docker, "/p", files, "ollama", env=env, merged=merged)
    assert conflicts == [
        {"variable": "OLLAMA_KEEP_ALIVE", "value": "10m", "path": "/p/docker-compose.yml", "wins": False},
        {"variable": "OLLAMA_MAX_LOADED_MODELS", "value": "3", "path": "/p/late.yml", "wins": True},
    ]


def test_no_conflict_when_the_project_sets_nothing_of_keepwarms():
    docker = FakeDocker({"/p/docker-compose.yml": {"OLLAMA_DEBUG": "1"}})
    env = [("OLLAMA_KEEP_ALIVE", "-1")]
    files = ["/p/docker-compose.yml", "/p/docker-compose.override.yml"]
    assert find_conflicts(docker, "/p", files, "ollama", env=env, merged={"OLLAMA_KEEP_ALIVE": "-1"}) == []


def test_extra_ports_are_rendered_under_the_service():
    text = render("ollama", [("OLLAMA_HOST", "0.0.0.0:11435")], "", ["127.0.0.1:11435:11435"])
    assert yaml.safe_load(text) == {
        "services": {"ollama": {"environment": {"OLLAMA_HOST": "0.0.0.0:11435"}, "ports": ["127.0.0.1:11435:11435"]}}
    }
    assert "ports" not in render("ollama", [("OLLAMA_KEEP_ALIVE", "-1")], "", [])
