# Two commands do everything on a fresh machine:
#   make demo   create .venv if missing, install, run the quick-start study, print the report
#   make test   create .venv if missing, install, start the test services, run every test
# and a quick one while editing:
#   make test-fast  the unit tier: every test not marked slow (no training, no services; under a minute)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ablate-installed
EXTRAS := dev,coco,postgres,sbd,parquet,runtimes,tensorboard,mlflow

.PHONY: demo test test-fast install lint bench services-start services-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]' 2>&1 \
		| grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import ablate, torch, torchvision" || (echo "install failed" >&2; exit 1)
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ablate run recipes/quickstart.toml --jobs 2
	$(BIN)/ablate report --study quickstart --pareto --effects --out results/

test: $(STAMP)
	@bash tests/services/start-all.sh
	$(BIN)/python -m pytest -p no:cacheprovider; status=$$?; bash tests/services/stop-all.sh; exit $$status

test-fast: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check ablate tests bench
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/bench_plan_train.py

clean:
	rm -rf results/runs results/*.db results/*.db-* results/*.png results/*.svg
