"""The heartbeat's metrics through the real pipeline: Debian's prometheus-node-exporter (installed with dpkg on a
lab host, its textfile collector on /var/lib/prometheus/node-exporter as packaged), scraped over HTTP by this test
and by Debian's Prometheus (run on loopback with monitoring/alerts.yml), after a pin (site.yml), an eviction (a
client loads another model into the server's only slot) and the heartbeat's removal (rollback.yml).

Every panel query of monitoring/grafana-dashboard.json is run against that Prometheus and must return series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter default
METRICS_PATH = f"{TEXTFILE_DIR}/keepwarm.prom"
PINNED = "llama3.2:latest"  # the lab inventory's keepwarm_models (lab/fleet.py DEFAULT_MODELS)
INTRUDER = "qwen2.5:7b"  # another model of the emulator's catalog, loaded by a "client"
RESET_HOST = (
    "systemctl disable --now keepwarm-heartbeat.timer keepwarm-heartbeat.service keepwarm-heartbeat-watch.service"
    " >/dev/null 2>&1; rm -rf /etc/systemd/system/ollama.service.d /etc/systemd/system/keepwarm-heartbeat*"
    " /usr/local/lib/keepwarm /etc/keepwarm && systemctl daemon-reload && systemctl restart ollama.service"
)


def wait_for(predicate, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def playbook(lab_hosts, host: str, name: str, *extra: str) -> str:
    # the checkout's collections (ANSIBLE_COLLECTIONS_PATH from tests/conftest.py or the Makefile)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(PLAYBOOK), "-i", str(lab_hosts.inventory), "--limit", host, str(ROOT / "playbooks" / name), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}:9100/metrics", timeout=10) as resp:  # noqa: S310 - lab network
        return resp.read().decode()


def samples(text: str, name: str) -> dict[str, float]:
    """{label set: value} of one metric family in an exposition text."""
    found = {}
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            found[m.group(1) or ""] = float(m.group(2))
    return found


def one(text: str, name: str, labels: str) -> float | None:
    return samples(text, name).get(labels)


def client_generate(lab_hosts, host: str, body: dict) -> None:
    """A client on the host itself: POST /api/generate to the local server (no stream)."""
    script = (
        "import json,sys,urllib.request;"
        "r=urllib.request.Request('http://127.0.0.1:11434/api/generate',data=sys.argv[1].encode(),"
        "headers={'Content-Type':'application/json'});"
        "print(urllib.request.urlopen(r,timeout=300).status)"
    )
    lab_hosts.ssh(host, "python3", "-c", script, json.dumps({**body, "stream": False}), timeout=320)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Debian's prometheus binary on loopback, scraping the lab host's node_exporter every second."""

    def __init__(self, binary: Path, work: Path, target: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shutil.copyfile(ROOT / "monitoring" / "alerts.yml", work / "alerts.yml")
        (work / "prometheus.yml").write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": ["alerts.yml"],
                    "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        self.log = open(work / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(binary), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}"]
            + [f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            cwd=work,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str):
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard target, with Grafana's variables as a query of the whole range."""
    dash = json.loads((ROOT / "monitoring" / "grafana-dashboard.json").read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$instance", ".*").replace("$__rate_interval", "15s")
            out.append((panel["title"], expr.replace("$__range", "5m")))
    return out


@pytest.fixture(scope="module")
def scenario(lab_hosts, node_exporter_deb, prometheus, tmp_path_factory):
    """Run pin -> eviction -> removal on one lab host; record scrapes and Prometheus answers along the way."""
    host = lab_hosts.hosts[0]
    address = lab_hosts.addresses[host]
    lab_hosts.ssh(host, RESET_HOST)
    with open(node_exporter_deb, "rb") as deb:
        subprocess.run([*lab_hosts.ssh_args(host), "cat > /tmp/node-exporter.deb"], stdin=deb, check=True, timeout=60)
    lab_hosts.ssh(host, "dpkg -i /tmp/node-exporter.deb >/dev/null && rm /tmp/node-exporter.deb", timeout=120)
    record: dict = {"host": host}
    assert wait_for(lambda: _reachable(address), 30), "node_exporter does not answer on :9100"
    record["dir_before"] = lab_hosts.ssh(host, f"stat -c '%U %G %a' {TEXTFILE_DIR}").stdout.split()

    prom = Prometheus(prometheus, tmp_path_factory.mktemp("prometheus"), f"{address}:9100")
    try:
        # 1. pin: site.yml with the heartbeat writing into node_exporter's textfile directory
        try:
            playbook(lab_hosts, host, "site.yml", "-e", f"heartbeat_metrics_path={METRICS_PATH}")
        except AssertionError as exc:
            journal = lab_hosts.ssh(host, "journalctl -u 'keepwarm-heartbeat*' -n 40 --no-pager", check=False).stdout
            raise AssertionError(f"{exc}\n--- the heartbeat's journal:\n{journal}") from None
        record["dir_after"] = lab_hosts.ssh(host, f"stat -c '%U %G %a' {TEXTFILE_DIR}").stdout.split()
        record["unit"] = lab_hosts.ssh(host, "systemctl cat keepwarm-heartbeat-watch.service").stdout

        def pinned():
            text = scrape(address)
            return text if one(text, "keepwarm_model_pinned", f'{{model="{PINNED}"}}') == 1 else None

        record["pinned"] = wait_for(pinned, 60) or scrape(address)
        record["file_owner"] = lab_hosts.ssh(host, f"stat -c '%u %a' {METRICS_PATH}").stdout.split()

        # 2. eviction: the server keeps one model (keepalive_max_loaded_models 1); a client loads another one
        client_generate(lab_hosts, host, {"model": INTRUDER, "prompt": "hello"})

        def repaired():
            text = scrape(address)
            pinned = one(text, "keepwarm_model_pinned", f'{{model="{PINNED}"}}')
            return text if repairs(text) and pinned == 1 else None

        record["evicted"] = wait_for(repaired, 120) or scrape(address)

        # Prometheus has scraped all of it: every dashboard query returns series; the rules loaded
        assert wait_for(lambda: prom.query("keepwarm_model_last_load_seconds"), 60), "Prometheus has no keepwarm data"
        time.sleep(3)  # a few more scrapes for the increase() windows
        record["dashboard"] = {title: prom.query(expr) for title, expr in dashboard_queries()}
        record["rules"] = prom.api("rules")["groups"]

        # 3. removal: rollback.yml removes the heartbeat (without being told the metrics path)
        playbook(lab_hosts, host, "rollback.yml")
        record["removed"] = scrape(address)
        record["file_left"] = lab_hosts.ssh(host, f"ls -A {TEXTFILE_DIR}").stdout.split()
    finally:
        prom.stop()
        lab_hosts.ssh(host, "dpkg --purge prometheus-node-exporter >/dev/null 2>&1; " + RESET_HOST, check=False)
    return record


def repairs(text: str) -> dict[str, float]:
    """PINNED's non-zero keepwarm_repairs_total by reason."""
    found = {}
    for labels, value in samples(text, "keepwarm_repairs_total").items():
        m = re.fullmatch(r'\{model="([^"]*)",reason="([^"]*)"\}', labels)
        if m and m.group(1) == PINNED and value:
            found[m.group(2)] = value
    return found


def _reachable(address: str) -> bool:
    try:
        scrape(address)
    except OSError:
        return False
    return True


def test_pin_is_scraped_from_node_exporter(scenario):
    text = scenario["pinned"]
    label = f'{{model="{PINNED}"}}'
    assert one(text, "keepwarm_model_pinned", label) == 1, text[-3000:]
    assert one(text, "keepwarm_model_loaded", label) == 1
    assert one(text, "keepwarm_model_gpu_ratio", label) == 1
    assert one(text, "keepwarm_model_expiry_timestamp_seconds", label) > time.time() + 200 * 365 * 86400
    assert one(text, "keepwarm_up", "") == 1
    # node_exporter read the file without error
    assert samples(text, "node_textfile_scrape_error") == {"": 0}
    assert f'{{file="{METRICS_PATH}"}}' in samples(text, "node_textfile_mtime_seconds")


def test_sandboxed_agent_writes_through_the_directory_group(scenario):
    owner, group, mode = scenario["dir_before"]
    assert (owner, group, mode) == ("root", "root", "755")  # as Debian's package makes it
    # the agent never gets group root: keepwarm-metrics is created and given the directory, with group write
    assert scenario["dir_after"] == [owner, "keepwarm-metrics", "775"]
    assert "SupplementaryGroups=keepwarm-metrics" in scenario["unit"]
    assert f"ReadWritePaths={TEXTFILE_DIR}" in scenario["unit"]
    assert "DynamicUser=yes" in scenario["unit"] and "PrivateUsers=yes" in scenario["unit"]
    uid, file_mode = scenario["file_owner"]
    assert int(uid) >= 61184 and file_mode == "644"  # written by the dynamic user (systemd's 61184-65519 range)


def test_eviction_is_counted_and_repaired(scenario):
    text = scenario["evicted"]
    label = f'{{model="{PINNED}"}}'
    # The agent says "evicted" when it saw the other model arrive, "unloaded" when that model was still loading
    # (a loading model is absent from /api/ps): either way one repair, one cold load, pinned again.
    keepwarm = "\n".join(line for line in text.splitlines() if line.startswith("keepwarm_"))
    assert sum(repairs(text).values()) == 1, keepwarm
    assert set(repairs(text)) <= {"evicted", "unloaded"}, keepwarm
    assert one(text, "keepwarm_cold_loads_total", label) >= 1
    assert one(text, "keepwarm_model_pinned", label) == 1
    assert one(text, "keepwarm_model_last_load_seconds", label) > 0


def test_every_dashboard_panel_returns_series(scenario):
    empty = [title for title, result in scenario["dashboard"].items() if not result]
    assert not empty, f"panels without data: {empty}"


def test_alert_rules_are_loaded_and_healthy(scenario):
    rules = [r for g in scenario["rules"] for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"KeepwarmModelNotPinned", "KeepwarmHeartbeatFailing"}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_removal_removes_the_metrics(scenario):
    text = scenario["removed"]
    assert not [line for line in text.splitlines() if line.startswith("keepwarm_")], "stale keepwarm metrics"
    assert "keepwarm.prom" not in scenario["file_left"]
    assert not any(name.startswith(".keepwarm.prom") for name in scenario["file_left"])
