# The two commands: `make test` (every test) and `make demo` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstalled when the dependencies change.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
CRD_DIRS := crds charts/flux-lora-operator/crds

.PHONY: help install test lint format crds generate run demo clean

help:
	@echo "make test    lint and run every test"
	@echo "make crds    regenerate the CRDs and the generated docs from the models"
	@echo "make run     run the operator against the current kubeconfig"
	@echo "make format  format and auto-fix lint"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[operator,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

crds generate: $(STAMP)
	$(BIN)/fluxlora-crd $(CRD_DIRS) --reference docs/api-reference.md
	$(BIN)/python -m fluxlora_operator.settings > docs/operator.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: $(STAMP)
	$(BIN)/fluxlora-operator

demo:
	@echo "make demo needs the local control plane, which is not in this version yet." >&2
	@echo "Meanwhile: 'make test' runs the operator end to end against a test API." >&2
	@exit 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
