#!/usr/bin/env python3
"""Test keepwarm.ollama on every ansible-core that collection/meta/runtime.yml's requires_ansible admits.

    python tools/core_matrix.py                # every version in VERSIONS
    python tools/core_matrix.py --only 2.17    # one of them

For each ansible-core minor version: a small venv under build/core-matrix/ (cached: made once per pin, reused
while its stamp matches; the venv's own ansible-core 2.19 is .venv itself), then on the collection assembled
outside the repository (tools/assemble_collection.py):
  1. the modules' unit tests (collection/tests/unit) with that ansible-core's module_utils,
  2. `ansible-doc --json` of every module (plugins/modules/*.py) and both roles: no error, each shows its options,
  3. the roles' argument specs (meta/argument_specs.yml) through ansible-playbook: a wrong type fails naming the
     variable, the right one passes (`--tags _none_` runs only the implicit validation task).
Prints the seconds each version took; exits non-zero on the first failing version.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "core-matrix"
# The supported range, tested: keep in step with collection/meta/runtime.yml (tests/ship/test_core_matrix.py).
VERSIONS = ("2.17", "2.18", "2.19")
# The controller Python: 3.11 is supported by all three (2.17: 3.10-3.12, 2.18 and 2.19: 3.11-3.13).
PYTHON = Path(sys.base_prefix) / "bin" / "python3.11"
MODULES = ("ollama_override", "ollama_service_info", "ollama_pin", "ollama_ps")
# Per role: a variable, a value of the wrong type and a right one.
ROLE_ARGS = {
    "keepalive": ("keepalive_max_loaded_models", "not-a-number", 2),
    "heartbeat": ("heartbeat_interval", "not-a-number", 20),
}


def pytest_pin() -> str:
    return f"pytest=={metadata.version('pytest')}"


def venv_for(minor: str) -> Path:
    """The venv holding ansible-core `minor`.* (and the same pytest as .venv): made once, then reused."""
    if minor == running_core():
        return Path(sys.executable).parent.parent
    venv = CACHE / f"ansible-core-{minor}"
    spec = [f"ansible-core=={minor}.*", pytest_pin()]
    stamp = venv / ".keepwarm-stamp"
    if stamp.is_file() and stamp.read_text() == " ".join(spec):
        return venv
    subprocess.run([str(PYTHON), "-m", "venv", "--clear", str(venv)], check=True)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *spec])
    stamp.write_text(" ".join(spec))
    return venv


def running_core() -> str:
    return ".".join(metadata.version("ansible-core").split(".")[:2])


def env_for(venv: Path, collections: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CONFIG=str(home / "ansible.cfg"),
    )
    return env


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def check_version(minor: str, collections: Path, tree: Path, work: Path) -> None:
    venv = venv_for(minor)
    home = work / f"home-{minor}"
    home.mkdir()
    (home / "ansible.cfg").write_text("[defaults]\ninterpreter_python = auto_silent\nretry_files_enabled = False\n")
    env = env_for(venv, collections, home)
    python = str(venv / "bin" / "python")
    found = run([python, "-c", "from ansible.release import __version__; print(__version__)"], env=env).stdout
    if not found.startswith(f"{minor}."):
        raise SystemExit(f"{venv} runs ansible-core {found.strip()}, expected {minor}")

    # 1. unit tests, run from the assembled tree (tests/unit/conftest.py puts its ansible_collections on sys.path)
    proc = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(tree / "pytest.ini"), "tests/unit"],
        cwd=tree,
        env=env,
    )
    summary = proc.stdout.strip().splitlines()[-1]
    if " passed" not in summary or "failed" in summary or "skipped" in summary:
        raise SystemExit(f"ansible-core {minor}: unit tests: {summary}")
    print(f"ansible-core {minor}: unit tests: {summary}", flush=True)

    # 2. ansible-doc: every module and role documented, with its options
    names = [f"keepwarm.ollama.{p.stem}" for p in sorted((tree / "plugins" / "modules").glob("*.py"))]
    if not set(MODULES) <= {n.rsplit(".", 1)[1] for n in names}:
        raise SystemExit(f"the assembled collection lacks modules: {sorted(MODULES)} vs {names}")
    docs = json.loads(run([str(venv / "bin" / "ansible-doc"), "--json", *names], env=env).stdout)
    for name in names:
        if not docs.get(name, {}).get("doc", {}).get("options"):
            raise SystemExit(f"ansible-core {minor}: ansible-doc shows no options for {name}")
    roles = [f"keepwarm.ollama.{r}" for r in ROLE_ARGS]
    docs = json.loads(run([str(venv / "bin" / "ansible-doc"), "-t", "role", "--json", *roles], env=env).stdout)
    for role, (variable, _bad, _good) in ROLE_ARGS.items():
        options = docs[f"keepwarm.ollama.{role}"]["entry_points"]["main"]["options"]
        if variable not in options:
            raise SystemExit(f"ansible-core {minor}: ansible-doc -t role {role} lacks {variable}")

    # 3. argument specs: a wrong type is refused naming the variable; the right value passes
    for role, (variable, bad, good) in ROLE_ARGS.items():
        for value, should_pass in ((bad, False), (good, True)):
            playbook = work / f"argspec-{minor}-{role}.yml"
            play = {
                "name": f"Validate {role}",
                "hosts": "localhost",
                "gather_facts": False,
                "roles": [{"role": f"keepwarm.ollama.{role}", "vars": {variable: value}}],
            }
            playbook.write_text(yaml.safe_dump([play]))
            proc = subprocess.run(
                [str(venv / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
                + ["--tags", "_none_"],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            out = proc.stdout + proc.stderr
            if should_pass and proc.returncode != 0:
                raise SystemExit(f"ansible-core {minor}: {role} refused {variable}={value!r}:\n{out[-3000:]}")
            if not should_pass and (proc.returncode == 0 or variable not in out):
                raise SystemExit(f"ansible-core {minor}: {role} accepted {variable}={value!r}:\n{out[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=VERSIONS, action="append", help="test only this version (repeatable)")
    args = parser.parse_args(argv)
    versions = args.only or list(VERSIONS)
    CACHE.mkdir(parents=True, exist_ok=True)
    timings = []
    with tempfile.TemporaryDirectory(prefix="keepwarm-core-matrix-") as tmp:
        work = Path(tmp)
        tree = Path(
            run([sys.executable, str(ROOT / "tools" / "assemble_collection.py"), str(work / "src")]).stdout.strip()
        )
        # A pytest config of its own, so the repository's (filterwarnings, testpaths) does not apply here.
        (tree / "pytest.ini").write_text(
            textwrap.dedent(
                """\
                [pytest]
                addopts = -ra --strict-markers
                """
            )
        )
        for minor in versions:
            t0 = time.monotonic()
            check_version(minor, work / "src", tree, work)
            timings.append(f"{minor}: {time.monotonic() - t0:.0f} s")
            print(f"ansible-core {minor}: unit tests, ansible-doc and role argument specs passed", flush=True)
    print("core matrix passed (" + ", ".join(timings) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
