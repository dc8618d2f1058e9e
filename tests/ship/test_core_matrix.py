"""The supported ansible-core range is the tested one: meta/runtime.yml's requires_ansible admits exactly the minor
versions tools/core_matrix.py runs (module units, ansible-doc, role argument specs; a `make test` step), and every
module declares the Python it needs on the target."""

from __future__ import annotations

import ast

import build_collection
import core_matrix
import pytest
import yaml
from conftest import ROOT
from packaging.specifiers import SpecifierSet


def test_requires_ansible_is_the_tested_range():
    runtime = yaml.safe_load((ROOT / "collection" / "meta" / "runtime.yml").read_text())
    spec = SpecifierSet(runtime["requires_ansible"])
    tested = [tuple(int(p) for p in v.split(".")) for v in core_matrix.VERSIONS]
    for major, minor in tested:
        assert f"{major}.{minor}.0" in spec and f"{major}.{minor}.99" in spec
    (low_major, low_minor), (high_major, high_minor) = min(tested), max(tested)
    assert f"{low_major}.{low_minor - 1}.99" not in spec  # nothing older than the oldest tested
    assert f"{high_major}.{high_minor + 1}.0" not in spec  # nothing newer than the newest tested
    # no gap: every minor between the ends is tested
    assert [m for _, m in sorted(tested)] == list(range(low_minor, high_minor + 1))


def test_matrix_includes_the_venv_core():
    assert core_matrix.running_core() in core_matrix.VERSIONS


@pytest.mark.parametrize("module", build_collection.MODULES)
def test_module_declares_target_python(module):
    source = (ROOT / "collection" / "plugins" / "modules" / f"{module}.py").read_text()
    tree = ast.parse(source)
    doc = next(
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION"
    )
    requirements = yaml.safe_load(doc)["requirements"]
    assert any("Python 3.8 or later" in r for r in requirements), requirements
