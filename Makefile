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

.PHONY: setup tools test test-all soak demo train bench clean

setup: $(STAMP)

# Re-installs only when a requirements file changes: a second `make setup` installs nothing.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Prometheus, Alertmanager, promtool and amtool from Debian (the tests run them for real);
# installs only what is missing, needs root or sudo.
tools:
	bash scripts/install-observability.sh

$(MODEL_DIR)/model.joblib: | $(STAMP)
	$(PY) -m scorer train

train: setup
	$(PY) -m scorer train

test: setup tools
	$(PY) -m pytest -m "not slow and not soak"

test-all: setup tools
	$(PY) -m pytest -m "not soak"

# Sustained load: 5,000 records/s for 5 minutes through producer -> scorer -> monitor
# (SOAK_SECONDS, SOAK_RATE change it); the numbers go to soak-report.json.
soak: setup
	$(PY) -m pytest -m soak -s tests/soak

# EXAMPLE=affairs runs the classification example; the demo trains the example it runs on first use.
demo: setup
	$(PY) -m devstack.demo $(if $(EXAMPLE),--example $(EXAMPLE))

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
	rm -rf $(VENV) .pytest_cache .demo
