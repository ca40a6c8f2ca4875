# Two entry points for a fresh machine (see README "Quick start"):
#   make lab   - create .venv, install everything, open JupyterLab on notebooks/
#   make test  - create .venv (+ .venv457, a transformers 4.57 environment for the cross-version check),
#                install everything, run the whole test suite with strict nbval (what CI runs)
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

# A second environment with transformers 4.57: an export must load there with identical logits.
VENV457 := .venv457
$(VENV457)/.installed:
	$(PYTHON) -m venv $(VENV457)
	$(VENV457)/bin/pip install --quiet torch==2.13.0 transformers==4.57.6 tokenizers==0.22.2 safetensors==0.8.0 \
		numpy==2.4.6 pillow==13.0.0 einops==0.8.2
	touch $@

lab: setup
	$(BIN)/jupyter lab notebooks/

test: setup $(VENV457)/.installed
	$(BIN)/pytest --nbval -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow" tests/
