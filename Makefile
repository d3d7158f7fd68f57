# slotguard: every target bootstraps what it needs (venv, Python and Node packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test test-fast lint bench local synth clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for f in functions/*/handler.py; do $(BIN)/mypy "$$f" || exit 1; done

bench: $(STAMP)
	$(BIN)/python -m bench

local: $(STAMP)
	$(BIN)/python -m slotguard_local

clean:
	rm -rf $(VENV) .local cdk.out node_modules
