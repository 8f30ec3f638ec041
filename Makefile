# dropzone — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .venv-tools
STAMP := $(VENV)/.installed
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: help venv tools check-java jvm-archive lint test demo bench package-spark clean lock

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

jvm-archive: $(STAMP) check-java  ## the local Spark driver's class data sharing archive (built once, ~40 s; its JVM then starts in half the time)
	$(BIN)/python -m dropzone.local.jvm

lint: $(STAMP)  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dropzone functions spark_app training

test: $(STAMP) $(TOOLS_STAMP) check-java jvm-archive lint  ## every test (lint first)
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest

demo: $(STAMP) check-java jvm-archive  ## the pipeline on generated data, locally (no AWS account, no Docker)
	$(BIN)/dropzone demo

bench: $(STAMP) $(TOOLS_STAMP) check-java jvm-archive  ## every benchmark (tens of minutes) → benchmarks/RESULTS.md + SECURITY.md; BENCH_ARGS=--quick
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

lock:  ## re-resolve requirements/*.in into the pinned locks
	rm -rf /tmp/dropzone-lock && $(PYTHON) -m venv /tmp/dropzone-lock
	/tmp/dropzone-lock/bin/pip install --quiet -r requirements/dev.in
	/tmp/dropzone-lock/bin/pip freeze | sort -f > requirements/dev.lock

package-spark: $(STAMP)  ## build/spark/main.py + build/spark/dropzone.zip (EMR Serverless entryPoint and --py-files)
	rm -rf build/spark
	$(BIN)/python -m spark_app.package build/spark

clean:  ## remove build outputs (keeps the venvs)
	rm -rf .aws-sam build dist .pytest_cache .mypy_cache .ruff_cache

# --- AWS: sam build (BuildMethod: makefile) and the template scanners -------------------------------------
.PHONY: sam-build scan build-IngestFunction build-JobFinishedFunction build-ModelTrainedFunction build-ReconcileFunction build-PublishAssetsFunction
# sam build copies only each function's CodeUri (functions/<dir>) to a scratch dir and runs `make build-<LogicalId>`
# here (Metadata WorkingDirectory: .) with ARTIFACTS_DIR set. Wheels are Lambda's platform (arm64, CPython 3.11),
# installed with --no-deps from fully pinned lists; pip's cache makes rebuilds fast. boto3/botocore come with the
# runtime and are not bundled.
# Lambda arm64; benchmarks/bundles.py builds an x86_64 twin (same pins) to time cold imports on this machine.
LAMBDA_PLATFORM ?= manylinux2014_aarch64
LAMBDA_STRIP ?= $(shell command -v llvm-strip || command -v aarch64-linux-gnu-strip)
LAMBDA_PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --only-binary=:all: \
	--platform $(LAMBDA_PLATFORM) --implementation cp --python-version 3.11 --target
# The shared package without what only runs on a laptop (local runtime, CLI commands).
BUNDLE_DROPZONE = tar -C $(CURDIR) --exclude=__pycache__ --exclude=dropzone/local --exclude=dropzone/commands \
	--exclude=dropzone/cli.py --exclude=dropzone/generate.py -cf - dropzone | tar -C "$(ARTIFACTS_DIR)" -xf -

# A function's requirements.txt with the pins of requirements/lambda-overrides.txt substituted (platform wheels).
lambda_requirements = awk 'NR == FNR { if ($$1 ~ /==/) { split($$1, p, "=="); o[tolower(p[1])] = $$1 } next } \
	{ n = $$1; sub(/[=<>~!;[].*/, "", n); if (tolower(n) in o) print o[tolower(n)]; else print }' \
	requirements/lambda-overrides.txt $(1)

define lambda_bundle
	@test -n "$(ARTIFACTS_DIR)" || { echo "error: ARTIFACTS_DIR is not set (run through sam build)"; exit 2; }
	$(LAMBDA_PIP) "$(ARTIFACTS_DIR)" -r requirements/lambda.txt \
		$(if $(wildcard functions/$(1)/requirements.txt),-r <($(call lambda_requirements,functions/$(1)/requirements.txt)))
	@# Never loaded at run time: headers, static libs, tests, Cython sources, Arrow Flight, link-time copies of
	@# libraries (only the .so.<major> sonames are NEEDED), numpy's f2py/distutils (~40 MB with pyarrow + numpy).
	cd "$(ARTIFACTS_DIR)" && rm -rf bin pyarrow/include pyarrow/tests pyarrow/src pyarrow/*.pxd pyarrow/*.pyx \
		pyarrow/*flight* pyarrow/_pyarrow_cpp_tests* pyarrow/libarrow*.so pyarrow/libparquet*.so pyarrow/lib*.so.*.*.* \
		numpy/f2py numpy/distutils numpy/_core/include numpy/_core/lib numpy/_pyinstaller numpy/tests
	if [ -d "$(ARTIFACTS_DIR)/numpy" ]; then find "$(ARTIFACTS_DIR)/numpy" -depth -type d -name tests -exec rm -rf {} +; fi
	@# pyarrow's libraries ship with symbol tables (~23 MB); dynamic symbols stay. Only pyarrow: libraries that
	@# auditwheel patched (numpy, numpy.libs) break when stripped (misaligned load segments). Optional: needs a
	@# strip that reads aarch64 ELF (llvm-strip); without one the bundle is just larger.
	$(if $(LAMBDA_STRIP),if [ -d "$(ARTIFACTS_DIR)/pyarrow" ]; then \
		find "$(ARTIFACTS_DIR)/pyarrow" -type f -name '*.so*' -exec $(LAMBDA_STRIP) --strip-unneeded {} +; fi,\
		@echo "note: llvm-strip not found, pyarrow's libraries are not stripped")
	$(BUNDLE_DROPZONE)
	tar -C functions/$(1) --exclude=__pycache__ --exclude=requirements.txt --exclude=__init__.py -cf - . \
		| tar -C "$(ARTIFACTS_DIR)" -xf -
	@# /var/task is read-only: ship bytecode that is valid whatever the zip does to file times.
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)"
endef

build-IngestFunction:
	$(call lambda_bundle,ingest)
build-JobFinishedFunction:
	$(call lambda_bundle,job_finished)
build-ModelTrainedFunction:
	$(call lambda_bundle,model_trained)
build-ReconcileFunction:
	$(call lambda_bundle,reconcile)
build-PublishAssetsFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "error: ARTIFACTS_DIR is not set (run through sam build)"; exit 2; }
	cp functions/publish_assets/app.py "$(ARTIFACTS_DIR)/"
	$(PYTHON) -m functions.publish_assets.build_assets --root $(CURDIR) --out "$(ARTIFACTS_DIR)/assets"

# The build's python3.11 must be .venv's: building PublishAssetsFunction imports dropzone.contract (PyYAML) and
# zips the pinned PyYAML into the Spark job's --py-files.
sam-build: $(STAMP) $(TOOLS_STAMP)  ## sam build: the Lambda bundles in .aws-sam/build (no Docker; .venv's python3.11)
	PATH="$(CURDIR)/$(BIN):$$PATH" SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam build --parallel

scan: $(TOOLS_STAMP)  ## sam validate --lint, cfn-lint and checkov on template.yaml
	SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint
	$(TOOLS)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
