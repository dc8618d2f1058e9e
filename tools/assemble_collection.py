#!/usr/bin/env python3
"""Assemble DEST/ansible_collections/keepwarm/ollama from `collection/` and the top-level `roles/`.

    python tools/assemble_collection.py DEST [--clean]

Real copies only: the `collection/roles -> ../roles` link is dereferenced (ansible-galaxy skips symlinks that
leave the collection; ansible-test refuses symlinks), and no __pycache__, *.pyc, .pytest_cache or roles' molecule
scenarios are copied (galaxy.yml's build_ignore leaves those out of the artifact anyway). The shared
`tests/data/ps_samples.json` is copied next to the unit tests so `ansible-test units` finds it. The same tree
serves `ansible-galaxy collection build` and `ansible-test` (run it from the printed path).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".tox"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".tar.gz")


def _ignore(directory: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIP_NAMES or n.endswith(SKIP_SUFFIXES)}
    # roles/<role>/molecule: Molecule scenarios run from the checkout, never from the collection tree
    if Path(directory).parent.name == "roles" and "molecule" in names:
        skipped.add("molecule")
    return skipped


def assemble(dest: Path, clean: bool = False) -> Path:
    target = dest / "ansible_collections" / "keepwarm" / "ollama"
    if target.exists():
        if not clean:
            raise SystemExit(f"{target} exists; pass --clean to replace it")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    source = ROOT / "collection"
    # symlinks=False copies what links point at: collection/roles -> ../roles becomes a real roles/ tree
    shutil.copytree(source, target, symlinks=False, ignore=_ignore)
    roles_src = ROOT / "roles"
    roles_dst = target / "roles"
    if roles_src.is_dir() and not roles_dst.exists():
        shutil.copytree(roles_src, roles_dst, symlinks=False, ignore=_ignore)
    samples = ROOT / "tests" / "data" / "ps_samples.json"
    unit = target / "tests" / "unit"
    if samples.is_file() and unit.is_dir():
        shutil.copyfile(samples, unit / "ps_samples.json")
    links = [str(p) for p in target.rglob("*") if p.is_symlink()]
    if links:
        raise SystemExit("symlinks left in the assembled tree: " + ", ".join(links))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder that receives ansible_collections/keepwarm/ollama")
    parser.add_argument("--clean", action="store_true", help="replace an existing assembled tree")
    args = parser.parse_args(argv)
    target = assemble(args.dest.resolve(), clean=args.clean)
    print(os.fspath(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
