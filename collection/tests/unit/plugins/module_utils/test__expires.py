"""expires_at parsing and the one forever/timed/stopping classification, checked against tests/data/ps_samples.json."""

import pytest
from ansible_collections.keepwarm.ollama.plugins.module_utils._expires import (
    ZERO_TIME_NS,
    ExpiresAtError,
    classify,
    parse_expires_at,
)

NOW_NS = parse_expires_at("2026-08-15T12:00:00Z")


def test_sample_now_is_what_the_table_says(samples):
    assert parse_expires_at(samples["now"]) == NOW_NS
    assert NOW_NS == 1786795200 * 10**9


def test_every_sample_row(samples):
    assert len(samples["samples"]) >= 15
    for row in samples["samples"]:
        got = classify(row["expires_at"], NOW_NS)
        assert got["state"] == row["state"], row
        if row["seconds_left"] is None:
            assert got["seconds_left"] is None, row
        else:
            assert got["seconds_left"] == pytest.approx(row["seconds_left"], abs=1e-9), row


def test_every_invalid_sample_is_refused(samples):
    for text in samples["invalid"]:
        with pytest.raises(ExpiresAtError):
            parse_expires_at(text)


def test_offsets_name_the_same_instant():
    a = parse_expires_at("2318-11-10T23:47:16.854775807Z")
    assert parse_expires_at("2318-11-10T16:47:16.854775807-07:00") == a
    assert parse_expires_at("2318-11-11T05:17:16.854775807+05:30") == a


def test_nanoseconds_are_kept_exactly():
    assert parse_expires_at("2026-08-15T12:00:00.000000001Z") - NOW_NS == 1
    assert parse_expires_at("2026-08-15T12:00:00.1Z") - NOW_NS == 100000000


def test_zero_time_is_forever():
    assert parse_expires_at("0001-01-01T00:00:00Z") == ZERO_TIME_NS
    assert classify("0001-01-01T00:00:00Z", NOW_NS)["state"] == "forever"


def test_threshold_is_humantime_rule():
    """format/time.go humanTime: Forever when int(hours)/24/365 < -20 (Go integer division), i.e. 183,960 h ahead."""
    hour = 3600 * 10**9
    assert classify("2026-08-15T12:00:00Z", NOW_NS - 183960 * hour + 1)["state"] == "timed"
    assert classify("2026-08-15T12:00:00Z", NOW_NS - 183960 * hour)["state"] == "forever"
    # the old keepwarm rule (more than 7300 days) called 7301 days forever; ollama ps prints "20 years from now"
    assert classify("2026-08-15T12:00:00Z", NOW_NS - 7301 * 24 * hour)["state"] == "timed"


@pytest.mark.parametrize("value", [None, 5, "2026-02-30T00:00:00Z", "2026-08-15T24:00:00Z", "2026-08-15T12:60:00Z"])
def test_more_invalid(value):
    with pytest.raises(ExpiresAtError):
        parse_expires_at(value)


def test_epoch_is_float_seconds():
    assert classify("2026-08-15T12:05:00Z", NOW_NS)["epoch"] == 1786795500.0
