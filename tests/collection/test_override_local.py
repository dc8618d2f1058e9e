"""ollama_override run by real Ansible on this machine, writing into a temporary systemd directory.

No systemd runs here, so what systemd reads back is checked on lab hosts (test_lab_modules.py); here the file
itself, check mode, --diff, idempotence and refusals under the oldest and newest target Pythons.
"""

import os
import stat


def test_write_check_diff_idempotent(ansible_module, interpreter, tmp_path):
    sd = tmp_path / "systemd"
    path = sd / "ollama.service.d" / "zz-keepwarm.conf"
    args = {
        "systemd_dir": str(sd),
        "keep_alive": -1,
        "max_loaded_models": 2,
        "environment": {"OLLAMA_NUM_PARALLEL": 1, "OLLAMA_MODELS": 'a "b" 5% c\\d e'},
    }
    check = ansible_module("ollama_override", args, interpreter=interpreter, check=True, diff=True)
    assert not check.failed, check
    assert check.changed and not path.exists()
    assert "+++ after: %s" % path in check.stdout
    assert '+Environment="OLLAMA_MODELS=a \\"b\\" 5%% c\\\\d e"' in check.stdout

    first = ansible_module("ollama_override", args, interpreter=interpreter, diff=True)
    assert first.changed, first
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert first.result["environment"] == {
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_MAX_LOADED_MODELS": "2",
        "OLLAMA_NUM_PARALLEL": "1",
        "OLLAMA_MODELS": 'a "b" 5% c\\d e',
    }
    content = path.read_text()
    assert content == first.result["content"]

    second = ansible_module("ollama_override", args, interpreter=interpreter, diff=True)
    assert not second.failed and not second.changed, second
    assert "+++ after" not in second.stdout

    gone = ansible_module("ollama_override", {"systemd_dir": str(sd), "state": "absent"}, interpreter=interpreter)
    assert gone.changed and not path.exists()


def test_refusals_write_nothing(ansible_module, interpreter, tmp_path):
    sd = tmp_path / "systemd"
    for args, reason in [
        ({"keep_alive": "1d"}, "no day or week unit"),
        ({"keep_alive": "forever"}, "'forever' refused"),
        ({"max_loaded_models": -1}, "OLLAMA_MAX_LOADED_MODELS=-1 refused"),
        ({"environment": {"OLLAMA_MODELS": "x\ny"}}, "control character"),
    ]:
        run = ansible_module("ollama_override", dict(args, systemd_dir=str(sd)), interpreter=interpreter)
        assert run.failed and reason in run.result.get("msg", ""), run
    assert not os.path.exists(sd)


def test_unknown_name_and_conflict_warnings(ansible_module, interpreter, tmp_path):
    sd = tmp_path / "systemd"
    (sd / "ollama.service.d").mkdir(parents=True)
    (sd / "ollama.service.d" / "override.conf").write_text("[Service]\nEnvironment=OLLAMA_KEEP_ALIVE=10m\n")
    run = ansible_module(
        "ollama_override",
        {"systemd_dir": str(sd), "keep_alive": "-1m", "environment": {"OLLAMA_KEEPALIVE": "5m"}},
        interpreter=interpreter,
    )
    assert run.changed, run
    # module warnings reach the controller's display (stderr), not the tree result
    assert "did you mean OLLAMA_KEEP_ALIVE?" in run.stderr + run.stdout, run
    assert run.result["conflicts"] == [
        {
            "variable": "OLLAMA_KEEP_ALIVE",
            "path": str(sd / "ollama.service.d" / "override.conf"),
            "line": 2,
            "value": "10m",
            "wins": False,
        }
    ]
