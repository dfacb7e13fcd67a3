# hubspot-oauth: the two commands of the README, from a fresh clone.
#   make run    the quickstart on the embedded local HubSpot (http://localhost:3000)
#   make test   the whole test suite (installs what it needs first)
#   make bench  the benchmarks (writes benchmarks/results/)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint clean

$(BIN)/python:
	@echo "Creating $(VENV) and installing dependencies (about a minute the first time)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files so a second `make run` starts at once; pyproject.toml changes re-install.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing dependencies (about a minute)…"
	$(BIN)/pip install --quiet -e '.[server]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "Installing the test dependencies (a few minutes the first time)…"
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/hubspot-oauth quickstart

test: $(VENV)/.installed-dev
	@bash scripts/test-prerequisites.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	@bash scripts/bench-prerequisites.sh
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist .pytest_cache test-artifacts
