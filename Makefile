# Loopstack: every target installs what it needs first (idempotent, fast when already done).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

PYTHON ?= python3
TOOLS := $(CURDIR)/.tools
UV_VERSION := 0.13.8
UV := $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/uv/bin/uv)
VENV_STAMP := .venv/.synced
DRIFT_DIR := platform/drift-runtime
DRIFT_STAMP := $(DRIFT_DIR)/.venv/.synced
BUNDLE := platform/loopstack/bundled
MODEL ?= bike-demand
export PATH := $(TOOLS)/bin:$(PATH)

.PHONY: help install demo test bench lint up down clean drift-env system-deps readme k8s-tools charts bundle dist

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(TOOLS)/uv/bin/uv:
	@echo "installing uv $(UV_VERSION) into $(TOOLS)/uv"
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

$(DRIFT_STAMP): $(DRIFT_DIR)/pyproject.toml $(DRIFT_DIR)/uv.lock | $(UV)
	cd $(DRIFT_DIR) && $(UV) sync --frozen
	@touch $@

install: $(VENV_STAMP) ## Install the main environment (uv sync --frozen)

drift-env: $(DRIFT_STAMP) ## Install the drift runtime's own environment (alibi-detect 0.11.4)

system-deps: ## Install system packages the tests use (PostgreSQL server), when root
	@bash .ci/system-deps.sh

k8s-tools: ## Install helm, kubectl, promtool and checkov into .tools/ (chart and alert tests)
	@bash .ci/k8s-tools.sh

charts: install ## Regenerate the chart's Argo workflows and Grafana dashboards
	$(UV) run python charts/generate.py

demo: install drift-env ## Replay 2011 through a stack of its own: the closed loop and its report (MODEL=bike-demand)
	$(UV) run python -m loopstack.demo --model $(MODEL)

test: install drift-env system-deps k8s-tools ## Run the whole suite: layers, lint, types, tests
	$(UV) run lint-imports
	$(UV) run ruff check platform/loopstack tests bench charts $(DRIFT_DIR)/src $(DRIFT_DIR)/tests
	$(UV) run mypy
	cd $(DRIFT_DIR) && $(UV) run --frozen pytest tests -q
	$(UV) run pytest

lint: install ## ruff + mypy on platform/loopstack
	$(UV) run ruff check platform/loopstack tests bench charts $(DRIFT_DIR)/src $(DRIFT_DIR)/tests
	$(UV) run ruff format --check platform/loopstack
	$(UV) run mypy

bench: install drift-env system-deps ## Measure performance as ratios against in-run baselines
	$(UV) run python -m bench

up: install ## Start the embedded stack
	$(UV) run loopstack up

down: install ## Stop the embedded stack
	$(UV) run loopstack down

clean: ## Stop the stack and remove state, caches and environments
	-[ -x .venv/bin/loopstack ] && .venv/bin/loopstack down
	-[ -x .venv/bin/loopstack ] && LOOPSTACK_STATE_DIR=.loopstack-demo .venv/bin/loopstack down
	rm -rf .loopstack .loopstack-demo .venv $(DRIFT_DIR)/.venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache bench/results reports dist

bundle: | $(UV) ## Link the top-level pipelines and the drift runtime (sources, lock) into the package
	cd $(DRIFT_DIR) && $(UV) export --quiet --frozen --no-dev --no-emit-project --no-header -o requirements.txt
	rm -f $(BUNDLE)/pipelines/*.py $(BUNDLE)/drift-runtime/src/loopstack_drift/*.py
	mkdir -p $(BUNDLE)/pipelines $(BUNDLE)/drift-runtime/src/loopstack_drift
	for f in pipelines/*.py; do ln -sfn ../../../../$$f $(BUNDLE)/pipelines/; done
	for f in pyproject.toml uv.lock requirements.txt PROTOCOL.md; do \
		ln -sfn ../../../drift-runtime/$$f $(BUNDLE)/drift-runtime/$$f; done
	for f in $(DRIFT_DIR)/src/loopstack_drift/*.py; do \
		ln -sfn ../../../../../drift-runtime/src/loopstack_drift/$$(basename $$f) $(BUNDLE)/drift-runtime/src/loopstack_drift/; done

dist: bundle ## Build the sdist and the wheel into dist/ (pipelines and drift runtime inside)
	rm -rf dist
	$(UV) build --out-dir dist
	@ls dist

readme: install ## Regenerate the README's configuration table from the settings model
	$(UV) run python -m loopstack.core.settings_doc README.md
