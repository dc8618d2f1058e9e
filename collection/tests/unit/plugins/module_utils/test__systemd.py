"""Drop-in rendering with systemd quoting, unit-file replay (conflicts) and systemctl show parsing."""

import os

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._systemd import (
    UnitValueError,
    closest_known,
    find_conflicts,
    parse_environment_value,
    parse_proc_environ,
    parse_show,
    parse_show_environment,
    parse_unit_text,
    render_dropin,
    render_environment_line,
    unit_sources,
    unknown_variable_warning,
    validate_variable,
)

ROUND_TRIP = [
    "plain",
    'say "hi"',
    "100%",
    "%n %h %%",
    "C:\\path\\to",
    "ends with backslash\\",
    "two  spaces and trailing ",
    " leading space",
    "it's",
    "$HOME and `cmd`",
    "a=b=c",
    "semicolon; # not a comment",
    "unicode: caf\u00e9 \u2713",
    "",
]


@pytest.mark.parametrize("value", ROUND_TRIP)
def test_render_round_trips_through_systemd_parsing(value):
    text = render_dropin([("OLLAMA_MODELS", validate_variable("OLLAMA_MODELS", value))])
    entries = parse_unit_text(text)
    assert [(s, k) for s, k, _v, _l in entries] == [("Service", "Environment")]
    assert parse_environment_value(entries[0][2]) == [("OLLAMA_MODELS", value)]


def test_escaping_is_exact():
    assert render_environment_line("X", 'a"b\\c%d') == 'Environment="X=a\\"b\\\\c%%d"'


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "tab\there", "nul\x00", "bell\x07", "del\x7f", "end\n"])
def test_control_characters_are_refused(value):
    with pytest.raises(UnitValueError) as exc:
        validate_variable("OLLAMA_MODELS", value)
    assert "control character" in str(exc.value)
    assert repr(value) in str(exc.value)


def test_newline_injection_cannot_reach_the_file():
    with pytest.raises(UnitValueError):
        render_environment_line("X", "1\nExecStartPre=/bin/rm -rf /")


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B", "A\nB", None])
def test_bad_names(name):
    with pytest.raises(UnitValueError):
        validate_variable(name, "x")


@pytest.mark.parametrize(
    "name, value, ok",
    [
        ("OLLAMA_MAX_LOADED_MODELS", 2, "2"),
        ("OLLAMA_MAX_LOADED_MODELS", "0", "0"),
        ("OLLAMA_MAX_LOADED_MODELS", -1, None),
        ("OLLAMA_MAX_LOADED_MODELS", "-1", None),
        ("OLLAMA_MAX_LOADED_MODELS", "one", None),
        ("OLLAMA_MAX_LOADED_MODELS", "0x10", None),
        ("OLLAMA_MAX_LOADED_MODELS", True, None),
        ("OLLAMA_NUM_PARALLEL", 1, "1"),
        ("OLLAMA_SCHED_SPREAD", True, "true"),
        ("OLLAMA_SCHED_SPREAD", "false", "false"),
        ("OLLAMA_SCHED_SPREAD", "no", None),
        ("OLLAMA_FLASH_ATTENTION", "off", None),
        ("OLLAMA_ORIGINS", "http://a.example,https://b.example", "http://a.example,https://b.example"),
        ("OLLAMA_ORIGINS", "*", "*"),
        ("OLLAMA_ORIGINS", "http://a, http://b", None),
        ("OLLAMA_ORIGINS", "a.example", None),
        ("OLLAMA_LOAD_TIMEOUT", "10m", "10m"),
        ("OLLAMA_LOAD_TIMEOUT", "1d", None),
        ("OLLAMA_KEEP_ALIVE", "1d", None),
        ("OLLAMA_HOST", "0.0.0.0:11434", "0.0.0.0:11434"),
        ("HTTPS_PROXY", "http://proxy:3128", "http://proxy:3128"),
    ],
)
def test_validate_known_variables(name, value, ok):
    if ok is None:
        with pytest.raises(UnitValueError) as exc:
            validate_variable(name, value)
        assert name in str(exc.value)
    else:
        assert validate_variable(name, value) == ok


def test_unknown_name_warns_with_the_closest_known():
    assert closest_known("OLLAMA_KEEPALIVE") == "OLLAMA_KEEP_ALIVE"
    warning = unknown_variable_warning("OLLAMA_KEEPALIVE")
    assert "OLLAMA_KEEPALIVE" in warning and "did you mean OLLAMA_KEEP_ALIVE?" in warning
    assert "did you mean OLLAMA_MAX_LOADED_MODELS" in unknown_variable_warning("OLLAMA_MAX_LOADED_MODEL")
    assert unknown_variable_warning("OLLAMA_NUM_PARALLEL") is None
    assert unknown_variable_warning("CUDA_VISIBLE_DEVICES") is None


@pytest.mark.parametrize(
    "value, parsed",
    [
        ('"A=1" B=2', [("A", "1"), ("B", "2")]),
        ("A=1 B=2", [("A", "1"), ("B", "2")]),
        ('A="x y" B=z', [("A", "x y"), ("B", "z")]),
        ("'A=x y'", [("A", "x y")]),
        ('"A=a\\nb"', [("A", "a\nb")]),
        ('"A=\\x41"', [("A", "A")]),
        ("A=50%%", [("A", "50%")]),
        ("NOEQUALS A=1", [("A", "1")]),
    ],
)
def test_parse_environment_value(value, parsed):
    assert parse_environment_value(value) == parsed


def test_parse_unit_text_sections_comments_continuations():
    text = "[Unit]\nDescription=x\n# c\n; c\n[Service]\nEnvironment=A=1 \\\n  B=2\nUser=ollama\n"
    assert parse_unit_text(text) == [
        ("Unit", "Description", "x", 2),
        ("Service", "Environment", "A=1  B=2", 6),
        ("Service", "User", "ollama", 8),
    ]


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_conflicts_and_who_wins(tmp_path):
    d = str(tmp_path)
    _write(os.path.join(d, "ollama.service"), '[Service]\nEnvironment="OLLAMA_KEEP_ALIVE=1m" "PATH=/bin"\n')
    _write(os.path.join(d, "ollama.service.d", "override.conf"), "[Service]\nEnvironment=OLLAMA_KEEP_ALIVE=10m\n")
    _write(os.path.join(d, "ollama.service.d", "zzz-late.conf"), "[Service]\nEnvironment=OLLAMA_MAX_LOADED_MODELS=9\n")
    _write(os.path.join(d, "ollama.service.d", "ignored.txt"), "[Service]\nEnvironment=OLLAMA_KEEP_ALIVE=3m\n")
    own = os.path.join(d, "ollama.service.d", "zz-keepwarm.conf")
    own_text = render_dropin([("OLLAMA_KEEP_ALIVE", "-1"), ("OLLAMA_MAX_LOADED_MODELS", "2")])
    sources = unit_sources("ollama.service", d)
    assert [os.path.basename(s) for s in sources] == ["ollama.service", "override.conf", "zzz-late.conf"]
    conflicts = find_conflicts(own, {"OLLAMA_KEEP_ALIVE", "OLLAMA_MAX_LOADED_MODELS"}, sources, own_text)
    got = sorted((os.path.basename(c["path"]), c["variable"], c["value"], c["wins"]) for c in conflicts)
    assert got == [
        ("ollama.service", "OLLAMA_KEEP_ALIVE", "1m", False),
        ("override.conf", "OLLAMA_KEEP_ALIVE", "10m", False),
        ("zzz-late.conf", "OLLAMA_MAX_LOADED_MODELS", "9", True),
    ]


def test_reset_and_environment_file_win(tmp_path):
    d = str(tmp_path)
    envfile = os.path.join(d, "ollama.env")
    _write(envfile, "# comment\nOLLAMA_NUM_PARALLEL=4\n")
    _write(os.path.join(d, "ollama.service"), "[Service]\nEnvironmentFile=-%s\n" % envfile)
    _write(os.path.join(d, "ollama.service.d", "zzz-reset.conf"), "[Service]\nEnvironment=\n")
    own = os.path.join(d, "ollama.service.d", "zz-keepwarm.conf")
    own_text = render_dropin([("OLLAMA_KEEP_ALIVE", "-1"), ("OLLAMA_NUM_PARALLEL", "1")])
    conflicts = find_conflicts(
        own, {"OLLAMA_KEEP_ALIVE", "OLLAMA_NUM_PARALLEL"}, unit_sources("ollama.service", d), own_text
    )
    by_var = {(c["variable"], os.path.basename(c["path"])): c["wins"] for c in conflicts}
    assert by_var[("OLLAMA_NUM_PARALLEL", "ollama.env")] is True
    assert by_var[("OLLAMA_KEEP_ALIVE", "zzz-reset.conf")] is True


# Shape of `systemctl show -p ... ollama.service` on systemd 252 (Debian 12).
SHOW = (
    "LoadState=loaded\n"
    "ActiveState=active\n"
    "MainPID=4242\n"
    "DropInPaths=/etc/systemd/system/ollama.service.d/override.conf "
    "/etc/systemd/system/ollama.service.d/zz-keepwarm.conf\n"
    'Environment=PATH=/usr/bin:/bin OLLAMA_KEEP_ALIVE=-1 "OLLAMA_MODELS=/srv/my models" '
    '"OLLAMA_X=say \\"hi\\" 100% C:\\\\dir \\$HOME"\n'
    "NeedDaemonReload=no\n"
)


def test_parse_show_and_environment():
    show = parse_show(SHOW)
    assert show["MainPID"] == "4242" and show["NeedDaemonReload"] == "no"
    env = dict(parse_show_environment(show["Environment"]))
    assert env == {
        "PATH": "/usr/bin:/bin",
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_MODELS": "/srv/my models",
        "OLLAMA_X": 'say "hi" 100% C:\\dir $HOME',
    }


def test_parse_proc_environ():
    assert parse_proc_environ(b"A=1\0OLLAMA_KEEP_ALIVE=-1\0B=x=y\0") == {
        "A": "1",
        "OLLAMA_KEEP_ALIVE": "-1",
        "B": "x=y",
    }
