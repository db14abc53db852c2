# genjob developer entry points. `make help` lists them.
# Everything runs from the project's one virtual environment, .venv/, made on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
# pyproject.toml states ranges; requirements.lock (made by `make lock` with this uv) pins every
# distribution exactly, so every machine and CI install the same versions.
UV_VERSION := 0.13.8

-include hack/cluster/cluster.mk
-include hack/chart.mk
-include hack/quickstart.mk

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing genjob and its locked dependencies into $(VENV) (first run downloads torch: a few minutes)"
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: venv
venv: $(STAMP) ## create .venv and install genjob with every locked dependency (requirements.lock)

.PHONY: lock
lock: ## re-resolve requirements.lock from pyproject.toml's ranges (after changing a dependency)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --custom-compile-command "make lock" --quiet -o requirements.lock

.PHONY: redis-server
redis-server: ## install redis-server from Debian if it is missing
	@command -v redis-server >/dev/null || { echo "==> installing redis-server (apt)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq redis-server >/dev/null; }

.PHONY: lint
lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check genjob
	$(VENV)/bin/mypy

.PHONY: crd
crd: venv ## regenerate the CRD YAML from genjob/jobspec.py
	$(PY) -m genjob.crd

.PHONY: externalscaler-stubs
externalscaler-stubs: venv ## regenerate the gRPC stubs of KEDA's externalscaler.proto (operator push trigger)
	$(PY) hack/externalscaler_stubs.py

.PHONY: test
test: venv redis-server test-deps lint ## set up everything (venv, redis-server, cluster binaries), lint, run every test
	$(PY) -m pytest

# The cluster tier needs binaries built from Go modules (cached in ~/.cache/genjob/tools).
.PHONY: test-deps
test-deps: $(if $(wildcard hack/cluster/cluster.mk),tools,)
