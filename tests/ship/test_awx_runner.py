"""Run keepwarm the way AWX runs a job: ansible-runner's Python API on an AWX-shaped private data directory.

    PDD/project/            a fresh copy of the repository's tracked files (its ansible.cfg, its collections/ links
                            included), as AWX copies the project checkout into the job's directory
    PDD/requirements_collections   what the project update's `ansible-galaxy collection install -r
                            collections/requirements.yml` installed (nothing: see test_project_sync.py)
    EE/usr-share-ansible-collections   the execution environment's collections: the built artifact installed
    ANSIBLE_COLLECTIONS_PATH       as AWX 24 builds it (conftest.awx_collections_path)
    PDD/inventory/hosts     the lab's inventory (AWX writes the job's inventory here)
    PDD/env/extravars       the "keepwarm: converge" job template's extra_vars from awx/vars/keepwarm.yml
    PDD/env/settings        runner settings (timeouts), PDD/env/envvars the job's environment

site.yml ("keepwarm: converge") then verify.yml ("keepwarm: verify") run against the lab; the tests read the event
stream and the runner's artifacts (artifacts/<ident>/job_events/*.json, status, rc), where verify.yml's set_stats
fleet table appears as the playbook_on_stats event's artifact_data, as AWX stores it on the job.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import ansible_runner
import pytest
import yaml
from conftest import ROOT, VENV_BIN, ZIPAPP, awx_collections_path, fresh_clone, install_artifact
from test_awx import AnsibleYamlLoader

pytestmark = pytest.mark.lab

# Back to the installer's state (lab/base.py: ollama.service as install.sh writes it, no drop-ins, nothing loaded):
# the lab is shared by the whole test session and earlier tests leave drop-ins, agents and pinned models behind.
RESET_HOST = (
    "systemctl disable --now keepwarm-heartbeat.timer keepwarm-heartbeat.service keepwarm-heartbeat-watch.service"
    " >/dev/null 2>&1; rm -rf /etc/systemd/system/ollama.service.d /etc/systemd/system/keepwarm-heartbeat*"
    " /usr/local/lib/keepwarm /etc/keepwarm && systemctl daemon-reload && systemctl restart ollama.service"
)
FAILED_EVENTS = {"runner_on_failed", "runner_on_unreachable", "runner_item_on_failed", "runner_on_async_failed"}


def converge_extra_vars() -> dict:
    settings = yaml.load((ROOT / "awx" / "vars" / "keepwarm.yml").read_text(), Loader=AnsibleYamlLoader)  # noqa: S506
    return next(t for t in settings["keepwarm_awx_job_templates"] if t["name"] == "keepwarm: converge")["extra_vars"]


@pytest.fixture(scope="module")
def ee_collections(artifact, tmp_path_factory) -> Path:
    """The EE's /usr/share/ansible/collections: the artifact and community.docker, installed with ansible-galaxy."""
    dest = tmp_path_factory.mktemp("ee") / "usr-share-ansible-collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    install_artifact(artifact, dest, cwd=dest.parent, env=env)
    return dest


@pytest.fixture(scope="module")
def private_data_dir(ee_collections, lab_hosts, tmp_path_factory) -> Path:
    for host in lab_hosts.hosts:
        lab_hosts.ssh(host, RESET_HOST)
    pdd = tmp_path_factory.mktemp("awx-job")
    project = fresh_clone(pdd / "project")
    home = pdd / "home"
    home.mkdir()
    # The project update (test_project_sync.py runs its command): collections/requirements.yml installs nothing.
    (pdd / "requirements_collections").mkdir()
    (pdd / "inventory").mkdir()
    shutil.copyfile(lab_hosts.inventory, pdd / "inventory" / "hosts")
    (pdd / "env").mkdir()
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(converge_extra_vars()))
    (pdd / "env" / "settings").write_text(yaml.safe_dump({"idle_timeout": 600, "job_timeout": 1800}))
    envvars = {
        # What AWX sets for a job: no ANSIBLE_CONFIG (ansible reads ./ansible.cfg in the project, the job's working
        # directory; set here only because the runner inherits this process's environment, where the Makefile set
        # it to the repository's), the collections path built from the project's ansible.cfg and the EE's path.
        "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": awx_collections_path(project, pdd, home, ee_collections),
        "ANSIBLE_ROLES_PATH": str(pdd / "requirements_roles"),
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_NOCOLOR": "1",
        "HOME": str(home),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    return pdd


@pytest.fixture(scope="module")
def jobs(private_data_dir):
    """converge, then verify (the workflow "keepwarm: converge then verify"), as two runner jobs."""
    results = {}
    for ident, playbook in (("converge", "playbooks/site.yml"), ("verify", "playbooks/verify.yml")):
        r = ansible_runner.run(private_data_dir=str(private_data_dir), playbook=playbook, ident=ident, quiet=True)
        results[ident] = r
        if r.status != "successful":
            break
    return results


def job_events(private_data_dir: Path, ident: str) -> list[dict]:
    """The events as the runner stored them on disk (artifacts/<ident>/job_events/<counter>-<uuid>.json)."""
    files = sorted(
        (private_data_dir / "artifacts" / ident / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-")[0])
    )
    return [json.loads(p.read_text()) for p in files]


def stdout_tail(private_data_dir: Path, ident: str) -> str:
    return (private_data_dir / "artifacts" / ident / "stdout").read_text()[-6000:]


def require_success(jobs, private_data_dir: Path, ident: str) -> None:
    """Fail with the job's own output when it (or the converge before it) did not succeed."""
    last = list(jobs)[-1]
    assert ident in jobs, f"{last} failed before {ident} ran:\n{stdout_tail(private_data_dir, last)}"
    assert jobs[ident].status == "successful", stdout_tail(private_data_dir, ident)


@pytest.mark.parametrize("ident", ["converge", "verify"])
def test_job_succeeds_without_failed_events(jobs, private_data_dir, lab_hosts, ident):
    require_success(jobs, private_data_dir, ident)
    r = jobs[ident]
    assert (r.status, r.rc) == ("successful", 0), stdout_tail(private_data_dir, ident)
    artifacts = private_data_dir / "artifacts" / ident
    assert (artifacts / "status").read_text() == "successful"
    assert (artifacts / "rc").read_text() == "0"
    events = job_events(private_data_dir, ident)
    assert [e["event"] for e in events if e["event"] in FAILED_EVENTS] == []
    hosts_ok = {e["event_data"]["host"] for e in events if e["event"] == "runner_on_ok"}
    assert hosts_ok == set(lab_hosts.hosts)
    stats = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    assert set(stats["ok"]) == set(lab_hosts.hosts)
    assert stats["failures"] == {} and stats["dark"] == {}
    # The runner ran the project's playbook against the job's inventory, as AWX does.
    command = json.loads((artifacts / "command").read_text())
    assert command["cwd"] == str(private_data_dir / "project")
    assert str(private_data_dir / "inventory") in command["command"]


def test_converge_ran_the_installed_collection(jobs, private_data_dir, lab_hosts, artifact, ee_collections):
    """keepwarm.ollama came from the EE's artifact (every role task's path is there, none in the project's
    collections/ links), and the agent deployed is the zipapp packaged inside it."""
    require_success(jobs, private_data_dir, "converge")
    events = job_events(private_data_dir, "converge")
    roles = {e["event_data"].get("role") for e in events if e["event"] == "runner_on_ok"}
    assert {"keepalive", "heartbeat"} <= roles
    # Every role task but the implicit argument-spec check (its task_path is the play's `roles:` line).
    role_tasks = [
        e["event_data"]
        for e in events
        if e["event"] == "playbook_on_task_start"
        and e["event_data"].get("role")
        and "validate_argument_spec" not in e["event_data"].get("task_action", "")
    ]
    assert role_tasks
    outside = {d["task_path"] for d in role_tasks if not d["task_path"].startswith(str(ee_collections))}
    assert not outside, outside
    with tarfile.open(artifact) as tar:
        packaged = tar.extractfile(f"roles/heartbeat/files/{ZIPAPP}").read()
    digest = hashlib.sha256(packaged).hexdigest()
    for host in lab_hosts.hosts:
        remote = lab_hosts.ssh(host, f"sha256sum /usr/local/lib/keepwarm/{ZIPAPP}").stdout.split()[0]
        assert remote == digest, host
        assert lab_hosts.ssh(host, f"systemctl is-active {heartbeat_unit()}").stdout.strip() == "active"


def heartbeat_unit() -> str:
    """The unit the heartbeat role starts by default (roles/heartbeat/defaults/main.yml heartbeat_mode)."""
    defaults = yaml.safe_load((ROOT / "roles" / "heartbeat" / "defaults" / "main.yml").read_text())
    return "keepwarm-heartbeat.timer" if defaults["heartbeat_mode"] == "timer" else "keepwarm-heartbeat-watch.service"


def inventory_models(inventory: Path) -> set[str]:
    """keepwarm_models from the lab inventory's [ollama_gpu:vars] (a JSON list), as /api/ps names them (a name
    without a tag means :latest: ParseName(...).DisplayShortest(), ollama-behaviour.md on /api/ps)."""
    for line in inventory.read_text().splitlines():
        if line.startswith("keepwarm_models="):
            names = [m if isinstance(m, str) else m["name"] for m in json.loads(line.split("=", 1)[1])]
            return {n if ":" in n else f"{n}:latest" for n in names}
    raise AssertionError(f"no keepwarm_models in {inventory}")


def test_verify_artifacts_hold_the_fleet_table(jobs, private_data_dir, lab_hosts):
    require_success(jobs, private_data_dir, "verify")
    events = job_events(private_data_dir, "verify")
    stats = next(e for e in events if e["event"] == "playbook_on_stats")
    data = stats["event_data"]["artifact_data"]
    assert data["keepwarm_fleet_ok"] is True
    rows = data["keepwarm_fleet"]
    models = inventory_models(lab_hosts.inventory)
    for host in lab_hosts.hosts:
        host_rows = [r for r in rows if r["host"] == host]
        assert host_rows, f"no fleet row for {host}: {rows}"
        assert {r["model"] for r in host_rows} >= models
        for row in host_rows:
            assert row["state"] == "forever", row
            assert row["ok"] is True and row["problems"] == [], row
            # Pinned forever: expires_at about 292 years ahead (ollama-behaviour.md, server/sched.go).
            assert int(row["expires_at"][:4]) > 2200, row
