"""ollama_override end to end through main(), on a temporary systemd directory."""

import os
import stat

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import parse_environment_value, parse_unit_text
from ansible_collections.keepwarm.ollama.plugins.modules import ollama_override

from ...conftest import ModuleFail


def dropin(d):
    return os.path.join(d, "ollama.service.d", "zz-keepwarm.conf")


def read_back(path):
    env = {}
    with open(path) as f:
        for section, key, value, _line in parse_unit_text(f.read()):
            if section == "Service" and key == "Environment":
                env.update(parse_environment_value(value))
    return env


def test_write_idempotent_mode_and_read_back(run_module, tmp_path):
    d = str(tmp_path)
    args = dict(systemd_dir=d, keep_alive=-1, max_loaded_models=2, environment={"OLLAMA_MODELS": 'my "x" 5% C:\\m'})
    first = run_module(ollama_override.main, args)
    assert first["changed"] is True
    assert first["path"] == dropin(d)
    assert stat.S_IMODE(os.stat(dropin(d)).st_mode) == 0o644
    intended = {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_MODELS": 'my "x" 5% C:\\m'}
    assert read_back(dropin(d)) == intended
    assert first["environment"] == intended
    mtime = os.stat(dropin(d)).st_mtime_ns
    second = run_module(ollama_override.main, args)
    assert second["changed"] is False
    assert os.stat(dropin(d)).st_mtime_ns == mtime


def test_mode_is_repaired(run_module, tmp_path):
    d = str(tmp_path)
    run_module(ollama_override.main, dict(systemd_dir=d, keep_alive="10m"))
    os.chmod(dropin(d), 0o600)
    assert run_module(ollama_override.main, dict(systemd_dir=d, keep_alive="10m"))["changed"] is True
    assert stat.S_IMODE(os.stat(dropin(d)).st_mode) == 0o644


def test_check_mode_and_diff_write_nothing(run_module, tmp_path):
    d = str(tmp_path)
    result = run_module(ollama_override.main, dict(systemd_dir=d, keep_alive="1h30m"), check_mode=True, diff=True)
    assert result["changed"] is True
    assert not os.path.exists(dropin(d))
    assert result["diff"]["before"] == ""
    assert 'Environment="OLLAMA_KEEP_ALIVE=1h30m"' in result["diff"]["after"]


def test_absent(run_module, tmp_path):
    d = str(tmp_path)
    run_module(ollama_override.main, dict(systemd_dir=d, keep_alive=-1))
    check = run_module(ollama_override.main, dict(systemd_dir=d, state="absent"), check_mode=True)
    assert check["changed"] is True and os.path.exists(dropin(d))
    assert run_module(ollama_override.main, dict(systemd_dir=d, state="absent"))["changed"] is True
    assert not os.path.exists(dropin(d))
    assert run_module(ollama_override.main, dict(systemd_dir=d, state="absent"))["changed"] is False


# The bad-input table of issue 4: accepted values are written, refused ones fail with the reason and
# leave the directory untouched.
@pytest.mark.parametrize("value", [-1, "-1m", "-1", 0, "10", "1h30m", "1.5h"])
def test_keep_alive_accepted(run_module, tmp_path, value):
    result = run_module(ollama_override.main, dict(systemd_dir=str(tmp_path), keep_alive=value))
    assert result["environment"] == {"OLLAMA_KEEP_ALIVE": str(value)}


@pytest.mark.parametrize(
    "args, reason",
    [
        (dict(keep_alive="forever"), "'forever' refused"),
        (dict(keep_alive="1d"), "no day or week unit"),
        (dict(keep_alive="5 m"), "whitespace"),
        (dict(keep_alive=""), "empty value"),
        (dict(keep_alive="1e3"), "exponent"),
        (dict(keep_alive=True), "boolean"),
        (dict(max_loaded_models=-1), "OLLAMA_MAX_LOADED_MODELS=-1 refused"),
        (dict(max_loaded_models="one"), "OLLAMA_MAX_LOADED_MODELS='one' refused"),
        (dict(environment={"OLLAMA_MODELS": "/srv\nExecStartPre=/bin/false"}), "control character"),
        (dict(environment={"OLLAMA_ORIGINS": " http://b"}), "panic"),
        (dict(keep_alive=-1, environment={"OLLAMA_KEEP_ALIVE": "1m"}), "set twice"),
        (dict(dropin="../evil.conf"), "dropin"),
        (dict(dropin="x.txt"), "dropin"),
    ],
)
def test_refused_and_nothing_written(run_module, tmp_path, args, reason):
    d = str(tmp_path)
    # an existing drop-in must survive a failed run untouched
    run_module(ollama_override.main, dict(systemd_dir=d, keep_alive="7m"))
    with open(dropin(d), "rb") as f:
        before = f.read()
    listing = sorted(os.listdir(os.path.dirname(dropin(d))))
    with pytest.raises(ModuleFail) as exc:
        run_module(ollama_override.main, dict(args, systemd_dir=d))
    assert reason in exc.value.result["msg"]
    with open(dropin(d), "rb") as f:
        assert f.read() == before
    assert sorted(os.listdir(os.path.dirname(dropin(d)))) == listing


def test_unknown_variable_warns_with_closest(run_module, tmp_path):
    result = run_module(ollama_override.main, dict(systemd_dir=str(tmp_path), environment={"OLLAMA_KEEPALIVE": "5m"}))
    assert any("did you mean OLLAMA_KEEP_ALIVE?" in w for w in result["warnings"])


def test_conflicts_reported(run_module, tmp_path):
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "ollama.service.d"))
    with open(os.path.join(d, "ollama.service.d", "override.conf"), "w") as f:
        f.write("[Service]\nEnvironment=OLLAMA_KEEP_ALIVE=10m\n")
    with open(os.path.join(d, "ollama.service.d", "zzz-other.conf"), "w") as f:
        f.write("[Service]\nEnvironment=OLLAMA_MAX_LOADED_MODELS=5\n")
    result = run_module(ollama_override.main, dict(systemd_dir=d, keep_alive=-1, max_loaded_models=1))
    got = sorted((c["variable"], os.path.basename(c["path"]), c["value"], c["wins"]) for c in result["conflicts"])
    assert got == [
        ("OLLAMA_KEEP_ALIVE", "override.conf", "10m", False),
        ("OLLAMA_MAX_LOADED_MODELS", "zzz-other.conf", "5", True),
    ]
    assert any("zzz-other.conf" in w and "wins" in w for w in result["warnings"])
