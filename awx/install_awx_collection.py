#!/usr/bin/env python3
"""Install the `awx.awx` collection for the AWX-as-code playbook without Galaxy.

These machines reach PyPI but not galaxy.ansible.com. The `ansible` community package on PyPI bundles `awx.awx`, so
this downloads that one wheel (`pip download --no-deps`, nothing is installed into the running environment: the
venv's ansible-core 2.19 stays as it is) and extracts only `ansible_collections/awx/awx/` into DEST.

    python awx/install_awx_collection.py --dest build/awx-collections
    ANSIBLE_COLLECTIONS_PATH=build/awx-collections ansible-playbook --syntax-check awx/configure.yml

ANSIBLE_PACKAGE is the `ansible` release whose ansible-core is 2.19 (ansible 12.x depends on ansible-core 2.19.x);
it carries awx.awx AWX_VERSION. A second run with the same pin is a no-op.
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

ANSIBLE_PACKAGE = "12.3.0"
AWX_VERSION = "24.6.1"
PREFIX = "ansible_collections/awx/awx/"


def installed_version(dest: Path) -> str | None:
    manifest = dest / "ansible_collections" / "awx" / "awx" / "MANIFEST.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())["collection_info"]["version"]


def install(dest: Path, ansible_package: str = ANSIBLE_PACKAGE) -> Path:
    """Make DEST/ansible_collections/awx/awx hold awx.awx from the `ansible==ansible_package` wheel; return its path.

    Safe to call from parallel processes (pytest-xdist workers): one installs under a lock, the others wait."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install_locked(dest, ansible_package)


def _install_locked(dest: Path, ansible_package: str) -> Path:
    target = dest / "ansible_collections" / "awx" / "awx"
    if installed_version(dest) == AWX_VERSION:
        return target
    with tempfile.TemporaryDirectory(prefix="awx-wheel-") as tmp:
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
            members = [name for name in zf.namelist() if name.startswith(PREFIX) and not name.endswith("/")]
            if not members:
                raise SystemExit(f"ansible {ansible_package} does not bundle awx.awx")
            for name in members:
                zf.extract(name, staging)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / PREFIX), str(target))
    found = installed_version(dest)
    if found != AWX_VERSION:
        raise SystemExit(f"ansible {ansible_package} carries awx.awx {found}, expected {AWX_VERSION}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("build/awx-collections"), help="a collections path")
    args = parser.parse_args(argv)
    path = install(args.dest.resolve())
    print(f"awx.awx {AWX_VERSION} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
