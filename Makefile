# slotguard: every target bootstraps what it needs (venv, Python and Node packages).
# `make help` lists the targets and the switches; each switch has one name, used for nothing else.
#
#> local            the whole system on this machine: API on 127.0.0.1:$SLOTGUARD_PORT (3000), Ctrl-C stops it
#> test             make lint, make synth, then the whole pytest suite (real PostgreSQL, moto, the local stack)
#> test-localstack  the end-to-end suite against the LocalStack-backed local stack
#> test-readme      every command the README shows, run as typed (make local in its three forms, ...)
#> test-rollback    the previous release's end-to-end suite on the newest schema (README, Rollback)
#> mutation-sql     every SQL mutant applied alone must fail the database tests (docs/testing.md)
#> mutation         mutmut over the Python layer (MUTATE), the fast tests calling each mutant; score and survivors
#> synth            offline cdk synth of dev, prod and the LocalStack stage, with cdk-nag and cfn-lint
#> smoke            the end-to-end suite against a deployment (SLOTGUARD_API_URL, _TOKEN, _WEBHOOK_SECRET)
#> lint             ruff check, ruff format --check, mypy
#> bench            the benchmarks, each figure beside its same-run baseline and ratio
#> layer-lock       regenerate layers/requirements.lock (every layer dependency pinned with its hash)
#> load             locust, headless: the booking and webhook mix, then one contested slot
#> console-vendor   copy the charting library (Chart.js, pinned in package-lock.json) into the console's files
#> venv             .venv with everything (make local alone installs less: the `local` extra)
#> localstack-venv  LocalStack's runtime in .localstack-venv (Python 3.13)
#> clean            remove .venv, .localstack-venv, .local, cdk.out, node_modules
#> help             this list
#
#= AWS=moto|localstack      make local: which AWS emulator (default moto)
#= CDK=1|0                  make local AWS=localstack: 1 deploys the CDK app's LocalStack stage into it first
#= SLOTGUARD_PORT=3000      make local: the API's port on 127.0.0.1
#= SLOTGUARD_HOME=.local    make local: the state folder (database, stack.json, logs, metrics.jsonl)
#= SLOTGUARD_MAX_CONTAINERS=N  make local: at most N containers per function (default: as deployed)
#= SLOTGUARD_CLEANUP_EVERY_S=3600  make local: how often the retention cleanup runs
#= SLOTGUARD_WORKER_STATE=lambda  make local: queue-health reads the worker from moto's Lambda API (default: file)
#= DATABASE_URL=...         make local, make test, make bench: another PostgreSQL (superuser-capable URL)
#= AWS_ENDPOINT_URL=...     make local: another AWS endpoint instead of moto's server
#= LOCALSTACK_PYTHON=...    make local AWS=localstack: the Python 3.13 for .localstack-venv
#= PYTHON=python3           the Python that creates .venv
#= MUTATE=slotguard.api,slotguard.services,slotguard.db,slotguard.aws  make mutation: modules, packages, mutant names or `pending`
#= MUTATION_CHILDREN=4     make mutation: mutants tested side by side (default: twice the cores)
#= SLOTGUARD_API_URL=...    make smoke, make load: a deployment's API (with SLOTGUARD_TOKEN, SLOTGUARD_WEBHOOK_SECRET)
#= SLOTGUARD_OTHER_TOKEN=... make smoke: another org's token (tenant isolation)
#= SLOTGUARD_WEBHOOK_URL=... make smoke: the stack's WebhookUrl (CloudFront) where webhooks are posted
#= SLOTGUARD_FUZZ_SECONDS=20  make test: the random-seed schemathesis budget
#= SLOTGUARD_MODEL_EXAMPLES=30  make test: examples of the booking model test
#= LOAD_USERS=50            make load: users of the mix
#= LOAD_SECONDS=60          make load: length of the mix
#= LOAD_BURST=1000          make load: users at one contested slot
#= LOAD_HOT_SLOTS=5         make load: contested slots the booking mix shares
#= BENCH_N=1000             make bench: bookings per booking figure
#= BENCH_SLOTS=4000         make bench: distinct slots for free bookings
#= BENCH_PROCESSES=32       make bench: concurrent processes at one slot
#= BENCH_ROUNDS=3           make bench: rounds of the booking figures
#= BENCH_BATCHES=100        make bench: webhook batches
#= BENCH_REQUESTS=300       make bench: receiver requests
#= BENCH_COLD_RUNS=9        make bench: cold imports per function
#= BENCH_LOG_REQUESTS=200   make bench: requests per function for the bytes logged per request
#= BENCH_SEARCHES=50        make bench: month-long slot searches of the rules figure
#= BENCH_ONLY=booking,rules,webhooks,cold,logs  make bench: only these groups
#= BENCH_OUT=file           make bench: also write the table there
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.installed-local
NODE_STAMP := node_modules/.installed
# The CDK CLI (pinned in package.json). Not a switch: `CDK` is `make local`'s LocalStack deploy switch.
CDK_CLI := npx --no-install cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: console-vendor help venv test lint bench load local synth smoke clean localstack-venv test-localstack test-readme test-rollback mutation-sql mutation layer-lock

help:
	@echo "make TARGET [SWITCH=value ...]"
	@echo; echo "targets:"; sed -n 's/^#> /  /p' $(firstword $(MAKEFILE_LIST))
	@echo; echo "switches (make variables or environment variables; default after =):"
	@sed -n 's/^#= /  /p' $(firstword $(MAKEFILE_LIST))

# Everything (tests, CDK, load tests). make local needs only the `local` extra (a third of it).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq -e '.[dev]'
	touch $(STAMP) $(LOCAL_STAMP)

$(LOCAL_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq -e '.[local]'
	touch $(LOCAL_STAMP)

venv: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The console ships Chart.js as a committed file, copied from the pinned npm package (no CDN, no build
# step for a user); tests/test_console.py checks the committed copy is the locked version's.
CONSOLE_VENDOR := functions/console/static/chart.umd.min.js
console-vendor: $(NODE_STAMP)
	cp node_modules/chart.js/dist/chart.umd.min.js $(CONSOLE_VENDOR)

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
local: $(LOCAL_STAMP) $(if $(filter localstack,$(AWS)),$(LS_STAMP) $(if $(filter 1,$(CDK)),$(NODE_STAMP)))
	SLOTGUARD_AWS=$(AWS) SLOTGUARD_LOCALSTACK_CDK=$(filter 1,$(CDK)) $(BIN)/python -m slotguard_local

# The end-to-end suite against the LocalStack-backed local stack (.ci/run calls it after make test).
test-localstack: $(STAMP) $(LS_STAMP) $(NODE_STAMP)
	SLOTGUARD_AWS=localstack $(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_local_stack.py \
		tests/e2e/test_readme.py tests/e2e/test_localstack.py tests/e2e/test_localstack_cdk.py

# Every command the README shows, run as typed (tests/readme/): `make local` in its three forms with
# the walkthrough against each and Ctrl-C, make synth, make smoke and make load against the running
# stack, make bench at a small size, make lint, and the README's python -m commands. .ci/run runs it.
test-readme: $(STAMP) $(LS_STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m readme tests/readme

# Rollback, proven: the previous release (the commit before the newest change to the migrations or
# the SQL functions, in a git worktree) passes its own end-to-end suite on the newest schema.
test-rollback: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m rollback tests/rollback

# Mutation testing of the SQL contract: each mutant in tests/mutation/sql_mutants.py (a lock dropped,
# an overlap test weakened, a policy opened, ...) applied alone to a scratch copy, the database tests
# run against it; every mutant must be killed. Not part of make test (about an hour); docs/testing.md.
mutation-sql: $(STAMP)
	$(BIN)/python -m tests.mutation.sql_mutants

# Mutation testing of the Python layer with mutmut ([tool.mutmut] in pyproject.toml): each mutant of
# a function in slotguard.api, .services, .db or .aws is tested by the fast tests that call that
# function (tests/mutation/python_mutants.py). MUTATE limits it (`MUTATE=slotguard.aws`, a module,
# or mutant names); `MUTATE=pending` runs only the mutants without a verdict (takes a run up again).
# Prints killed / mutants and every survivor's diff; exits 1 if one survived. Not part of make test
# (hours for the whole layer); results in docs/testing.md.
MUTATE ?= slotguard.api,slotguard.services,slotguard.db,slotguard.aws
mutation: $(STAMP)
	$(BIN)/python -m tests.mutation.python_mutants $(if $(MUTATION_CHILDREN),--children $(MUTATION_CHILDREN)) "$(MUTATE)"

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
