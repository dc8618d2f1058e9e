"""`ollama ps` / `list` / `stop` / `--version` (§4 cmd/cmd.go ListRunningHandler; format/time.go humanTime,
HumanDuration; format/bytes.go HumanBytes). Helpers are unit-tested by importing the file; the commands run for
real as subprocesses against a real server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab.emulator import cli, gotime

from .conftest import EMULATOR_CMD, FAST, MAX_INT64, NS, call

S, M, H, D = NS, 60 * NS, 3600 * NS, 86400 * NS

HUMAN_DURATION = [
    (NS // 2, "Less than a second"),
    (1 * S, "1 second"),
    (59 * S, "59 seconds"),
    (60 * S, "About a minute"),
    (119 * S, "About a minute"),
    (299 * S + NS // 2, "4 minutes"),
    (300 * S, "5 minutes"),
    (59 * M, "59 minutes"),
    (60 * M, "About an hour"),
    (89 * M, "About an hour"),
    (90 * M, "2 hours"),
    (24 * H, "24 hours"),
    (47 * H, "47 hours"),
    (48 * H, "2 days"),
    (13 * D, "13 days"),
    (14 * D, "2 weeks"),
    (59 * D, "8 weeks"),
    (60 * D, "2 months"),
    (729 * D, "24 months"),
    (730 * D, "2 years"),
]


@pytest.mark.parametrize(("ns", "text"), HUMAN_DURATION, ids=[t for _, t in HUMAN_DURATION])
def test_human_duration(ns, text):
    """§4 format/time.go HumanDuration (int truncation, hours rounded half away from zero)."""
    assert cli.human_duration(ns) == text


HUMAN_BYTES = [
    (0, "0 B"),
    (999, "999 B"),
    (1000, "1 KB"),
    (1500, "1.5 KB"),
    (274302450, "274 MB"),
    (2019393189, "2.0 GB"),
    (5100000000, "5.1 GB"),
    (9950000000, "9.9 GB"),
    (42520413916, "42 GB"),
    (10**12, "1 TB"),
]


@pytest.mark.parametrize(("b", "text"), HUMAN_BYTES, ids=[t for _, t in HUMAN_BYTES])
def test_human_bytes(b, text):
    """§4 format/bytes.go HumanBytes: decimal units; >= 10 integer, non-integer below 10 one decimal."""
    assert cli.human_bytes(b) == text


PROCESSOR = [
    (100, 0, "100% CPU", "size_vram==0 first"),
    (0, 0, "100% CPU", "size_vram==0 first even when size is 0"),
    (100, 100, "100% GPU", "size_vram==size"),
    (100, 150, "Unknown", "size_vram > size"),
    (0, 5, "Unknown", "size == 0"),
    (100, 52, "48%/52% CPU/GPU", "split"),
    (200, 199, "1%/99% CPU/GPU", "math.Round(0.5) rounds away from zero"),
]


@pytest.mark.parametrize(("size", "vram", "text", "rule"), PROCESSOR, ids=[r[3] for r in PROCESSOR])
def test_processor_column(size, vram, text, rule):
    """§4 PROCESSOR rules, checked in order."""
    assert cli.processor_text(size, vram) == text, rule


NOW = "2026-08-15T12:00:00Z"
UNTIL = [
    ("2026-08-15T11:59:59Z", "Stopping...", "past -> Stopping... (v0.3.11+)"),
    ("0001-01-01T00:00:00Z", "Stopping...", "zero time is in the past"),
    ("2318-11-10T23:47:16.854775807Z", "Forever", "now + MaxInt64"),
    ("2318-11-10T16:47:16.854775807-07:00", "Forever", "local offset"),
    ("2047-08-16T12:00:00Z", "Forever", "21 years + 1 day ahead"),
    ("2046-08-14T12:00:00Z", "20 years from now", "20 years 364 days: int(hours)/24/365 == -20"),
    ("2026-08-15T12:04:59.9Z", "4 minutes from now", "the default 5m a moment after the request"),
    ("2026-08-16T12:00:00Z", "24 hours from now", "24h"),
]


@pytest.mark.parametrize(("expires", "text", "rule"), UNTIL, ids=[r[2] for r in UNTIL])
def test_until_column(expires, text, rule):
    """§4 UNTIL rules, checked in order."""
    assert cli.until_text(expires, gotime.parse_go_time(NOW)) == text, rule


def test_ps_table_layout():
    """§4 columns NAME ID SIZE PROCESSOR CONTEXT UNTIL; ID is digest[:12]; an argument filters by name prefix."""
    now = gotime.parse_go_time(NOW)
    models = [
        {"name": "llama3.2:latest", "digest": "a80c4f17acd5" + "0" * 52, "size": 2789155237,
         "size_vram": 2789155237, "context_length": 4096, "expires_at": gotime.go_time(now + MAX_INT64)},
        {"name": "qwen2.5:7b", "digest": "845dbda0ea48" + "0" * 52, "size": 10**10, "size_vram": 5 * 10**9,
         "context_length": 8192, "expires_at": "2026-08-15T12:04:59.9Z"},
    ]  # fmt: skip
    assert cli.ps_table(models, now).splitlines() == [
        "NAME               ID              SIZE      PROCESSOR          CONTEXT    UNTIL",
        "llama3.2:latest    a80c4f17acd5    2.8 GB    100% GPU           4096       Forever",
        "qwen2.5:7b         845dbda0ea48    10 GB     50%/50% CPU/GPU    8192       4 minutes from now",
    ]
    assert len(cli.ps_table(models, now, prefix="qwen").splitlines()) == 2


def run_cli(emu, *args, env_extra=None):
    return subprocess.run(
        [sys.executable, *EMULATOR_CMD, *args],
        env=dict(emu.env, **(env_extra or {})),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_ollama_ps_shows_forever(emulator_factory):
    """Done-when: `ollama serve` with OLLAMA_KEEP_ALIVE=-1 OLLAMA_MAX_LOADED_MODELS=1, then `ollama ps` after a
    load shows UNTIL `Forever`, exactly as the real binary would."""
    emu = emulator_factory(OLLAMA_KEEP_ALIVE="-1", OLLAMA_MAX_LOADED_MODELS="1", OLLAMA_EMULATOR_TIME_SCALE="60")
    r = run_cli(emu, "run", "llama3.2", "")  # `ollama run m ""` preloads (docs/faq.mdx)
    assert r.returncode == 0, r.stderr
    out = run_cli(emu, "ps")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "NAME               ID              SIZE      PROCESSOR    CONTEXT    UNTIL",
        "llama3.2:latest    a80c4f17acd5    2.8 GB    100% GPU     4096       Forever",
    ]
    # MAX_LOADED_MODELS=1: loading another model evicts the pinned one
    call(emu, "POST", "/api/generate", {"model": "qwen2.5:7b"})
    rows = run_cli(emu, "ps").stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith("qwen2.5:7b") and rows[0].endswith("Forever")


def test_cli_ps_timed_list_stop_version(emulator_factory):
    """`ollama ps` with the default 5m, `list`, `stop` (and its 404 message), `--version`."""
    emu = emulator_factory(**FAST)
    call(emu, "POST", "/api/generate", {"model": "llama3.2"})
    row = run_cli(emu, "ps", "llama").stdout.splitlines()[1]
    assert row.endswith("4 minutes from now")
    listing = run_cli(emu, "list").stdout.splitlines()
    assert listing[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert any(line.startswith("llama3.2:latest ") and line.endswith("ago") for line in listing)
    r = run_cli(emu, "stop", "llama3.2")
    assert r.returncode == 0 and run_cli(emu, "ps").stdout.splitlines()[1:] == []
    r = run_cli(emu, "stop", "nope")
    assert r.returncode == 1 and r.stderr.strip() == 'Error: couldn\'t find model "nope" to stop'
    v = run_cli(emu, "--version")
    assert v.returncode == 0 and v.stdout.startswith("ollama version is ")
    down = run_cli(emu, "-v", env_extra={"OLLAMA_HOST": "127.0.0.1:9"})
    assert "could not connect to a running Ollama instance" in down.stderr
