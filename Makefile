# The two commands of this project:
#   make conformance   run the conformance suites (default: the offline cluster) -> reports/junit.xml
#   make test          the project's own tests (unit, then integration against the offline cluster)
# Everything else they need (virtualenv, Kubernetes binaries) is built on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: conformance test unit integration offline-aks lint typecheck check binaries bench venv clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

binaries: venv
	$(BIN)/gpu-conformance binaries

# every workload profile on the offline cluster; on a real cluster pick one:
#   make conformance PYTEST_ARGS="--backend attach --kubeconfig=PATH --workload tf-mnist"
WORKLOADS ?= all
conformance: binaries
	mkdir -p reports
	$(BIN)/pytest --workload $(WORKLOADS) $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -c tests/pytest.ini tests/unit $(PYTEST_ARGS)

integration: binaries
	$(BIN)/pytest -c tests/pytest.ini tests/integration $(PYTEST_ARGS)

test: unit offline-aks integration

# The AKS backend's tests (real Azure SDK clients, fake ARM transport) and its dry run,
# inside a network namespace with no network at all: proof that they contact nothing.
offline-aks: venv
	@if unshare -n true 2>/dev/null; then \
	  unshare -n $(BIN)/pytest -c tests/pytest.ini -q tests/unit/test_aks_janitor.py \
	    tests/unit/test_aks_provision.py tests/unit/test_aks_settings.py tests/unit/test_aks_plugin.py && \
	  unshare -n $(BIN)/gpu-conformance aks plan --aks-subscription 00000000-0000-0000-0000-000000000000 \
	    --aks-resource-group rg-dry --run-id dry > /dev/null && echo "AKS tests and plan: no network used"; \
	else echo "unshare -n not permitted here: AKS tests ran in 'make unit' with network present"; fi

# walk vs suite, fresh and kept runs, 200/1,000/2,000 nodes, wait reaction -> benchmarks/results.json
bench: binaries
	$(BIN)/python benchmarks/cluster_up.py
	$(BIN)/python benchmarks/speed.py

# the README's options and timeouts tables, from gpu_conformance/options.py and timeouts.py
docs: venv
	$(BIN)/python -m gpu_conformance.docs

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

check: lint typecheck

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache
