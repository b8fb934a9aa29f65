# The two commands: `make run` (the service on the embedded default) and
# `make test` (the whole suite). Both create .venv and install on first use.
#
# Python: the first of python3.13, python3.12, python3.11 and python3 on the PATH
# that runs (a pyenv shim for a version that is not selected is on the PATH but
# fails), or `make PYTHON=...`; older than 3.11 is refused. .venv is made again
# when it was made with another version.
#
# `make test-unit PYTHON=python3.11 VENV=.venv-3.11`: the tests that start no server
# process (marker `server`, set in tests/conftest.py), for a second Python beside the
# one the whole suite ran on; .ci/run does that when a second version is installed.
CANDIDATES := python3.13 python3.12 python3.11 python3
ifndef PYTHON
PYTHON := $(shell for p in $(CANDIDATES); do $$p -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)
endif
VENV ?= .venv
BIN := $(VENV)/bin

PY_CHECK := $(shell $(PYTHON) -c 'import sys; v = sys.version_info; print("%d.%d %s" % (v[0], v[1], v >= (3, 11)))' 2>/dev/null)
PY_VERSION := $(word 1,$(PY_CHECK))
ifneq ($(MAKECMDGOALS),clean)
ifeq ($(PY_CHECK),)
$(error claritycast needs Python 3.11 or newer: $(if $(PYTHON),$(PYTHON) does not run,none of $(CANDIDATES) runs here))
endif
ifneq ($(word 2,$(PY_CHECK)),True)
$(error claritycast needs Python 3.11 or newer; $(PYTHON) is $(PY_VERSION))
endif
endif

.PHONY: run test test-unit lint bench clean

$(VENV)/.python-$(PY_VERSION):
	@test "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = $(PY_VERSION) \
	  || { echo "$(VENV): Python $(PY_VERSION) ($(PYTHON))" && rm -rf $(VENV) \
	       && $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --upgrade pip; }
	@rm -f $(VENV)/.python-*
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.python-$(PY_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/claritycast up

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-unit: $(VENV)/.installed
	$(BIN)/pytest -m 'not server'

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .venv-* var .pytest_cache .ruff_cache

bench: $(VENV)/.installed
	$(BIN)/python -m bench.startup 5
	$(BIN)/python -m bench.store 2000
	$(BIN)/python -m bench.ingest 100 1000
	$(BIN)/python -m bench.broker_fetch
	$(BIN)/python -m bench.expiry 100 1000
	$(BIN)/python -m bench.big_series 20000 30
	$(BIN)/python -m bench.render
	$(BIN)/python -m bench.scale 200 200
	$(BIN)/python -m bench.failover 12 3
	$(BIN)/python -m bench.webpages 20 1000
