# dropzone — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .venv-tools
STAMP := $(VENV)/.installed
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: help venv tools check-java lint test demo bench package-spark clean lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found on PATH (dropzone needs Python 3.11, the Lambda runtime)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(STAMP)  ## create .venv from the pinned lock (done by the other targets)

$(TOOLS_STAMP): requirements/tools.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found on PATH"; exit 2; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r requirements/tools.lock
	@touch $@

tools: $(TOOLS_STAMP)  ## deploy tooling (aws-sam-cli, cfn-lint, checkov, sagemaker SDK) in its own venv

check-java:
	@command -v java >/dev/null || { echo "error: Java 17 is required for Spark (install openjdk-17-jre-headless)"; exit 2; }
	@java -version 2>&1 | head -1 | grep -Eq '"17\.' || { echo "error: Java 17 is required for Spark 4.1, found: $$(java -version 2>&1 | head -1)"; exit 2; }

lint: $(STAMP)  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dropzone functions spark_app training

test: $(STAMP) $(TOOLS_STAMP) check-java lint  ## every test (lint first)
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest

demo: $(STAMP) check-java  ## the pipeline on generated data, locally (no AWS account, no Docker)
	$(BIN)/dropzone demo

lock:  ## re-resolve requirements/*.in into the pinned locks
	rm -rf /tmp/dropzone-lock && $(PYTHON) -m venv /tmp/dropzone-lock
	/tmp/dropzone-lock/bin/pip install --quiet -r requirements/dev.in
	/tmp/dropzone-lock/bin/pip freeze | sort -f > requirements/dev.lock

clean:  ## remove build outputs (keeps the venvs)
	rm -rf .aws-sam build dist .pytest_cache .mypy_cache .ruff_cache
