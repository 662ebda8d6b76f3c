# Postroom: `make run` tries it out, `make test` runs the suite, `make chaos` its long
# fault-injection runs (database outages, killed agents).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test chaos check bench bench-detail clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Postroom needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=constraints.txt $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/postroom serve --demo

test: setup
	$(BIN)/python -m pytest -m "not chaos" $(PYTEST_ARGS)

chaos: setup
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

check: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

bench-detail: setup
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) postroom.db postroom.db-wal postroom.db-shm postroom.key postroom-inbox test-artifacts
