# Everything a fresh machine with Python 3.11 and make needs: `make emulate N=60`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
N ?= 60
ARGS ?=
ALGOS ?= divshare,swift,adpsgd
SEEDS ?= 1
EXPERIMENT ?=
STAMP := $(VENV)/.installed

.PHONY: help setup emulate compare reproduce test test-unit lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: anything that depends on it must find 2.13.0 already there,
	# or pip resolves a CUDA build of several GB.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install what is missing

emulate: $(STAMP)  ## run the default experiment: make emulate N=60 ARGS="algorithm.degree=2"
	$(PY) -m launcher num_nodes=$(N) $(ARGS)

compare: $(STAMP)  ## one run per algorithm and seed, then a comparison: make compare N=60 SEEDS=1,2
	$(PY) -m launcher -m $(if $(EXPERIMENT),+experiment=$(EXPERIMENT)) num_nodes=$(N) \
		algorithm=$(ALGOS) seed=$(SEEDS) $(ARGS)

reproduce: $(STAMP)  ## the DivShare paper's evaluation, resumable: make reproduce ARGS="--dry-run"
	$(PY) -m launcher.reproduce $(ARGS)

test: $(STAMP)  ## run the whole test suite (unit + process tests + 4-node CI smoke test)
	$(PY) -m pytest -q

test-unit: $(STAMP)  ## the tests that start no process or socket (about 70 s): a quick loop
	$(PY) -m pytest -q -m "not process"

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## apply ruff formatting and fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## benchmarks; results in bench/results/
	$(PY) -m bench.run $(ARGS)

clean:  ## remove the environment and run outputs
	rm -rf $(VENV) outputs multirun .pytest_cache
