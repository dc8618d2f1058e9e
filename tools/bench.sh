#!/usr/bin/env bash
# The benchmarks (`make bench`): bench/warm_hits, bench/agent, bench/fleet, bench/gateway (run.py, warm_hits_f.py),
# bench/emulator_latency, one after the other.
#   tools/bench.sh                 full runs: bench/results/warm_hits.{md,png}, bench/results/fleet.{md,png},
#                                  bench/agent/RESULTS.md, bench/results/gateway.{md,json,png},
#                                  bench/results/gateway.warm_hits.{md,json}, bench/results/emulator_latency.{md,json}
#                                  (~6 min + ~2 min + ~10-20 min + ~5 min + ~6 min + <1 min; fleet waits for a free lab)
#   tools/bench.sh --smoke         seconds-long run of each (`make bench-smoke`; gateway ~40 s, the others seconds):
#                                  checks they still execute; writes only under build/bench/smoke/ (the agent bench
#                                  prints and writes nothing)
#   tools/bench.sh [--smoke] NAME  only the named ones (warm_hits, agent, fleet, gateway, gateway_warm_hits,
#                                  emulator_latency)
# Every benchmark runs even when an earlier one fails; the exit status is non-zero if any failed.
# The fleet bench needs root (it boots lab hosts with systemd-nspawn); its --smoke reuses a running lab (one host).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
if [ -x "$VENV/bin/python" ]; then PY="$VENV/bin/python"; export PATH="$VENV/bin:$PATH"; else PY=$(command -v python3); fi
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$PWD/collections"  # from-checkout keepwarm.ollama (never in ansible.cfg)
export ANSIBLE_HOME=${ANSIBLE_HOME:-/var/lib/keepwarm-lab/ansible-home}

smoke=()
names=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=(--smoke) ;;
        warm_hits | agent | fleet | gateway | gateway_warm_hits | emulator_latency) names+=("$arg") ;;
        *)
            echo "usage: tools/bench.sh [--smoke] [warm_hits|agent|fleet|gateway|gateway_warm_hits|emulator_latency ...]" >&2
            exit 2
            ;;
    esac
done
[ ${#names[@]} -eq 0 ] && names=(warm_hits agent fleet gateway gateway_warm_hits emulator_latency)

declare -A script=([warm_hits]=bench/warm_hits/run.py [agent]=bench/agent/bench.py [fleet]=bench/fleet/run.py
    [gateway]=bench/gateway/run.py [gateway_warm_hits]=bench/gateway/warm_hits_f.py
    [emulator_latency]=bench/emulator_latency/run.py)
failed=()
for name in "${names[@]}"; do
    printf '\n=== bench %s %s(%s)\n' "$name" "${smoke[*]:+${smoke[*]} }" "$(date -u +%H:%M:%S)"
    t0=$SECONDS
    if "$PY" "${script[$name]}" "${smoke[@]}"; then
        echo "--- $name ok in $((SECONDS - t0)) s"
    else
        echo "--- $name FAILED (exit $?) after $((SECONDS - t0)) s"
        failed+=("$name")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
