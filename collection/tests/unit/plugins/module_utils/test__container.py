"""_container: compose override rendering, merged-environment reading, the serve process, container facts."""

import json
import os

import pytest
import yaml
from ansible_collections.keepwarm.ollama.plugins.module_utils._container import (
    ContainerError,
    compare_environment,
    compose_escape,
    compose_version_line,
    container_facts,
    find_serve_process,
    is_serve,
    project_files,
    render_override,
    service_environment,
)
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import UnitValueError, desired_environment


def test_desired_environment_uses_the_drop_in_rules():
    env, warnings = desired_environment(-1, 1, {"OLLAMA_NUM_PARALEL": 2})
    assert env == [("OLLAMA_KEEP_ALIVE", "-1"), ("OLLAMA_MAX_LOADED_MODELS", "1"), ("OLLAMA_NUM_PARALEL", "2")]
    assert "OLLAMA_NUM_PARALLEL" in warnings[0]
    with pytest.raises(UnitValueError, match="1d"):
        desired_environment("1d", None, {})
    with pytest.raises(UnitValueError, match="set twice"):
        desired_environment(-1, None, {"OLLAMA_KEEP_ALIVE": "5m"})
    with pytest.raises(UnitValueError, match="whole number"):
        desired_environment(None, -1, {})


def test_override_is_yaml_compose_reads_back_and_escapes_dollars():
    text = render_override("ollama", [("OLLAMA_KEEP_ALIVE", "-1"), ("OLLAMA_ORIGINS", 'a$b"c')], "Managed by X")
    data = yaml.safe_load(text)
    assert data == {"services": {"ollama": {"environment": {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_ORIGINS": 'a$$b"c'}}}}
    assert text.startswith("# Managed by X\n")
    assert compose_escape("$HOME") == json.dumps("$$HOME")


def test_version_line_follows_the_main_file():
    assert compose_version_line('version: "3.8"\nservices: {}\n') == 'version: "3.8"\n'
    assert compose_version_line("services:\n  version: 1\n") == ""
    text = render_override("ollama", [("OLLAMA_KEEP_ALIVE", "-1")], "h", 'version: "3.8"\n')
    assert '\nversion: "3.8"\nservices:' in text


def test_service_environment_both_forms_and_missing_service():
    cfg = {"services": {"ollama": {"environment": ["A=1", "B="]}, "web": {"environment": {"X": None, "Y": 2}}}}
    assert service_environment(cfg, "ollama") == {"A": "1", "B": ""}
    assert service_environment(cfg, "web") == {"X": "", "Y": "2"}
    with pytest.raises(ContainerError, match=r"'gpu' is not in the compose project \(services: ollama, web\)"):
        service_environment(cfg, "gpu")


def test_compare_environment_only_ollama_variables():
    reasons = compare_environment({"OLLAMA_KEEP_ALIVE": "-1", "PATH": "/a"}, {"PATH": "/b"}, "compose", "container")
    assert reasons == ["OLLAMA_KEEP_ALIVE: compose has '-1', container has nothing"]
    assert compare_environment({"OLLAMA_X": "1"}, {"OLLAMA_X": "1"}, "a", "b") == []


def test_project_files_errors_name_the_fix(tmp_path):
    with pytest.raises(ContainerError, match="does not exist: set keepalive_compose_project_dir"):
        project_files(str(tmp_path / "nope"), "docker-compose.override.yml")
    with pytest.raises(ContainerError, match="no compose file in"):
        project_files(str(tmp_path), "docker-compose.override.yml")
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / "compose.override.yaml").write_text("services: {}\n")
    files = project_files(str(tmp_path), "keepwarm.yml")
    assert [os.path.basename(f) for f in files] == ["docker-compose.yml", "compose.override.yaml", "keepwarm.yml"]


def _proc(tmp_path, pid, ppid, argv, env=b""):
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "stat").write_text("%d (x y) S %d 0 0\n" % (pid, ppid))
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "environ").write_bytes(env)


def test_find_serve_process_through_a_wrapper(tmp_path):
    _proc(tmp_path, 10, 1, ["/bin/sh", "/entrypoint.sh"])
    _proc(tmp_path, 11, 10, ["/usr/bin/python3", "/bin/ollama", "serve"])
    _proc(tmp_path, 12, 1, ["/bin/ollama", "serve"])
    assert find_serve_process(10, proc=str(tmp_path)) == 11
    assert find_serve_process(12, proc=str(tmp_path)) == 12
    assert is_serve(["/bin/ollama", "serve"]) and not is_serve(["/bin/ollama", "ps"])
    assert not is_serve(["/usr/bin/python3", "serve"])


def test_container_facts_from_inspect():
    facts = container_facts(
        {
            "Id": "0123456789abcdef",
            "Name": "/ollama",
            "RestartCount": 2,
            "State": {"Status": "running", "Running": True, "Pid": 42},
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}},
            "Config": {"Image": "docker.io/ollama/ollama:latest", "Labels": {"com.docker.compose.service": "ollama"}},
            "NetworkSettings": {"Ports": {"11434/tcp": [{"HostIp": "0.0.0.0", "HostPort": "11434"}]}},  # noqa: S104
            "Mounts": [{"Type": "volume", "Name": "ollama_ollama", "Source": "/v", "Destination": "/root/.ollama"}],
        }
    )
    assert facts["id"] == "0123456789ab" and facts["name"] == "ollama" and facts["pid"] == 42
    assert facts["restart_policy"] == "unless-stopped" and facts["restart_count"] == 2
    assert facts["ports"] == ["0.0.0.0:11434->11434/tcp"]
    assert facts["mounts"][0]["name"] == "ollama_ollama" and facts["compose_service"] == "ollama"
