# Two entry points for a fresh machine (see README "Quick start"):
#   make lab   - create .venv, install everything, open JupyterLab on notebooks/
#   make test  - create .venv, install everything, run the whole test suite (what CI runs)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lab test test-fast

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab notebooks/

test: setup
	$(BIN)/pytest --nbval -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow" tests/
