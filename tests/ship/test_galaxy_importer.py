"""galaxy-importer (Galaxy's own import checks, from PyPI) on the built artifact: it imports with no warning and no
error, with every module's and role's documentation, the README and the requires_ansible Galaxy will show.

Settings: tests/ship/galaxy-importer.cfg (ansible-doc, ansible-lint offline, changelog check; ansible-test off
because the importer runs it in a container image, and tools/sanity.sh runs it here without one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import build_collection
import pytest
import yaml
from conftest import ROOT, VENV_BIN, collection_version

CONFIG = Path(__file__).with_name("galaxy-importer.cfg")


@pytest.fixture(scope="module")
def imported(artifact, tmp_path_factory):
    """(log lines, importer_result.json) of `python -m galaxy_importer.main ARTIFACT`."""
    work = tmp_path_factory.mktemp("galaxy-importer")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "GALAXY_IMPORTER_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(work),
        GALAXY_IMPORTER_CONFIG=str(CONFIG),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "galaxy_importer.main", str(artifact)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    return log.splitlines(), json.loads((work / "importer_result.json").read_text())


def test_import_has_no_warning_or_error(imported):
    lines, _result = imported
    assert "Importer processing completed successfully" in lines
    assert "...ansible-lint run complete" in lines  # ansible-lint ran (its findings would be WARNING lines)
    problems = [line for line in lines if line.startswith(("WARNING", "ERROR", "Traceback"))]
    assert problems == []


def test_galaxy_shows_docs_for_every_module_and_role(imported):
    _lines, result = imported
    blob = {(c["content_type"], c["content_name"]): c for c in result["docs_blob"]["contents"]}
    # modules: their DOCUMENTATION through ansible-doc, with options
    for module in build_collection.MODULES:
        assert blob[("module", module)]["doc_strings"]["doc"]["options"], module
    # roles: Galaxy shows their README and meta/main.yml's description
    described = {c["name"]: c["description"] for c in result["contents"] if c["content_type"] == "role"}
    for role in build_collection.ROLES:
        assert blob[("role", role)]["readme_html"].startswith(f"<h1>keepwarm.ollama.{role}</h1>"), role
        assert described[role], role
    readme = result["docs_blob"]["collection_readme"]
    assert readme["name"] == "README.md"
    for section in ("Install", "Supported versions", "Roles", "Support"):
        assert f">{section}</h2>" in readme["html"], section


def test_metadata_galaxy_shows(imported):
    _lines, result = imported
    galaxy = yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text())
    runtime = yaml.safe_load((ROOT / "collection" / "meta" / "runtime.yml").read_text())
    assert result["metadata"]["version"] == collection_version()
    assert result["requires_ansible"] == runtime["requires_ansible"]
    for key in ("repository", "documentation", "issues", "homepage"):
        assert result["metadata"][key] == galaxy[key]
        assert galaxy[key].startswith("https://github.com/keepwarm/keepwarm-ollama"), galaxy[key]
