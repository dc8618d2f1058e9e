"""awx/: the AWX-as-code playbook passes --syntax-check and ansible-lint (production) with the real awx.awx
collection, every task's options are options the awx.awx module documents, and the surveys are valid AWX survey
specs that match what the playbooks read."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from conftest import ROOT, VENV_BIN, run, tool

AWX = ROOT / "awx"
PLAYBOOK = AWX / "configure.yml"


class AnsibleYamlLoader(yaml.SafeLoader):
    """Safe loading plus Ansible's !unsafe tag (kept as the plain string)."""


AnsibleYamlLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def awx_env(awx_collections):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(awx_collections)
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def test_syntax_check(awx_collections):
    proc = run(
        [tool("ansible-playbook"), "-i", "localhost,", "--syntax-check", str(PLAYBOOK)],
        cwd=ROOT,
        env=awx_env(awx_collections),
    )
    assert "playbook: " in proc.stdout


def test_syntax_check_needs_awx_collection(tmp_path):
    """The check above is real: without awx.awx the same playbook does not parse."""
    env = awx_env(tmp_path)
    proc = subprocess.run(
        [tool("ansible-playbook"), "-i", "localhost,", "--syntax-check", str(PLAYBOOK)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "awx.awx" in proc.stdout + proc.stderr


def test_ansible_lint_production(awx_collections):
    # --offline: ansible-lint must not try to install collections/requirements.yml (no Galaxy here, and the
    # artifact it names exists only after `make collection`).
    proc = run(
        [tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor", "awx/"],
        cwd=ROOT,
        env=awx_env(awx_collections),
    )
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def load_tasks():
    play = yaml.safe_load(PLAYBOOK.read_text())[0]
    return play["tasks"]


def modules_options(awx_collections, modules: set[str]) -> dict[str, dict]:
    proc = run([tool("ansible-doc"), "--json", *sorted(modules)], env=awx_env(awx_collections))
    return {name: doc["doc"]["options"] for name, doc in json.loads(proc.stdout).items()}


def test_every_task_uses_documented_options(awx_collections):
    """ansible-lint's args rule skips templated values; check each key against the module's own documentation."""
    tasks = load_tasks()
    used = {next(k for k in task if k.startswith("awx.awx.")) for task in tasks}
    expected = {"project", "job_template", "workflow_job_template", "inventory", "execution_environment"}
    assert {f"awx.awx.{m}" for m in expected} <= used
    docs = modules_options(awx_collections, used)
    for task in tasks:
        module = next(k for k in task if k.startswith("awx.awx."))
        options = docs[module]
        unknown = set(task[module]) - set(options)
        assert not unknown, f"{task['name']}: {module} has no options {sorted(unknown)}"
        if module == "awx.awx.workflow_job_template":
            node_options = options["workflow_nodes"]["suboptions"]
            for node in task[module]["workflow_nodes"]:
                assert not set(node) - set(node_options), node


def test_job_templates_and_workflow():
    settings = yaml.load((AWX / "vars" / "keepwarm.yml").read_text(), Loader=AnsibleYamlLoader)
    templates = {t["name"]: t for t in settings["keepwarm_awx_job_templates"]}
    assert {name: t["playbook"] for name, t in templates.items()} == {
        "keepwarm: converge": "playbooks/site.yml",
        "keepwarm: verify": "playbooks/verify.yml",
        "keepwarm: pin": "playbooks/pin.yml",
        "keepwarm: rollback": "playbooks/rollback.yml",
    }
    for t in templates.values():
        assert (ROOT / t["playbook"]).is_file(), t["playbook"]
    assert templates["keepwarm: pin"]["survey"] == "pin.json"
    # Converge deploys the agent from the installed collection (roles/heartbeat/files), never builds it in the EE.
    assert templates["keepwarm: converge"]["extra_vars"] == {
        "heartbeat_zipapp_src": "{{ role_path }}/files/ollama-heartbeat.pyz",
        "heartbeat_zipapp_build": False,
    }
    workflow = next(t for t in load_tasks() if "awx.awx.workflow_job_template" in t)["awx.awx.workflow_job_template"]
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    assert nodes["converge"]["unified_job_template"]["name"] == "keepwarm: converge"
    assert nodes["converge"]["related"]["success_nodes"] == [{"identifier": "verify"}]
    assert nodes["verify"]["unified_job_template"]["name"] == "keepwarm: verify"
    assert "related" not in nodes["verify"]


@pytest.mark.parametrize("survey", sorted(p.name for p in (AWX / "surveys").glob("*.json")))
def test_survey_specs_are_valid(survey):
    spec = json.loads((AWX / "surveys" / survey).read_text())
    assert set(spec) == {"name", "description", "spec"}
    variables = []
    for q in spec["spec"]:
        assert {"question_name", "type", "variable", "required"} <= set(q), q
        assert q["type"] in SURVEY_TYPES
        variables.append(q["variable"])
        if q["type"] in ("multiplechoice", "multiselect"):
            assert isinstance(q["choices"], list) and q["choices"]
            defaults = q.get("default", "").split("\n") if q.get("default") else []
            assert set(defaults) <= set(q["choices"]), q
    assert len(variables) == len(set(variables))


def test_pin_survey_matches_pin_playbook():
    """The survey's variables are the ones pin.yml reads, with the values it accepts."""
    spec = {q["variable"]: q for q in json.loads((AWX / "surveys" / "pin.json").read_text())["spec"]}
    pin = (ROOT / "playbooks" / "pin.yml").read_text()
    for variable in spec:
        assert variable in pin
    # AWX passes a multiselect answer as a list: pin.yml loops over pin_models items.
    assert spec["pin_models"]["type"] == "multiselect"
    assert set(spec["pin_state"]["choices"]) == {"pinned", "unloaded"}
    assert "['pinned', 'unloaded']" in pin


def test_second_run_changes_nothing_by_its_arguments():
    """Idempotence without an AWX server (none runs here), from the module arguments: awx.awx 24.6.1 looks every
    object up by name (workflow nodes by `identifier`, create_workflow_nodes) and PATCHes only fields that differ
    (create_or_update_if_needed); what would change on every run is deleting nodes (destroy_current_nodes, which
    also sets changed unconditionally), deleting objects, copying, renaming or launching updates."""
    churn = {"destroy_current_nodes", "destroy_current_schema", "copy_from", "new_name", "update_project"}
    for task in load_tasks():
        module = next(k for k in task if k.startswith("awx.awx."))
        args = task[module]
        assert not churn & set(args), f"{task['name']}: {sorted(churn & set(args))}"
        assert args.get("state") == "present", task["name"]
    workflow = next(t for t in load_tasks() if "awx.awx.workflow_job_template" in t)["awx.awx.workflow_job_template"]
    identifiers = [n["identifier"] for n in workflow["workflow_nodes"]]
    assert all(identifiers) and len(identifiers) == len(set(identifiers))
    for node in workflow["workflow_nodes"]:
        for linked in node.get("related", {}).values():
            assert {n["identifier"] for n in linked} <= set(identifiers)


def test_module_premises_of_idempotence(awx_collections):
    """The premises above, in the pinned awx.awx source: nodes are searched by identifier, and only
    destroy_current_nodes deletes them."""
    source = (awx_collections / "ansible_collections/awx/awx/plugins/modules/workflow_job_template.py").read_text()
    assert "search_fields = {'identifier': workflow_node['identifier']}" in source
    assert source.count("destroy_workflow_nodes(module, response, workflow_job_template_id)") == 1
    assert "if destroy_current_nodes:\n        destroy_workflow_nodes(" in source


def test_fleet_templates_are_sliced_on_the_instance_group():
    settings = yaml.load((AWX / "vars" / "keepwarm.yml").read_text(), Loader=AnsibleYamlLoader)
    templates = {t["name"]: t for t in settings["keepwarm_awx_job_templates"]}
    for name in ("keepwarm: converge", "keepwarm: verify"):
        assert templates[name]["job_slice_count"] == "{{ keepwarm_awx_job_slice_count }}"
    assert "job_slice_count" not in templates["keepwarm: pin"]
    assert int(settings["keepwarm_awx_job_slice_count"]) > 1
    tasks = {next(k for k in t if k.startswith("awx.awx.")): t for t in load_tasks()}
    group = tasks["awx.awx.instance_group"]["awx.awx.instance_group"]
    assert group["name"] == "{{ keepwarm_awx_instance_group }}"
    job_template = tasks["awx.awx.job_template"]["awx.awx.job_template"]
    assert job_template["instance_groups"] == ["{{ keepwarm_awx_instance_group }}"]
    assert job_template["job_slice_count"] == "{{ item.job_slice_count | default(1) }}"
    # site.yml's serial is a percentage, which applies within each slice: the share of the fleet restarting at
    # once does not grow with the slice count (README, AWX).
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())[0]
    assert site["serial"] == "{{ keepwarm_serial | default('25%') }}"
