"""Every role variable in defaults/main.yml is described in meta/argument_specs.yml, and nothing else is.

The same check as prometheus-community/ansible `.github/scripts/lint_arguments_spec.sh`, plus: each option has a
description and a type, and a documented default equals the one in defaults/main.yml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "defaults" / "main.yml").is_file())


def _load(role: str) -> tuple[dict, dict]:
    defaults = yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())
    return defaults, specs["argument_specs"]["main"]["options"]


def test_roles_found() -> None:
    assert ROLES == ["gateway", "heartbeat", "keepalive"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_have_the_same_keys(role: str) -> None:
    defaults, options = _load(role)
    assert sorted(defaults) == sorted(options)


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role: str) -> None:
    defaults, _ = _load(role)
    assert [k for k in defaults if not k.startswith(f"{role}_")] == []


@pytest.mark.parametrize("role", ROLES)
def test_each_option_is_documented_with_type_and_matching_default(role: str) -> None:
    defaults, options = _load(role)
    for name, spec in options.items():
        assert spec.get("description"), name
        assert spec.get("type"), name
        assert spec.get("default") == defaults[name], name


@pytest.mark.parametrize("role", ROLES)
def test_readme_lists_every_variable(role: str) -> None:
    _, options = _load(role)
    readme = (ROLES_DIR / role / "README.md").read_text()
    assert [name for name in options if f"`{name}`" not in readme] == []
