# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment .venv/ when it is missing (or stale) and install wmbench into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-slow bench lint venv clean

venv: $(STAMP)

# torch==2.13.0 is the CPU build on this machine type; see README "Installing".
$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m wmbench.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests || test $$? -eq 5

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

# Every benchmark through pytest-benchmark at short settings (BENCH_ARGS=--bench-full for the full ones): the run is
# saved outside the repository (~/.cache/wmbench/benchmarks) and compared with the last saved run of this machine.
bench: $(STAMP)
	$(PY) -m pytest benchmarks -p no:xdist -p no:cacheprovider --benchmark-only --benchmark-autosave \
		$$(ls ~/.cache/wmbench/benchmarks/*/*.json >/dev/null 2>&1 && echo --benchmark-compare) $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check wmbench baselines tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
