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

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check wmbench baselines tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
