#!/usr/bin/env python3
"""(Re-)make the collection's release notes for the version in collection/galaxy.yml, from every fragment.

    python tools/changelog_release.py [--date YYYY-MM-DD]

antsibull-changelog records a release in collection/changelogs/changelog.yaml (with the new modules and roles it
finds through ansible-doc, by their version_added); tools/build_collection.py renders CHANGELOG.rst from it into the
artifact. While that version is not published (no git tag v<version>), fragments and modules added later belong in
it: this drops the version's entry, assembles the collection outside the repository (tools/assemble_collection.py;
antsibull-changelog needs an ansible_collections/<ns>/<name> tree), runs `antsibull-changelog release` there and
copies changelog.yaml back. Fragments stay (changelogs/config.yaml keep_fragments: true).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHANGELOG = ROOT / "collection" / "changelogs" / "changelog.yaml"


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=datetime.date.today().isoformat(), help="release date (default today)")
    args = parser.parse_args(argv)
    version = str(yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text())["version"])
    tagged = subprocess.run(
        ["git", "tag", "--list", f"v{version}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    if tagged.stdout.strip():
        raise SystemExit(f"v{version} is tagged (published): bump galaxy.yml's version for a new release instead")
    data = yaml.safe_load(CHANGELOG.read_text())
    data.setdefault("releases", {}).pop(version, None)
    with tempfile.TemporaryDirectory(prefix="keepwarm-changelog-") as tmp:
        tree = Path(
            subprocess.run(
                [sys.executable, str(ROOT / "tools" / "assemble_collection.py"), str(Path(tmp) / "src")],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        (tree / "changelogs" / "changelog.yaml").write_text(yaml.safe_dump(data))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["ANSIBLE_COLLECTIONS_PATH"] = str(Path(tmp) / "src")
        subprocess.run(
            [tool("antsibull-changelog"), "release", "--version", version, "--date", args.date],
            cwd=tree,
            env=env,
            check=True,
        )
        shutil.copyfile(tree / "changelogs" / "changelog.yaml", CHANGELOG)
    released = yaml.safe_load(CHANGELOG.read_text())["releases"][version]
    print(f"{version}: {len(released.get('fragments', []))} fragments, {len(released.get('modules', []))} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
