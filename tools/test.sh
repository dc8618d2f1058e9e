#!/usr/bin/env bash
# The project's whole test run (`make test`, and `.ci/run` after installing). Order: cheap checks first, then the
# collection's ansible-test sanity, then Molecule on the lab, then pytest (unit, integration against the emulator,
# end-to-end on lab hosts) last so its summary closes the run. The lab is always torn down, whatever fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$PWD/collections"  # from-checkout keepwarm.ollama (never in ansible.cfg)
export ANSIBLE_HOME=${ANSIBLE_HOME:-/var/lib/keepwarm-lab/ansible-home}

teardown() { "$VENV/bin/python" -m lab down >/dev/null 2>&1 || true; }
trap teardown EXIT

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
timed() { local t0=$SECONDS; "$@"; echo "--- took $((SECONDS - t0)) s: $*"; }

step lint
timed make --no-print-directory lint VENV="$VENV"

step "build the agent zipapp and the collection artifact"
timed make --no-print-directory collection VENV="$VENV"

step "ansible-core matrix: module units, ansible-doc, role argument specs on each supported ansible-core"
timed "$VENV/bin/python" tools/core_matrix.py

step "ansible-test sanity and units"
timed tools/sanity.sh

step "molecule test --all"
teardown
timed molecule test --all

step pytest
teardown
timed pytest -p no:cacheprovider
