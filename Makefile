# Every target creates .venv on first use and installs the project with its test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench bench-quick lint clean protos conformance

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make conformance: the pinned MCP conformance suite (npm) into .conformance/; says why and skips without node/npm.
conformance: $(STAMP)
	$(BIN)/python -m tests.support.conformance install

## make test: the whole suite, end-to-end tests with real Envoy included.
test: $(STAMP) conformance
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## make test-fast: skip the slow end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow' $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m tests.support.demo

## make bench: one JSON report of the push path at mesh scale and of the tools/list filter through Envoy (about 15 minutes on 2 cores); bench-quick: 2 minutes.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

lint: $(STAMP)
	$(BIN)/ruff check controlplane tests

## make protos: regenerate controlplane/protos/ from protos/*.proto (the generator gets its own .venv-protos).
protos:
	$(PYTHON) protos/generate.py

clean:
	rm -rf $(VENV) .venv-protos .pytest_cache .hypothesis .conformance
