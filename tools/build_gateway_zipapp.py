#!/usr/bin/env python3
"""Build keepwarm-gateway as one self-contained, byte-for-byte reproducible zipapp.

    python tools/build_gateway_zipapp.py --out dist/keepwarm-gateway.pyz

The zip holds `gateway/` from this checkout, the rulebook files it shares with the Ansible modules (copied byte for
byte from `collection/plugins/module_utils/` into `gateway/_vendor/`, the names listed in `gateway/_rules.py`
RULE_MODULES), the config format it shares with the heartbeat agent (`heartbeat_agent/_configfile.py`, likewise
copied into `gateway/_vendor/`, SHARED_MODULES) and h11, its only dependency (pure Python, no I/O of its own). The
h11 wheel is the one the agent's zipapp pins (tools/build_zipapp.py PINS: newest release for Python 3.9,
sha256-checked, cached in `build/wheels/`); the zip layout rules (sorted entries, fixed timestamps and modes, no
.pyc) are that script's `write_zipapp`.
"""

from __future__ import annotations

import argparse
import ast
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_zipapp  # noqa: E402 - the agent's builder: one wheel pin list and one reproducible zip writer

PACKAGE = ROOT / "gateway"
RULEBOOK_DIR = ROOT / "collection" / "plugins" / "module_utils"
AGENT_DIR = ROOT / "heartbeat_agent"
DEPENDENCIES = ("h11",)

MAIN = b"""# keepwarm-gateway (zipapp entry point)
import sys

if sys.version_info < (3, 9):
    sys.stdout.write('event=start result=error error=python message="needs Python 3.9+, not %d.%d"\\n'
                     % sys.version_info[:2])
    sys.exit(2)

# Self-contained: only this zip and the standard library, whatever the host has installed.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith(("site-packages", "dist-packages"))]

from gateway._cli import main

sys.exit(main())
"""


def rule_modules(name: str = "RULE_MODULES") -> tuple:
    """A tuple of module names from gateway/_rules.py (RULE_MODULES, SHARED_MODULES), read without importing it."""
    tree = ast.parse((PACKAGE / "_rules.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise SystemExit(f"build_gateway_zipapp: gateway/_rules.py has no {name} tuple")


def vendored_files() -> dict:
    """gateway/_vendor/<stem>.py: the rulebook's files and the agent's shared config module, byte for byte."""
    sources = [RULEBOOK_DIR / f"{stem}.py" for stem in rule_modules()]
    sources += [AGENT_DIR / f"{stem}.py" for stem in rule_modules("SHARED_MODULES")]
    files = {}
    for src in sources:
        if not src.is_file():
            raise SystemExit(f"build_gateway_zipapp: shared module {src} is missing")
        files[f"gateway/_vendor/{src.name}"] = src.read_bytes()
    return files


def collect(wheel_dir: Path) -> dict:
    pins = [p for p in build_zipapp.PINS if p[0] in DEPENDENCIES]
    if len(pins) != len(DEPENDENCIES):
        raise SystemExit(f"build_gateway_zipapp: {DEPENDENCIES} not all pinned in tools/build_zipapp.py PINS")
    files: dict = {}
    for wheel in build_zipapp.fetch_wheels(wheel_dir, pins):
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.endswith("/") or "__pycache__" in name or name.endswith(".pyc"):
                    continue
                files[name] = zf.read(name)
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files["gateway/" + path.relative_to(PACKAGE).as_posix()] = path.read_bytes()
    files.update(vendored_files())
    files["__main__.py"] = MAIN
    return files


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist" / "keepwarm-gateway.pyz"), help="output .pyz path")
    parser.add_argument("--wheels", default=str(build_zipapp.WHEEL_DIR), help="wheel cache (default build/wheels)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    files = collect(Path(args.wheels))
    build_zipapp.write_zipapp(files, out)
    print(f"{out} {out.stat().st_size} bytes sha256={build_zipapp.sha256(out)} entries={len(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
