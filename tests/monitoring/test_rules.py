"""monitoring/: the alerting rules pass `promtool check rules` and their unit tests (`promtool test rules`), a rule
changed so it no longer matches its test fails them, the agent's textfile passes `promtool check metrics` (names,
units, types), and the dashboard is an importable Grafana JSON whose every panel queries Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from heartbeat_agent._metrics import render_metrics
from heartbeat_agent._state import State

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
ALERTS = (
    "KeepwarmModelNotPinned",
    "KeepwarmPinnedModelPartlyOnCPU",
    "KeepwarmHeartbeatFailing",
    "KeepwarmHeartbeatStale",
    "KeepwarmRepairsHigh",
)


def promtool_run(promtool, *args, cwd=MONITORING, stdin=None):
    return subprocess.run([str(promtool), *args], cwd=cwd, input=stdin, capture_output=True, text=True, check=False)


def test_check_rules(promtool):
    proc = promtool_run(promtool, "check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_rule_unit_tests_pass(promtool):
    proc = promtool_run(promtool, "test", "rules", "alerts.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_unit_test():
    rules = (MONITORING / "alerts.yml").read_text()
    tests = (MONITORING / "alerts.test.yml").read_text()
    assert set(re.findall(r"^\s+- alert: (\w+)$", rules, re.M)) == set(ALERTS)
    for alert in ALERTS:
        assert f"alertname: {alert}\n" in tests


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("expr: keepwarm_model_pinned == 0", "expr: keepwarm_model_pinned == 1"),
        ("keepwarm_model_gpu_ratio < 1 and", "keepwarm_model_gpu_ratio < 0.4 and"),
        ("[1h])) > 6", "[1h])) > 20"),
        ('node_textfile_mtime_seconds{file=~".*keepwarm.*[.]prom"} > 300', "node_textfile_mtime_seconds > 900"),
    ],
)
def test_unit_tests_catch_a_changed_rule(promtool, tmp_path, old, new):
    """The unit tests are real: the same tests on a rule changed to miss its case fail."""
    rules = (MONITORING / "alerts.yml").read_text()
    assert rules.count(old) == 1, old
    (tmp_path / "alerts.yml").write_text(rules.replace(old, new))
    shutil.copyfile(MONITORING / "alerts.test.yml", tmp_path / "alerts.test.yml")
    proc = promtool_run(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout


def sample_textfile() -> str:
    state = State(None)
    state.model("llama3.2:latest")["cold_loads"] = 2
    state.model("llama3.2:latest")["repairs"]["evicted"] = 1
    state.model("llama3.2:latest")["last_load_seconds"] = 3.5
    state.last_success = 1764500000.25
    observations = [
        {"model": "llama3.2:latest", "loaded": True, "pinned": True, "expires_at_seconds": 10973999999.5, "gpu": 1.0},
        {"model": "qwen2.5:7b", "loaded": False, "pinned": False, "expires_at_seconds": None, "gpu": 0.0},
    ]
    return render_metrics(observations, state, up=True, exit_code=1)


def test_agent_textfile_passes_promtool_check_metrics(promtool):
    text = sample_textfile()
    proc = promtool_run(promtool, "check", "metrics", stdin=text)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr
    assert 'keepwarm_model_expiry_timestamp_seconds{model="llama3.2:latest"} 10973999999.5' in text
    assert 'keepwarm_model_gpu_ratio{model="llama3.2:latest"} 1' in text
    # not loaded: no expiry timestamp (a 0 would read as "expired in 1970")
    assert 'keepwarm_model_expiry_timestamp_seconds{model="qwen2.5:7b"}' not in text
    assert "_fraction" not in text and "keepwarm_model_expiry_seconds" not in text


def test_promtool_check_metrics_flags_bad_names(promtool):
    """The check above can fail: promtool flags a counter without _total."""
    bad = "# HELP keepwarm_cold_loads Loads.\n# TYPE keepwarm_cold_loads counter\nkeepwarm_cold_loads 1\n"
    proc = promtool_run(promtool, "check", "metrics", stdin=bad)
    assert proc.returncode != 0 and "_total" in proc.stdout + proc.stderr


def dashboard():
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def test_dashboard_is_importable_and_every_panel_queries_prometheus():
    dash = dashboard()
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    assert dash["uid"] == "keepwarm-fleet" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    variable = dash["templating"]["list"][0]
    assert variable["name"] == "instance" and "keepwarm_up" in variable["definition"]
