#!/usr/bin/env bash
# ansible-test sanity (every Python 3.8-3.13) and units for keepwarm.ollama, without Docker.
#
#   tools/sanity.sh              # sanity on all interpreters, then units
#   tools/sanity.sh --keep       # keep the assembled tree (path printed) for a rerun by hand
#
# 1. Assemble the collection OUTSIDE the repo (an ignored folder inside it makes ansible-test see no files and
#    report a green "All targets skipped").
# 2. Provide ansible-test's pip bootstrap locally: it downloads get-pip from a host these machines cannot reach
#    unless ~/.ansible/test/cache/get_pip_<ver>.py exists. The stand-in installs pip from the wheel of the
#    version ansible-test pins (read from ansible_test/_internal/python_requirements.py), fetched once with
#    `pip download` from PyPI.
# 3. Put the real pyenv interpreters first on PATH (the pyenv shims exit 127 unless selected).
# 4. Fail on "All targets skipped" or "Skipping sanity test" as well as on a non-zero exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

VENV=${VENV:-$ROOT/.venv}
[ -x "$VENV/bin/ansible-test" ] || VENV=$(dirname "$(dirname "$(command -v ansible-test)")")
PY="$VENV/bin/python"
ANSIBLE_TEST="$VENV/bin/ansible-test"
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
VERSIONS=${SANITY_PYTHONS:-"3.8 3.9 3.10 3.11 3.12 3.13"}

WORK=$(mktemp -d /tmp/keepwarm-sanity.XXXXXX)
cleanup() { if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# --- 1. assemble -----------------------------------------------------------------------------------------------
TREE=$("$PY" "$ROOT/tools/assemble_collection.py" "$WORK/src")
case "$TREE" in "$ROOT"/*) echo "assembled tree $TREE is inside the repo" >&2; exit 1 ;; esac

# --- 2. pip bootstrap stand-in ---------------------------------------------------------------------------------
REQS=$("$PY" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"))')
PIP_VERSION=$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" "$REQS" | head -1)
[ -n "$PIP_VERSION" ] || { echo "cannot read the pip version from $REQS" >&2; exit 1; }
CACHE="$HOME/.ansible/test/cache"
mkdir -p "$CACHE"
WHEEL="$CACHE/pip-$PIP_VERSION-py3-none-any.whl"
if [ ! -f "$WHEEL" ]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$CACHE" "pip==$PIP_VERSION"
fi
GET_PIP="$CACHE/get_pip_${PIP_VERSION//./_}.py"
cat > "$GET_PIP.tmp" <<PYEOF
# keepwarm stand-in for get-pip.py $PIP_VERSION (written by tools/sanity.sh): ansible-test runs this to bootstrap
# pip into its sanity venvs; it installs pip from the local wheel instead of an embedded copy.
import sys
WHEEL = "$WHEEL"
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
args = [WHEEL if a.startswith("pip==") else a for a in args]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
PYEOF
mv "$GET_PIP.tmp" "$GET_PIP"

# --- 3. real interpreters first on PATH ------------------------------------------------------------------------
BIN="$WORK/bin"
mkdir -p "$BIN"
for v in $VERSIONS; do
  real=$(ls -d "$PYENV_ROOT"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$real" ]; then echo "no pyenv interpreter for Python $v under $PYENV_ROOT" >&2; exit 1; fi
  ln -s "$real" "$BIN/python$v"
done
# the controller interpreter stays the venv's python (ansible-core 2.19 needs 3.11+)
ln -sf "$PY" "$BIN/python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
export PATH="$BIN:$VENV/bin:$PATH"
unset PYENV_VERSION

# --- 4. run ----------------------------------------------------------------------------------------------------
check_log() {
  if grep -E "All targets skipped|Skipping sanity test" "$1"; then
    echo "ansible-test skipped tests (see above): treated as a failure" >&2
    return 1
  fi
}
cd "$TREE"
t0=$SECONDS
"$ANSIBLE_TEST" sanity --color no -v 2>&1 | tee "$WORK/sanity.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { echo "ansible-test sanity failed (rc $rc)" >&2; exit "$rc"; }
check_log "$WORK/sanity.log"
echo "--- sanity took $((SECONDS - t0)) s"

t0=$SECONDS
"$ANSIBLE_TEST" units --color no --python "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --num-workers 2 2>&1 | tee "$WORK/units.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { echo "ansible-test units failed (rc $rc)" >&2; exit "$rc"; }
check_log "$WORK/units.log"
grep -qE "[0-9]+ passed" "$WORK/units.log" || { echo "ansible-test units ran no test" >&2; exit 1; }
echo "--- units took $((SECONDS - t0)) s"
