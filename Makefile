# Two commands do everything on a fresh machine:
#   make demo   create .venv if missing, install the core, run the quick-start study, print the report
#   make test   create .venv if missing, install every extra, start the test services, run every test
# and, while editing:
#   make test-fast  the unit tier: every test not marked slow (no training; under 2 minutes on 2 cores)
#   make pin        pin this machine kind's trained quick-start figures (tests/trials/pins.py)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# What is installed, by stamp: the core package (all make demo needs), or the core with
# every extra and the dev tools (make test). make test after make demo adds the rest;
# make demo after make test installs nothing.
CORE_STAMP := $(VENV)/.ablate-core
FULL_STAMP := $(VENV)/.ablate-all
EXTRAS := dev,all

# Tests run in one process per core (pytest-xdist), at most TEST_WORKERS; alone, the suite
# keeps about one of two cores busy (subprocesses starting, Slurm scheduling, one-thread
# trainings). The Slurm cluster's tests share one worker (tests/conftest.py).
# TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n auto --maxprocesses $(TEST_WORKERS) --dist loadgroup)

.PHONY: demo test test-fast install install-all lint bench pin services-start services-stop clean

install: $(CORE_STAMP)
install-all: $(FULL_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(CORE_STAMP): pyproject.toml | $(BIN)/python
	@if [ $(FULL_STAMP) -nt pyproject.toml ]; then echo "core already installed (with every extra)"; \
	else $(PIP) -e . 2>&1 | grep -v "^WARNING: Location" || true; fi
	@$(BIN)/python -c "import ablate, torch, torchvision" || (echo "install failed" >&2; exit 1)
	@touch $@

$(FULL_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[$(EXTRAS)]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import ablate, torch, torchvision, pytest" || (echo "install failed" >&2; exit 1)
	@touch $@ $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/ablate run recipes/quickstart.toml --jobs 2
	$(BIN)/ablate report --study quickstart --pareto --effects --out results/

test: $(FULL_STAMP)
	@bash tests/services/start-all.sh
	$(BIN)/python -m pytest -p no:cacheprovider $(XDIST); status=$$?; bash tests/services/stop-all.sh; exit $$status

test-fast: $(FULL_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider $(XDIST) -m "not slow"

lint: $(FULL_STAMP)
	$(BIN)/ruff check ablate tests bench
	$(BIN)/lint-imports

bench: $(CORE_STAMP)
	$(BIN)/python bench/bench_plan_train.py

# pin this machine kind's trained figures for tests/trials/test_quickstart_pinned.py
pin: $(FULL_STAMP)
	$(BIN)/python -m tests.trials.pins record

clean:
	rm -rf results/runs results/*.db results/*.db-* results/*.png results/*.svg
