"""Ollama's duration rules (envconfig/config.go KeepAlive, api/types.go Duration.UnmarshalJSON) and keepwarm's
strict validators."""

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import (
    FOREVER_NS,
    MINUTE,
    SECOND,
    DurationError,
    format_duration,
    keep_alive_report,
    parse_env_keep_alive,
    parse_go_duration,
    parse_json_keep_alive,
    request_keep_alive,
    validate_env_keep_alive,
)

HOUR = 60 * MINUTE


@pytest.mark.parametrize(
    "text, ns",
    [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("5m", 5 * MINUTE),
        ("+5m", 5 * MINUTE),
        ("-1m", -MINUTE),
        ("1h30m", 90 * MINUTE),
        ("1.5h", 90 * MINUTE),
        ("300ms", 300 * 1000000),
        ("1us", 1000),
        ("1\u00b5s", 1000),
        ("1\u03bcs", 1000),
        ("2h45m30.5s", 2 * HOUR + 45 * MINUTE + 30 * SECOND + SECOND // 2),
        (".5s", SECOND // 2),
        ("5.s", 5 * SECOND),
        ("9223372036854775807ns", FOREVER_NS),
        ("-9223372036854775808ns", -(1 << 63)),
    ],
)
def test_parse_go_duration_accepts(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    "text, error",
    [
        ("", 'time: invalid duration ""'),
        ("-1", 'time: missing unit in duration "-1"'),
        ("10", 'time: missing unit in duration "10"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("5M", 'time: unknown unit "M" in duration "5M"'),
        ("5 m", 'time: unknown unit " m" in duration "5 m"'),
        (" 5m", 'time: invalid duration " 5m"'),
        ("1e3", 'time: unknown unit "e" in duration "1e3"'),
        ("forever", 'time: invalid duration "forever"'),
        (".s", 'time: invalid duration ".s"'),
        ("-", 'time: invalid duration "-"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ],
)
def test_parse_go_duration_refuses_with_go_text(text, error):
    with pytest.raises(DurationError) as exc:
        parse_go_duration(text)
    assert str(exc.value) == error


@pytest.mark.parametrize(
    "raw, ns, ignored",
    [
        (None, 5 * MINUTE, False),
        ("", 5 * MINUTE, False),
        ("0", 0, False),
        ("-0", 0, False),
        ("60", 60 * SECOND, False),
        ("3600", HOUR, False),
        ("-1", FOREVER_NS, False),
        ("-1m", FOREVER_NS, False),
        ("-1s", FOREVER_NS, False),
        ("1h30m", 90 * MINUTE, False),
        ('"-1"', FOREVER_NS, False),  # envconfig.Var trims quotes
        ("  10m ", 10 * MINUTE, False),  # and whitespace
        ("1d", 5 * MINUTE, True),
        ("1w", 5 * MINUTE, True),
        ("???", 5 * MINUTE, True),
        (" ", 5 * MINUTE, True),
        ("forever", 5 * MINUTE, True),
        ("1e3", 5 * MINUTE, True),
    ],
)
def test_env_keep_alive_as_ollama_reads_it(raw, ns, ignored):
    # envconfig/config.go TestKeepAlive rows plus the silent-fallback cases of ollama-behaviour.md §1
    assert parse_env_keep_alive(raw) == (ns, ignored)


@pytest.mark.parametrize(
    "value, ns",
    [
        (None, None),
        (300, 300 * SECOND),
        (42.5, int(42.5 * SECOND)),
        (0, 0),
        (0.0, 0),
        (-0.0, 0),
        ("0", 0),
        ("0s", 0),
        (-1, FOREVER_NS),
        (-0.5, FOREVER_NS),
        ("-1m", FOREVER_NS),
        ("-1s", FOREVER_NS),
        ("5m", 5 * MINUTE),
        ("1.5h", 90 * MINUTE),
        ("+5m", 5 * MINUTE),
    ],
)
def test_json_keep_alive_accepted(value, ns):
    assert parse_json_keep_alive(value) == ns


@pytest.mark.parametrize(
    "value, error",
    [
        ("-1", 'time: missing unit in duration "-1"'),
        ("10", 'time: missing unit in duration "10"'),
        ("5M", 'time: unknown unit "M" in duration "5M"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("", 'time: invalid duration ""'),
        (" 5m", 'time: invalid duration " 5m"'),
        (True, "Unsupported type: 'bool'"),
        ({}, "Unsupported type: 'dict'"),
        ([], "Unsupported type: 'list'"),
    ],
)
def test_json_keep_alive_400_like_upstream(value, error):
    with pytest.raises(DurationError) as exc:
        parse_json_keep_alive(value)
    assert str(exc.value) == error


# The bad-input table of issue 4 for OLLAMA_KEEP_ALIVE written by ollama_override.
@pytest.mark.parametrize(
    "value, written",
    [(-1, "-1"), ("-1m", "-1m"), ("-1", "-1"), (0, "0"), ("10", "10"), ("1h30m", "1h30m"), ("1.5h", "1.5h")],
)
def test_env_validator_accepts(value, written):
    assert validate_env_keep_alive(value) == written
    ns, ignored = parse_env_keep_alive(written)
    assert not ignored


@pytest.mark.parametrize(
    "value, reason",
    [
        ("forever", "neither a Go duration"),
        ("1d", "no day or week unit"),
        ("5 m", "whitespace"),
        ("", "empty value"),
        ("1e3", "exponent notation"),
        (True, "boolean"),
        (False, "boolean"),
        (1.5, "fractional number"),
        (" 5m", "surrounding whitespace"),
        ('"-1"', "quotes"),
    ],
)
def test_env_validator_refuses_with_value_and_reason(value, reason):
    with pytest.raises(DurationError) as exc:
        validate_env_keep_alive(value)
    msg = str(exc.value)
    assert "OLLAMA_KEEP_ALIVE=%r" % (value,) in msg
    assert reason in msg


@pytest.mark.parametrize(
    "value, sent",
    [(-1, -1), ("-1", -1), ("300", 300), (300, 300), (42.5, 42.5), ("-1m", "-1m"), ("24h", "24h"), ("0", 0)],
)
def test_request_keep_alive_never_sends_integer_strings(value, sent):
    out = request_keep_alive(value)
    assert out == sent and type(out) is type(sent)
    parse_json_keep_alive(out)  # the API accepts what we send


@pytest.mark.parametrize("value", ["forever", "1d", "5 m", "", "1e3", True, None, [1]])
def test_request_keep_alive_refuses(value):
    with pytest.raises(DurationError) as exc:
        request_keep_alive(value)
    assert repr(value) in str(exc.value)


@pytest.mark.parametrize(
    "ns, text",
    [(0, "0s"), (5 * MINUTE, "5m"), (90 * MINUTE, "1h30m"), (1500 * 1000000, "1.5s"), (FOREVER_NS, "forever")],
)
def test_format_duration(ns, text):
    assert format_duration(ns) == text


def test_keep_alive_report_one_day_is_five_minutes_ignored():
    report = keep_alive_report("1d")
    assert report["effective"] == "5m" and report["ignored"] and not report["forever"]
    assert "'1d'" in report["message"] and "ignored" in report["message"]
    assert report["seconds"] == 300.0


def test_keep_alive_report_forever_and_unset():
    assert keep_alive_report("-1")["forever"] is True
    assert keep_alive_report("-1")["seconds"] is None
    unset = keep_alive_report(None)
    assert unset["effective"] == "5m" and not unset["ignored"] and "not set" in unset["message"]
