#!/usr/bin/env python3
"""Build the keepwarm.ollama collection artifact: OUT/keepwarm-ollama-<version>.tar.gz.

    python tools/build_collection.py --out dist

1. `tools/assemble_collection.py TMP` assembles TMP/ansible_collections/keepwarm/ollama from `collection/` and the
   top-level `roles/` as real copies (`ansible-galaxy collection build` skips symlinks leaving the collection).
2. The heartbeat agent's zipapp (OUT/ollama-heartbeat.pyz, from `make agent`; built here with
   tools/build_zipapp.py when missing) goes into the assembled `roles/heartbeat/files/`, so a controller that only
   installed the artifact (AWX, an execution environment) deploys the agent without a checkout. The same for the
   gateway: OUT/keepwarm-gateway.pyz (`make gateway`; else tools/build_gateway_zipapp.py) into `roles/gateway/files/`.
3. `antsibull-changelog generate` writes CHANGELOG.rst (the release notes) from changelogs/changelog.yaml, the one
   record of releases (CHANGELOG.rst is never committed, so it cannot drift from it).
4. `ansible-galaxy collection build` writes the tarball; the version comes from collection/galaxy.yml only.
5. The tarball is checked: the four modules, module_utils, the roles (with the zipapps and their READMEs), README.md,
   CHANGELOG.rst with this version's section (and docs/ when collection/docs/ has files), and no tests, molecule,
   __pycache__, *.pyc or symlinks. Any miss fails the build.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GALAXY_YML = ROOT / "collection" / "galaxy.yml"
ZIPAPP_NAME = "ollama-heartbeat.pyz"
GATEWAY_ZIPAPP_NAME = "keepwarm-gateway.pyz"
MODULES = (
    "ollama_override",
    "ollama_service_info",
    "ollama_pin",
    "ollama_ps",
    "ollama_compose_override",
    "ollama_container_info",
)
ROLES = ("keepalive", "heartbeat", "gateway")
FORBIDDEN_PARTS = {"tests", "molecule", "__pycache__", ".pytest_cache"}


def collection_version(galaxy_yml: Path = GALAXY_YML) -> str:
    meta = yaml.safe_load(galaxy_yml.read_text())
    return str(meta["version"])


def artifact_name(version: str) -> str:
    meta = yaml.safe_load(GALAXY_YML.read_text())
    return f"{meta['namespace']}-{meta['name']}-{version}.tar.gz"


def _tool(name: str) -> str:
    """An Ansible CLI next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def ensure_zipapp(out: Path, name: str = ZIPAPP_NAME, builder: str = "build_zipapp.py") -> Path:
    zipapp = out / name
    if not zipapp.is_file():
        print(f"{zipapp} missing: building it with tools/{builder}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "tools" / builder), "--out", str(zipapp)], check=True)
    return zipapp


def assemble(dest: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "tools" / "assemble_collection.py"), str(dest)], check=True)
    tree = dest / "ansible_collections" / "keepwarm" / "ollama"
    if not (tree / "galaxy.yml").is_file():
        raise SystemExit(f"tools/assemble_collection.py did not produce {tree}/galaxy.yml")
    return tree


def add_zipapp(tree: Path, zipapp: Path, role_name: str = "heartbeat") -> Path:
    role = tree / "roles" / role_name
    if not role.is_dir():
        raise SystemExit(f"the assembled collection has no {role_name} role at {role}")
    files = role / "files"
    files.mkdir(exist_ok=True)
    target = files / zipapp.name
    shutil.copyfile(zipapp, target)
    target.chmod(0o644)
    return target


def generate_changelog(tree: Path, version: str) -> Path:
    """CHANGELOG.rst in the assembled tree from its changelogs/changelog.yaml; it must hold `version`'s section."""
    subprocess.run([_tool("antsibull-changelog"), "generate"], check=True, cwd=tree)
    changelog = tree / "CHANGELOG.rst"
    if f"v{version}\n" not in changelog.read_text():
        raise SystemExit(
            f"CHANGELOG.rst has no v{version} section: release it first "
            f"(antsibull-changelog release --version {version}, collection/changelogs/)"
        )
    return changelog


def collection_has_docs() -> bool:
    return any(p.is_file() for p in (ROOT / "collection" / "docs").rglob("*"))


def check_members(names: list[str], symlinks: list[str], docs_expected: bool | None = None) -> list[str]:
    """Problems with a tarball's regular files `names` and its `symlinks` (empty list = good)."""
    if docs_expected is None:
        docs_expected = collection_has_docs()
    problems = []
    present = set(names)
    for module in MODULES:
        if f"plugins/modules/{module}.py" not in present:
            problems.append(f"module {module} missing")
    if not any(n.startswith("plugins/module_utils/") and n.endswith(".py") for n in names):
        problems.append("plugins/module_utils/ has no Python file")
    for role in ROLES:
        if f"roles/{role}/tasks/main.yml" not in present:
            problems.append(f"role {role} missing (roles/{role}/tasks/main.yml)")
        if f"roles/{role}/meta/argument_specs.yml" not in present:
            problems.append(f"role {role} has no meta/argument_specs.yml")
    if f"roles/heartbeat/files/{ZIPAPP_NAME}" not in present:
        problems.append(f"roles/heartbeat/files/{ZIPAPP_NAME} missing")
    if f"roles/gateway/files/{GATEWAY_ZIPAPP_NAME}" not in present:
        problems.append(f"roles/gateway/files/{GATEWAY_ZIPAPP_NAME} missing")
    # Docs: the collection README, each role's README (every variable) and the modules' own DOCUMENTATION (what
    # ansible-doc shows); plus docs/ whenever collection/docs/ has files.
    for role in ROLES:
        if f"roles/{role}/README.md" not in present:
            problems.append(f"role {role} has no README.md")
    if docs_expected and not any(n.startswith("docs/") for n in names):
        problems.append("docs/ missing or empty")
    for required in ("MANIFEST.json", "FILES.json", "meta/runtime.yml", "README.md", "CHANGELOG.rst"):
        if required not in present:
            problems.append(f"{required} missing")
    for name in names:
        parts = set(Path(name).parts)
        if parts & FORBIDDEN_PARTS or name.endswith((".pyc", ".tar.gz")):
            problems.append(f"{name} must not ship")
    problems.extend(f"{name} is a symlink" for name in symlinks)
    return problems


def tar_members(artifact: Path) -> tuple[list[str], list[str]]:
    """(regular file names, symlink names) of a collection tarball."""
    with tarfile.open(artifact) as tar:
        members = tar.getmembers()
    names = [m.name.removeprefix("./") for m in members if m.isfile()]
    symlinks = [m.name for m in members if m.issym() or m.islnk()]
    return names, symlinks


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    version = collection_version()
    zipapp = ensure_zipapp(out)
    gateway_zipapp = ensure_zipapp(out, GATEWAY_ZIPAPP_NAME, "build_gateway_zipapp.py")
    with tempfile.TemporaryDirectory(prefix="keepwarm-collection-") as tmp:
        tree = assemble(Path(tmp) / "tree")
        add_zipapp(tree, zipapp)
        add_zipapp(tree, gateway_zipapp, "gateway")
        generate_changelog(tree, version)
        built = Path(tmp) / "built"
        built.mkdir()
        subprocess.run(
            [_tool("ansible-galaxy"), "collection", "build", str(tree), "--output-path", str(built), "--force"],
            check=True,
            cwd=tmp,
        )
        produced = built / artifact_name(version)
        if not produced.is_file():
            raise SystemExit(f"ansible-galaxy did not write {produced.name}: {sorted(p.name for p in built.iterdir())}")
        names, symlinks = tar_members(produced)
        problems = check_members(names, symlinks)
        if problems:
            raise SystemExit("collection artifact rejected:\n  " + "\n  ".join(problems))
        artifact = out / produced.name
        shutil.move(str(produced), str(artifact))
    print(f"{artifact} ({artifact.stat().st_size} bytes, {len(names)} files, version {version})")
    return artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/keepwarm-ollama-<version>.tar.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist)")
    args = parser.parse_args(argv)
    build(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
