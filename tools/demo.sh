#!/usr/bin/env bash
# `make demo`: boot the lab (3 systemd-nspawn hosts running the Ollama emulator as ollama.service, plus one Docker
# host running it as the `ollama` container of a compose project), converge it with
# playbooks/site.yml, then print the fleet table from playbooks/verify.yml. Leaves the lab running: `make lab-down`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$PWD/collections"  # from-checkout keepwarm.ollama (never in ansible.cfg)
export ANSIBLE_HOME=${ANSIBLE_HOME:-/var/lib/keepwarm-lab/ansible-home}
hosts=${LAB_HOSTS:-3}
docker_hosts=${LAB_DOCKER_HOSTS:-1}

python -m lab up "$hosts"
if [ "$docker_hosts" -gt 0 ]; then
  hosts=$((hosts + docker_hosts))
  python -m lab up "$hosts" --runtime docker
fi
inventory=$(python -m lab inventory)
echo "lab inventory: $inventory"
t0=$SECONDS
ansible-playbook -i "$inventory" playbooks/site.yml
echo "site.yml took $((SECONDS - t0)) s"
ansible-playbook -i "$inventory" playbooks/verify.yml
echo
echo "What the scheduler says on each host (ollama ps):"
for h in $(seq 1 "$hosts"); do
  echo "--- kw-lab-$h"
  python -m lab ssh "kw-lab-$h" ollama ps
done
echo
echo "The lab is still running: 'make lab-down' removes it."
