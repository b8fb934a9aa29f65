# The two commands: `make run` (the service on the embedded default) and
# `make test` (the whole suite). Both create .venv and install on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "claritycast needs Python 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/claritycast up

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

bench: $(VENV)/.installed
	$(BIN)/python -m bench.startup 5
	$(BIN)/python -m bench.store 2000
	$(BIN)/python -m bench.ingest 100 1000
	$(BIN)/python -m bench.big_series 20000 30
	$(BIN)/python -m bench.render
	$(BIN)/python -m bench.scale 200 200
	$(BIN)/python -m bench.failover 12 3
