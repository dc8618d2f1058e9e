#!/usr/bin/env python3
"""Install the `awx.awx` collection for the AWX-as-code playbook without Galaxy.

These machines reach PyPI but not galaxy.ansible.com. The `ansible` community package on PyPI bundles `awx.awx`, so
this takes it from that one wheel with tools/install_community_docker.py's `install` (`pip download --no-deps`,
nothing is installed into the running environment: the venv's ansible-core 2.19 stays as it is; only
`ansible_collections/awx/awx/` is extracted into DEST, under a lock).

    python awx/install_awx_collection.py --dest build/awx-collections
    ANSIBLE_COLLECTIONS_PATH=build/awx-collections ansible-playbook --syntax-check awx/configure.yml

The `ansible` release is that script's ANSIBLE_PACKAGE (ansible 12.x depends on ansible-core 2.19.x); it carries
awx.awx AWX_VERSION. A second run with the same pin is a no-op.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import install_community_docker  # noqa: E402 - the one installer of collections from the `ansible` wheel

AWX_VERSION = "24.6.1"


def install(dest: Path, ansible_package: str = install_community_docker.ANSIBLE_PACKAGE) -> Path:
    """Make DEST/ansible_collections/awx/awx hold awx.awx AWX_VERSION; return that path. Safe in parallel."""
    install_community_docker.install(dest, ansible_package, {"awx.awx": AWX_VERSION})
    return dest / "ansible_collections" / "awx" / "awx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("build/awx-collections"), help="a collections path")
    args = parser.parse_args(argv)
    path = install(args.dest.resolve())
    print(f"awx.awx {AWX_VERSION} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
