"""The agent's expires_at classification against every row of the shared table tests/data/ps_samples.json."""

from __future__ import annotations

import json

import pytest

from heartbeat_agent import classify, parse_expires_at
from heartbeat_agent._beat import is_pinned
from heartbeat_agent._config import load_config
from tests.conftest import DATA

TABLE = json.loads((DATA / "ps_samples.json").read_text())
NOW_NS = parse_expires_at(TABLE["now"])


@pytest.mark.parametrize("row", TABLE["samples"], ids=[r["expires_at"] for r in TABLE["samples"]])
def test_sample_classification(row):
    exp = classify(row["expires_at"], NOW_NS)
    assert exp.state == row["state"], row["note"]
    if row["seconds_left"] is None:
        assert exp.seconds_left is None
    else:
        assert exp.seconds_left == pytest.approx(row["seconds_left"], abs=1e-9)


def test_table_covers_every_state(ps_samples):
    assert {row["state"] for row in ps_samples} == {"forever", "timed", "stopping"}


@pytest.mark.parametrize("text", TABLE["invalid"])
def test_invalid_strings_are_refused(text):
    with pytest.raises(ValueError, match="expires_at"):
        classify(text, NOW_NS)


@pytest.mark.parametrize("value", [None, 0, 1.5, ["2318-11-10T23:47:16Z"]])
def test_non_strings_are_refused(value):
    with pytest.raises(ValueError, match="not a string"):
        parse_expires_at(value)


def test_offsets_name_the_same_instant():
    utc = parse_expires_at("2318-11-10T23:47:16.854775807Z")
    assert parse_expires_at("2318-11-10T16:47:16.854775807-07:00") == utc
    assert parse_expires_at("2318-11-11T05:17:16.854775807+05:30") == utc


def test_forever_boundary_is_humantime():
    # format/time.go humanTime: int(hours)/24/365 < -20, i.e. at least 21 x 365 days (183,960 h) ahead.
    day_ns = 86400 * 10**9
    assert classify("2026-08-15T12:00:00Z", NOW_NS - 7665 * day_ns + 1).state == "timed"
    assert classify("2026-08-15T12:00:00Z", NOW_NS - 7665 * day_ns).state == "forever"


@pytest.mark.parametrize("index", range(len(TABLE["responses"])))
def test_full_ps_bodies(index):
    """Whole /api/ps bodies: pinned models count as pinned for the default keep_alive -1, the rest do not."""
    body = TABLE["responses"][index]["body"]
    config = load_config(None, {"models": ["llama3.2"]})
    for entry in body["models"]:
        exp = classify(entry["expires_at"], NOW_NS)
        assert is_pinned(exp, config) == (exp.state == "forever")
    if index == 1:
        states = [classify(m["expires_at"], NOW_NS).state for m in body["models"]]
        assert states == ["forever", "timed"]
