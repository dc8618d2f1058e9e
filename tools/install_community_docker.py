#!/usr/bin/env python3
"""Install `community.docker` (the keepalive role's managed container and the sidecar heartbeat) without Galaxy.

These machines reach PyPI but not galaxy.ansible.com, and the `ansible` community package on PyPI bundles
community.docker. This downloads that one wheel (`pip download --no-deps`; nothing is installed into the running
environment) and extracts only community.docker and its own declared dependency
community.library_inventory_filtering_v1 into DEST, a collections path. `install(dest, collections)` takes any
collections the wheel bundles: awx/install_awx_collection.py takes `awx.awx` with it.

    python tools/install_community_docker.py --dest build/docker-collections
    ANSIBLE_COLLECTIONS_PATH=collections:build/docker-collections ansible-playbook playbooks/site.yml

A second run with the same pin is a no-op (MANIFEST.json versions checked).

keepwarm.ollama declares community.docker in collection/galaxy.yml, so `ansible-galaxy collection install
keepwarm-ollama-*.tar.gz` fetches it from Galaxy into the same collections path. Offline, put it there first and
install the artifact with --offline (the dependency is then found already installed, as it would have been fetched):

    python tools/install_community_docker.py --into ~/.ansible/collections
    ansible-galaxy collection install --offline dist/keepwarm-ollama-0.1.0.tar.gz -p ~/.ansible/collections
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ANSIBLE_PACKAGE = "12.3.0"  # the `ansible` release whose ansible-core is 2.19 (awx/install_awx_collection.py too)
COLLECTIONS = {"community.docker": "4.8.5", "community.library_inventory_filtering_v1": "1.1.5"}
DEFAULT_DEST = Path(__file__).resolve().parents[1] / "build" / "docker-collections"


def installed_version(dest: Path, fqcn: str) -> str | None:
    """The version in DEST's MANIFEST.json of FQCN, None when it is not there."""
    manifest = dest / "ansible_collections" / Path(*fqcn.split(".")) / "MANIFEST.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())["collection_info"]["version"]


def install(dest: Path, ansible_package: str = ANSIBLE_PACKAGE, collections: dict[str, str] | None = None) -> Path:
    """Make DEST hold COLLECTIONS ({fqcn: version}; default: community.docker and its dependency) from the
    `ansible==ansible_package` wheel; return DEST. A second run with the same pins is a no-op.

    Safe to call from parallel processes (pytest-xdist workers): one installs under a lock, the others wait."""
    collections = COLLECTIONS if collections is None else collections
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(installed_version(dest, c) == v for c, v in collections.items()):
            return dest
        with tempfile.TemporaryDirectory(prefix="ansible-wheel-") as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
                + ["--dest", tmp, f"ansible=={ansible_package}"],
                check=True,
            )
            wheels = list(Path(tmp).glob("ansible-*.whl"))
            if len(wheels) != 1:
                raise SystemExit(f"expected one ansible wheel in {tmp}, found {wheels}")
            staging = Path(tmp) / "extract"
            with zipfile.ZipFile(wheels[0]) as zf:
                names = zf.namelist()
                for fqcn in collections:
                    prefix = "ansible_collections/" + fqcn.replace(".", "/") + "/"
                    members = [n for n in names if n.startswith(prefix) and not n.endswith("/")]
                    if not members:
                        raise SystemExit(f"ansible {ansible_package} does not bundle {fqcn}")
                    for name in members:
                        zf.extract(name, staging)
                    target = dest / prefix
                    if target.exists():
                        shutil.rmtree(target)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(staging / prefix), str(target))
    for fqcn, version in collections.items():
        found = installed_version(dest, fqcn)
        if found != version:
            raise SystemExit(f"ansible {ansible_package} carries {fqcn} {found}, expected {version}")
    return dest


def install_into(collections_path: Path, cache: Path = DEFAULT_DEST) -> Path:
    """Copy COLLECTIONS (extracted once into CACHE) into COLLECTIONS_PATH, where the artifact then goes."""
    install(cache)
    for fqcn in COLLECTIONS:
        rel = Path("ansible_collections", *fqcn.split("."))
        target = collections_path / rel
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(cache / rel, target, symlinks=True)
    return collections_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("build/docker-collections"), help="a collections path")
    parser.add_argument(
        "--into", type=Path, help="also copy them into this collections path (e.g. before `ansible-galaxy --offline`)"
    )
    args = parser.parse_args(argv)
    path = install(args.dest.resolve())
    if args.into is not None:
        path = install_into(args.into.resolve(), cache=path)
    print(", ".join(f"{c} {v}" for c, v in COLLECTIONS.items()) + f" in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
