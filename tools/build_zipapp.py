#!/usr/bin/env python3
"""Build the heartbeat agent as one self-contained, byte-for-byte reproducible zipapp.

    python tools/build_zipapp.py --out dist/ollama-heartbeat.pyz

The zip holds `heartbeat_agent/` from this checkout, the rulebook files it shares with the Ansible modules (copied
byte for byte from `collection/plugins/module_utils/` into `heartbeat_agent/_vendored/`, the names listed in
`heartbeat_agent/_rules.py` RULE_MODULES), plus httpx and its pure-Python dependencies, pinned to the
newest releases that still support Python 3.9 (GPU fleets run RHEL 9 / Debian 11 system Pythons; the newest anyio
is a SyntaxError on 3.9 and the newest idna fails on 3.8: /work/shared/packaging-notes.md). Wheels are fetched once
with `pip download --only-binary=:all: --python-version 3.9 --no-deps`, checked against the sha256 below, and
cached in `build/wheels/`.

anyio (with exceptiongroup and typing_extensions, its `python_version < "3.11"/"3.13"` dependencies) serves only
httpx's async API, which the agent does not use; httpcore imports it opportunistically when present
(httpcore/_synchronization.py `try: import anyio`), which costs about 0.2 s of CPU per `once` run (compiling it
from the zip). It is left out unless `--with-async` is given; its 3.9-compatible pins stay below.

Reproducible: entries sorted, every timestamp 1980-01-01 00:00:00, permissions 0644, Unix host, DEFLATE level 9,
no directory entries, no __pycache__/.pyc, fixed shebang. Same sources and wheels give the same sha256.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEEL_DIR = ROOT / "build" / "wheels"
PACKAGE = ROOT / "heartbeat_agent"
RULEBOOK_DIR = ROOT / "collection" / "plugins" / "module_utils"
VENDORED_INIT = b'"""keepwarm rulebook: collection/plugins/module_utils files copied by tools/build_zipapp.py."""\n'
SHEBANG = b"#!/usr/bin/env python3\n"
DATE_TIME = (1980, 1, 1, 0, 0, 0)

# name, version, wheel file, sha256: newest release with Requires-Python allowing 3.9 (checked 2026-11-26).
PINS = [
    ("httpx", "0.28.1", "httpx-0.28.1-py3-none-any.whl",
     "d909fcccc110f8c7faf814ca82a9a4d816bc5a6dbfea25d6591d6985b8ba59ad"),
    ("httpcore", "1.0.9", "httpcore-1.0.9-py3-none-any.whl",
     "2d400746a40668fc9dec9810239072b40b4484b640a8c38fd654a024c7a1bf55"),
    ("h11", "0.16.0", "h11-0.16.0-py3-none-any.whl",
     "63cf8bbe7522de3bf65932fda1d9c2772064ffb3dae62d55932da54b31cb6c86"),
    ("idna", "3.20", "idna-3.20-py3-none-any.whl",
     "ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c"),
    ("certifi", "2026.10.19.post1", "certifi-2026.10.19.post1-py3-none-any.whl",
     "1324c476b4811eff41a8bc2122cd0bbd4d9c7234c725446d99ab1612b3a7fdd2"),
]  # fmt: skip
ASYNC_PINS = [
    ("anyio", "4.12.1", "anyio-4.12.1-py3-none-any.whl",
     "d405828884fc140aa80a3c667b8beed277f1dfedec42ba031bd6ac3db606ab6c"),
    ("exceptiongroup", "1.3.2", "exceptiongroup-1.3.2-py3-none-any.whl",
     "41c6a70dfec22050d3d8b43386b059a4dc0bca3f3d40a40971cb206fff1785af"),
    ("typing_extensions", "4.16.0", "typing_extensions-4.16.0-py3-none-any.whl",
     "481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8"),
]  # fmt: skip

MAIN = b"""# keepwarm heartbeat agent (zipapp entry point)
import sys

if sys.version_info < (3, 9):
    msg = 'action=start result=error exit=2 error=python message="needs Python 3.9+, not %d.%d"'
    sys.stdout.write(msg % sys.version_info[:2] + "\\n")
    sys.exit(2)

# Self-contained: only this zip and the standard library. Packages installed on the host (Debian's python3-rich,
# python3-brotli, ...) would otherwise be picked up by httpx's optional imports (httpx/_main.py imports rich and
# click when present: ~0.1 s per beat) and make the agent's behaviour depend on the host.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith(("site-packages", "dist-packages"))]

from heartbeat_agent.__main__ import main

sys.exit(main())
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheels(wheel_dir: Path, pins: list[tuple[str, str, str, str]]) -> list[Path]:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, version, filename, digest in pins:
        path = wheel_dir / filename
        if not path.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                   "--only-binary=:all:", "--python-version", "3.9", "--implementation", "py", "--abi", "none",
                   "--platform", "any", "--no-deps", "--dest", str(wheel_dir), f"{name}=={version}"]  # fmt: skip
            subprocess.run(cmd, check=True)
        if not path.exists():
            raise SystemExit(f"build_zipapp: pip did not produce {path}")
        actual = sha256(path)
        if actual != digest:
            raise SystemExit(f"build_zipapp: {path} has sha256 {actual}, expected {digest}")
        paths.append(path)
    return paths


def rule_modules() -> tuple[str, ...]:
    """RULE_MODULES from heartbeat_agent/_rules.py, read without importing the package."""
    tree = ast.parse((PACKAGE / "_rules.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RULE_MODULES" for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
                return value
    raise SystemExit("build_zipapp: heartbeat_agent/_rules.py has no RULE_MODULES tuple")


def rulebook_files() -> dict[str, bytes]:
    """The shared rule modules, as heartbeat_agent/_vendored/<name>.py entries."""
    files = {"heartbeat_agent/_vendored/__init__.py": VENDORED_INIT}
    for stem in rule_modules():
        path = RULEBOOK_DIR / f"{stem}.py"
        if not path.is_file():
            raise SystemExit(f"build_zipapp: rulebook module {path} is missing")
        files[f"heartbeat_agent/_vendored/{stem}.py"] = path.read_bytes()
    return files


def collect(wheels: list[Path]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.endswith("/") or "__pycache__" in name or name.endswith(".pyc"):
                    continue
                if name in files:
                    raise SystemExit(f"build_zipapp: {name} is in two wheels")
                files[name] = zf.read(name)
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
            files["heartbeat_agent/" + path.relative_to(PACKAGE).as_posix()] = path.read_bytes()
    files.update(rulebook_files())
    files["__main__.py"] = MAIN
    return files


def write_zipapp(files: dict[str, bytes], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(SHEBANG)
            with zipfile.ZipFile(fh, "w") as zf:
                for name in sorted(files):
                    info = zipfile.ZipInfo(name, date_time=DATE_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.create_system = 3  # Unix, so external_attr carries the mode
                    info.external_attr = (0o100644 & 0xFFFF) << 16
                    zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        os.chmod(tmp, 0o755)  # noqa: S103 - an executable zipapp (shebang), readable by the service user
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist" / "ollama-heartbeat.pyz"), help="output .pyz path")
    parser.add_argument("--wheels", default=str(WHEEL_DIR), help="wheel cache directory (default build/wheels)")
    parser.add_argument("--with-async", action="store_true", help="also bundle anyio (httpx's async API)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    files = collect(fetch_wheels(Path(args.wheels), PINS + (ASYNC_PINS if args.with_async else [])))
    write_zipapp(files, out)
    print(f"{out} {out.stat().st_size} bytes sha256={sha256(out)} entries={len(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
