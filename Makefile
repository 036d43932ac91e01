# Two commands on a fresh machine: `make demo` runs the product, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Tests and targets read seaborn's diamonds from the shared copy when it is there (no internet
# on the build machines); otherwise seaborn downloads it as usual.
SHARED_SEABORN := $(abspath ../shared/data/seaborn)
ifeq ($(origin SEABORN_DATA), undefined)
  ifneq ($(wildcard $(SHARED_SEABORN)/diamonds.csv),)
    export SEABORN_DATA := $(SHARED_SEABORN)
  endif
endif
export MODEL_DIR ?= artifacts

.PHONY: setup tools mlserver lint test test-all soak demo train bench clean screenshot

setup: $(STAMP)

# Re-installs only when a requirements file changes: a second `make setup` installs nothing.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The real MLServer (tests/integration/test_mlserver.py and the monitor's MLServer tests) in its own
# venv: its ~500 MB of FastAPI, gRPC and OpenTelemetry stay out of the product's (requirements-mlserver.txt).
MLSERVER_VENV := .venv-mlserver
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed
mlserver: $(MLSERVER_STAMP)
$(MLSERVER_STAMP): requirements-mlserver.txt
	test -d $(MLSERVER_VENV) || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-mlserver.txt
	touch $@

# Prometheus, Alertmanager, promtool and amtool, and Chromium for the page's browser tests, from
# Debian (the tests run them for real); installs only what is missing, needs root or sudo.
tools:
	bash scripts/install-observability.sh
	bash scripts/install-chromium.sh

$(MODEL_DIR)/model.joblib: | $(STAMP)
	$(PY) -m scorer train

train: setup
	$(PY) -m scorer train

# ruff's checks and its format check (settings in pyproject.toml); `ruff format .` fixes the layout.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup tools mlserver lint
	$(PY) -m pytest -m "not slow and not soak"

test-all: setup tools mlserver
	$(PY) -m pytest -m "not soak"

# Sustained load: 5,000 records/s for 5 minutes through producer -> scorer -> monitor
# (SOAK_SECONDS, SOAK_RATE change it); the numbers go to soak-report.json.
soak: setup
	$(PY) -m pytest -m soak -s tests/soak

# EXAMPLE=affairs runs the classification example; the demo trains the example it runs on first use.
demo: setup
	$(PY) -m devstack.demo $(if $(EXAMPLE),--example $(EXAMPLE))

# docs/page.png, the README's picture of the page: the top (1280 x 900) of the page the browser
# test loads in its diamonds case (carat-shift through the real broker), kept only if it passes.
screenshot: setup tools
	shots=$$(mktemp -d) && trap 'rm -rf "$$shots"' EXIT && \
	PAGE_SCREENSHOT="$$shots" $(PY) -m pytest -q -p no:cacheprovider tests/integration/test_page_browser.py -k diamonds && \
	cp "$$shots/diamonds-top.png" docs/page.png && ls -l docs/page.png

# Benchmarks (not tests): numbers for docs/benchmarks.md, ratios within one run.
bench: setup $(MODEL_DIR)/model.joblib
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) bench/model_bench.py
	$(PY) bench/scorer_bench.py
	$(PY) bench/scorer_breakdown.py
	$(PY) bench/predict_bench.py
	$(PY) bench/monitor_bench.py --records 200000 --seeds 5
	$(PY) bench/consumer_bench.py
	$(PY) bench/faust_bench.py
	$(PY) bench/encode_bench.py
	$(PY) bench/latency_bench.py
	$(PY) bench/scale_bench.py
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps quixstreams==3.28.1  # see requirements-bench.txt
	$(PY) bench/stream_libs_bench.py

clean:
	rm -rf $(VENV) $(MLSERVER_VENV) .pytest_cache .demo
