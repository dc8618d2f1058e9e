# keepwarm: the project's interface. Everything runs as root on Debian/Ubuntu (the lab boots systemd-nspawn hosts).
# VENV can point at an existing virtual environment; by default one is made in .venv.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
LAB_HOSTS ?= 3
APT_PACKAGES := systemd-container debootstrap openssh-client iproute2 procps util-linux python3-venv python3-dev make git
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# From-checkout development: keepwarm.ollama by FQCN through collections/ (links to collection/ and roles/). Never in
# ansible.cfg, which AWX and users of the installed artifact read.
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_HOME := /var/lib/keepwarm-lab/ansible-home
export PATH := $(BIN):$(PATH)

.PHONY: help deps apt venv demo test lint unit sanity core-matrix molecule collection agent gateway bench bench-smoke lab-up lab-down lab-status test-real-ollama clean

help:
	@echo "make demo        install, boot the lab (3 systemd hosts + 1 Docker host), converge it with site.yml, print the fleet table"
	@echo "make test        everything .ci/run runs: lint, unit + integration + lab tests, sanity, molecule"
	@echo "make lint        ruff, yamllint, ansible-lint"
	@echo "make collection  build dist/keepwarm-ollama-<version>.tar.gz"
	@echo "make agent       build dist/ollama-heartbeat.pyz (reproducible zipapp)"
	@echo "make gateway     build dist/keepwarm-gateway.pyz (reproducible zipapp)"
	@echo "make bench       run the benchmarks in bench/ and write bench/results/"
	@echo "make lab-up / lab-down / lab-status   the local systemd-nspawn fleet"
	@echo "make test-real-ollama KEEPWARM_OLLAMA_URL=http://gpu-host:11434   module tests against a real server"

deps: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lab-up: deps
	$(PY) -m lab up $(LAB_HOSTS)

lab-down:
	$(PY) -m lab down

lab-status:
	$(PY) -m lab status

demo: deps agent
	tools/demo.sh

test: deps
	tools/test.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(PY) awx/install_awx_collection.py --dest build/awx-collections
	$(PY) tools/install_community_docker.py --dest build/docker-collections
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/collections:$(CURDIR)/build/awx-collections:$(CURDIR)/build/docker-collections $(BIN)/ansible-lint

unit: venv
	$(BIN)/pytest -m "not lab" -n 2

sanity: venv
	tools/sanity.sh

core-matrix: venv
	$(PY) tools/core_matrix.py

collection: venv agent
	$(PY) tools/build_collection.py --out dist

agent: venv
	$(PY) tools/build_zipapp.py --out dist/ollama-heartbeat.pyz

gateway: venv
	$(PY) tools/build_gateway_zipapp.py --out dist/keepwarm-gateway.pyz

bench: venv agent
	tools/bench.sh

bench-smoke: venv agent
	tools/bench.sh --smoke

test-real-ollama: venv
	@test -n "$(KEEPWARM_OLLAMA_URL)" || { echo "set KEEPWARM_OLLAMA_URL=http://host:11434 (a real Ollama server)"; exit 2; }
	KEEPWARM_OLLAMA_URL=$(KEEPWARM_OLLAMA_URL) $(BIN)/pytest -m real_ollama tests/collection

clean:
	rm -rf dist build .pytest_cache
