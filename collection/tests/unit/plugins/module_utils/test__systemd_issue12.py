"""systemd edge cases (issue 12 case 8) and the known-variables table (case 9)."""

import os

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import (
    KNOWN_VARIABLES,
    UnitValueError,
    effective_assignments,
    find_conflicts,
    masked_by,
    unit_sources,
    unknown_variable_warning,
    validate_variable,
)
from ansible_collections.keepwarm.ollama.plugins.modules.ollama_service_info import (
    build_facts,
    environment_file_paths,
    parse_manager_environment,
)

OWN = '[Service]\nEnvironment="OLLAMA_KEEP_ALIVE=-1"\nEnvironment="OLLAMA_NUM_PARALLEL=1"\n'


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("early", [True, False])
def test_unset_environment_in_any_dropin_undoes_ours_and_is_reported(tmp_path, early):
    sd = str(tmp_path)
    own = os.path.join(sd, "ollama.service.d", "zz-keepwarm.conf")
    write(os.path.join(sd, "ollama.service"), "[Service]\nExecStart=/usr/bin/ollama serve\n")
    name = "00-early.conf" if early else "zzz-late.conf"  # applied last whatever the order (execute.c)
    other = write(os.path.join(sd, "ollama.service.d", name), "[Service]\nUnsetEnvironment=OLLAMA_KEEP_ALIVE\n")
    write(own, OWN)
    sources = unit_sources("ollama.service", sd)
    _assignments, _resets, final = effective_assignments(sources)
    assert "OLLAMA_KEEP_ALIVE" not in final and final["OLLAMA_NUM_PARALLEL"]["value"] == "1"
    conflicts = find_conflicts(own, {"OLLAMA_KEEP_ALIVE", "OLLAMA_NUM_PARALLEL"}, sources, OWN)
    assert conflicts == [{"variable": "OLLAMA_KEEP_ALIVE", "path": other, "line": 2, "value": None, "wins": True,
                          "unset": True}]  # fmt: skip


def test_unset_with_a_value_only_removes_that_value(tmp_path):
    sd = str(tmp_path)
    write(os.path.join(sd, "ollama.service.d", "zz-keepwarm.conf"), OWN)
    write(os.path.join(sd, "ollama.service.d", "zzz.conf"), "[Service]\nUnsetEnvironment=OLLAMA_KEEP_ALIVE=5m\n")
    _a, _r, final = effective_assignments(unit_sources("ollama.service", sd))
    assert final["OLLAMA_KEEP_ALIVE"]["value"] == "-1"


def test_same_named_dropin_in_a_higher_priority_directory_masks_ours(tmp_path):
    control, etc = str(tmp_path / "system.control"), str(tmp_path / "system")
    own = write(os.path.join(etc, "ollama.service.d", "zz-keepwarm.conf"), OWN)
    mask = write(os.path.join(control, "ollama.service.d", "zz-keepwarm.conf"), "[Service]\n")
    sources = unit_sources("ollama.service", etc, search_dirs=(control, etc))
    assert masked_by(own, sources) == mask
    conflicts = find_conflicts(own, {"OLLAMA_KEEP_ALIVE"}, sources, OWN)
    assert conflicts == [{"variable": "OLLAMA_KEEP_ALIVE", "path": mask, "line": None, "value": None, "wins": True,
                          "masked": True}]  # fmt: skip
    assert masked_by(own, unit_sources("ollama.service", etc, search_dirs=(etc, control))) is None


@pytest.mark.parametrize("name", ["OLLAMA_KEEP_ALIVE\n", "OLLAMA_X\nExecStartPre=+/bin/sh", "1BAD", "A-B", ""])
def test_bad_names_are_refused_not_a_traceback(name):
    with pytest.raises(UnitValueError, match="name"):
        validate_variable(name, "1")


# --- case 9: the variables upstream HEAD reads ----------------------------------------------------------------

UPSTREAM_HEAD = {  # envconfig/config.go at ollama/ollama fb30760
    "OLLAMA_AUTH", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_DEBUG", "OLLAMA_DEBUG_LOG_REQUESTS", "OLLAMA_EDITOR",
    "OLLAMA_FLASH_ATTENTION", "OLLAMA_GO_TEMPLATE", "OLLAMA_GPU_OVERHEAD", "OLLAMA_HOST", "OLLAMA_IGPU_ENABLE",
    "OLLAMA_KEEP_ALIVE", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_LLM_LIBRARY", "OLLAMA_LOAD_TIMEOUT",
    "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_MAX_QUEUE", "OLLAMA_MAX_TRANSFER_STREAMS", "OLLAMA_MODELS", "OLLAMA_NO_CLOUD",
    "OLLAMA_NOHISTORY", "OLLAMA_NOPRUNE", "OLLAMA_NUM_PARALLEL", "OLLAMA_ORIGINS", "OLLAMA_REMOTES",
    "OLLAMA_SCHED_SPREAD", "OLLAMA_VULKAN",
}  # fmt: skip


def test_known_variables_are_upstream_heads():
    assert set(KNOWN_VARIABLES) == UPSTREAM_HEAD


@pytest.mark.parametrize("name", ["OLLAMA_NO_CLOUD", "OLLAMA_MAX_TRANSFER_STREAMS", "OLLAMA_IGPU_ENABLE",
                                  "OLLAMA_DEBUG_LOG_REQUESTS", "OLLAMA_GO_TEMPLATE", "OLLAMA_EDITOR"])  # fmt: skip
def test_read_by_head_no_warning(name):
    assert unknown_variable_warning(name) is None


@pytest.mark.parametrize("name", ["OLLAMA_NEW_ENGINE", "OLLAMA_INTEL_GPU", "OLLAMA_MULTIUSER_CACHE", "OLLAMA_TMPDIR",
                                  "OLLAMA_EMULATOR_TIME_SCALE", "OLLAMA_EMULATOR_CATALOG"])  # fmt: skip
def test_not_read_by_head_warns(name):
    assert "not a variable Ollama reads" in unknown_variable_warning(name)


@pytest.mark.parametrize("name, value, ok", [
    ("OLLAMA_MAX_TRANSFER_STREAMS", "8", True), ("OLLAMA_MAX_TRANSFER_STREAMS", "-1", False),
    ("OLLAMA_NO_CLOUD", "true", True), ("OLLAMA_NO_CLOUD", "yes", False),
    ("OLLAMA_GPU_OVERHEAD", "18446744073709551615", True), ("OLLAMA_GPU_OVERHEAD", "18446744073709551616", False),
    ("OLLAMA_LOAD_TIMEOUT", "18446744074", False), ("OLLAMA_LOAD_TIMEOUT", 0, True),
])  # fmt: skip
def test_types_are_validated(name, value, ok):
    if ok:
        validate_variable(name, value)
    else:
        with pytest.raises(UnitValueError):
            validate_variable(name, value)


# --- case 8: EnvironmentFile= and set-environment do not make a restart pending forever ------------------------

SHOW = {
    "LoadState": "loaded", "ActiveState": "active", "MainPID": "77", "NeedDaemonReload": "no",
    "Environment": "OLLAMA_NUM_PARALLEL=1", "UnsetEnvironment": "OLLAMA_DEBUG",
}  # fmt: skip


def test_environment_file_and_manager_values_are_expected():
    process = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_HOST": "10.0.0.1"}
    facts = build_facts(SHOW, process, manager_env={"OLLAMA_HOST": "10.0.0.1", "OLLAMA_DEBUG": "1"},
                        file_env={"OLLAMA_KEEP_ALIVE": "-1"})  # fmt: skip
    assert facts["restart_pending"] is False, facts["restart_reasons"]
    assert facts["keep_alive"]["forever"] is True


def test_a_changed_environment_file_is_a_pending_restart():
    facts = build_facts(SHOW, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_KEEP_ALIVE": "5m"},
                        file_env={"OLLAMA_KEEP_ALIVE": "-1"})  # fmt: skip
    assert facts["restart_pending"] is True
    assert facts["restart_reasons"] == ["OLLAMA_KEEP_ALIVE: systemd has '-1', the running process has '5m'"]


def test_systemctl_outputs_are_parsed():
    out = "EnvironmentFiles=/etc/default/ollama (ignore_errors=no)\nEnvironmentFiles=/etc/o b.env (ignore_errors=yes)\n"
    assert environment_file_paths(out) == ["/etc/default/ollama", "/etc/o b.env"]
    assert parse_manager_environment("LANG=C.UTF-8\nOLLAMA_HOST=10.0.0.1\nX='a b'\n") == {
        "LANG": "C.UTF-8", "OLLAMA_HOST": "10.0.0.1", "X": "a b"}  # fmt: skip
