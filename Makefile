# Roost — one entry point for people and CI.
#   make demo   the quickstart on the embedded default (local control plane + operator + real data)
#   make test   lint, types, layering contracts, CRD drift, unit + integration + e2e tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv lint types contracts crds crds-check prometheus unit integration e2e test demo demo-canary demo-drift down

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

lint: venv
	$(BIN)/ruff check operator tests bench

types: venv
	$(BIN)/mypy

contracts: venv
	$(BIN)/lint-imports

crds: venv
	$(BIN)/roost crds

crds-check: venv
	$(BIN)/roost crds --check

unit: venv
	$(BIN)/pytest -q tests/unit

# the canary's Prometheus provider is tested against a real Prometheus: built once (~12 min), then cached
prometheus: venv
	@$(BIN)/python -c "from roost.devcluster import prometheus; print('prometheus:', prometheus.ensure())"

integration: venv prometheus
	$(BIN)/pytest -q tests/integration

e2e: venv
	$(BIN)/pytest -q tests/e2e

test: venv lint types contracts crds-check prometheus
	$(BIN)/pytest -q -p no:cacheprovider tests

demo: venv
	$(BIN)/roost demo

demo-canary: venv
	$(BIN)/roost demo canary

demo-drift: venv
	$(BIN)/roost demo drift

down: venv
	$(BIN)/roost demo --down
