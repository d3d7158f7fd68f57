# slotguard: every target bootstraps what it needs (venv, Python and Node packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := npx --no-install cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test lint bench load local synth smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: lint synth
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for f in functions/*/handler.py; do $(BIN)/mypy "$$f" || exit 1; done

bench: $(STAMP)
	$(BIN)/python -m bench

# Locust, headless: the local stack (started for the run), or SLOTGUARD_API_URL with SLOTGUARD_TOKEN
# and SLOTGUARD_WEBHOOK_SECRET (bench/load.py). LOAD_USERS, LOAD_SECONDS, LOAD_BURST size it.
load: $(STAMP)
	$(BIN)/python -m bench.load

local: $(STAMP)
	$(BIN)/python -m slotguard_local

# Offline synth of both stages with cdk-nag (AwsSolutions; any unacknowledged finding fails the
# synth) and cfn-lint on the templates (errors fail; warnings are printed). synth_only=true: no
# identity provider is needed, the authorizer gets an issuer that never validates (not deployable).
synth: $(STAMP) $(NODE_STAMP)
	$(CDK) synth --quiet --no-notices --no-version-reporting -c stages=dev,prod -c synth_only=true -o cdk.out
	$(BIN)/cfn-lint --non-zero-exit-code error -- cdk.out/*.template.json

# The end-to-end suite against a deployment: SLOTGUARD_API_URL, SLOTGUARD_TOKEN and
# SLOTGUARD_WEBHOOK_SECRET from the environment (README, "Smoke test"; tests/e2e/remote.py).
smoke: $(STAMP)
	@test -n "$$SLOTGUARD_API_URL" -a -n "$$SLOTGUARD_TOKEN" -a -n "$$SLOTGUARD_WEBHOOK_SECRET" || \
		{ echo "make smoke: set SLOTGUARD_API_URL, SLOTGUARD_TOKEN and SLOTGUARD_WEBHOOK_SECRET (README, Smoke test)"; exit 2; }
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e

clean:
	rm -rf $(VENV) .local cdk.out node_modules
