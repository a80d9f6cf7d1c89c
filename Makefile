# The two commands of this project:
#   make conformance   run the conformance suites (default: the offline cluster) -> reports/junit.xml
#   make test          the project's own tests (unit, then integration against the offline cluster)
# Everything else they need (virtualenv, Kubernetes binaries) is built on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: conformance test unit integration lint typecheck check binaries venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

binaries: venv
	$(BIN)/gpu-conformance binaries

conformance: binaries
	mkdir -p reports
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -c tests/pytest.ini tests/unit $(PYTEST_ARGS)

integration: binaries
	$(BIN)/pytest -c tests/pytest.ini tests/integration $(PYTEST_ARGS)

test: unit integration

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

check: lint typecheck

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache
