# slotguard: every target bootstraps what it needs (venv, Python and Node packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The CDK CLI (pinned in package.json). Not a switch: `CDK` is `make local`'s LocalStack deploy switch.
CDK_CLI := npx --no-install cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test lint bench load local synth smoke clean localstack-venv test-localstack layer-lock

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

# The Lambda layer's lock (layers/requirements.lock): every runtime dependency, transitive ones
# included, pinned with its wheel's sha256 for the layer's platform (infra/layer_lock.py). Run it
# after changing a runtime dependency in pyproject.toml (a test fails until the lock matches).
layer-lock: $(STAMP)
	$(BIN)/python -m infra.layer_lock

bench: $(STAMP)
	$(BIN)/python -m bench

# LocalStack's runtime (localstack-core 2026.3.0 needs Python >= 3.13) in .localstack-venv, never in
# .venv; its whole dependency tree is pinned by local/localstack-constraints.txt.
LS_VENV := .localstack-venv
LS_STAMP := $(LS_VENV)/.installed
LOCALSTACK_PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) \
	$(shell command -v python3.13 2>/dev/null))
$(LS_STAMP): local/localstack-constraints.txt
	@test -n "$(LOCALSTACK_PYTHON)" || { echo "LocalStack needs Python 3.13: set LOCALSTACK_PYTHON"; exit 2; }
	test -x $(LS_VENV)/bin/python || $(LOCALSTACK_PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -qq -c local/localstack-constraints.txt 'localstack-core[runtime]==2026.3.0'
	touch $(LS_STAMP)

# Locust, headless: the local stack (started for the run), or SLOTGUARD_API_URL with SLOTGUARD_TOKEN
# and SLOTGUARD_WEBHOOK_SECRET (bench/load.py). LOAD_USERS, LOAD_SECONDS, LOAD_BURST size it.
load: $(STAMP)
	$(BIN)/python -m bench.load

localstack-venv: $(LS_STAMP)

# `make local` runs against moto's server; `make local AWS=localstack` against LocalStack's
# open-source runtime (README, "Testing with LocalStack"), installed into its own venv on first use.
AWS ?= moto
ifeq ($(filter $(AWS),moto localstack),)
$(error AWS must be moto or localstack, not '$(AWS)')
endif
# CDK=1 (with AWS=localstack): first `cdklocal deploy` the CDK app's LocalStack stage into it
# (infra/localstack_stack.py), then run on the deployed queues. CDK=0 or unset: no deploy.
CDK ?=
ifeq ($(filter $(CDK),0 1),)
ifneq ($(CDK),)
$(error CDK must be 1 or 0 (or unset), not '$(CDK)')
endif
endif
ifeq ($(CDK)$(AWS),1moto)
$(error CDK=1 deploys into LocalStack: use it with AWS=localstack)
endif
local: $(STAMP) $(if $(filter localstack,$(AWS)),$(LS_STAMP) $(if $(filter 1,$(CDK)),$(NODE_STAMP)))
	SLOTGUARD_AWS=$(AWS) SLOTGUARD_LOCALSTACK_CDK=$(filter 1,$(CDK)) $(BIN)/python -m slotguard_local

# The end-to-end suite against the LocalStack-backed local stack (.ci/run calls it after make test).
test-localstack: $(STAMP) $(LS_STAMP) $(NODE_STAMP)
	SLOTGUARD_AWS=localstack $(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_local_stack.py \
		tests/e2e/test_readme.py tests/e2e/test_localstack.py tests/e2e/test_localstack_cdk.py

# Offline synth of the stages (dev, prod, and localstack: infra/localstack_stack.py) with cdk-nag
# (AwsSolutions; any unacknowledged finding fails the synth) and cfn-lint on the templates (errors
# fail; warnings are printed). synth_only=true: no
# identity provider is needed, the authorizer gets an issuer that never validates (not deployable).
synth: $(STAMP) $(NODE_STAMP)
	$(CDK_CLI) synth --quiet --no-notices --no-version-reporting -c stages=dev,prod,localstack -c synth_only=true -o cdk.out
	$(BIN)/cfn-lint --non-zero-exit-code error -- cdk.out/*.template.json

# The end-to-end tests over HTTP (tests/e2e/test_local_stack.py) against a deployment: SLOTGUARD_API_URL, SLOTGUARD_TOKEN and
# SLOTGUARD_WEBHOOK_SECRET from the environment (README, "Smoke test"; tests/e2e/remote.py).
smoke: $(STAMP)
	@test -n "$$SLOTGUARD_API_URL" -a -n "$$SLOTGUARD_TOKEN" -a -n "$$SLOTGUARD_WEBHOOK_SECRET" || \
		{ echo "make smoke: set SLOTGUARD_API_URL, SLOTGUARD_TOKEN and SLOTGUARD_WEBHOOK_SECRET (README, Smoke test)"; exit 2; }
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_local_stack.py

clean:
	rm -rf $(VENV) $(LS_VENV) .local cdk.out node_modules .layer-build
