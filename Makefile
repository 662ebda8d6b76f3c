# Postroom: `make run` tries it out, `make test` runs the suite, `make chaos` its long
# fault-injection runs (database outages, killed agents).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test chaos check bench bench-detail bench-inbound bench-feedback bench-latency bench-idle clean

# One shell, so the time taken can be said at the end; each step says what it does, and pip
# shows what it collects and installs (the first time takes a minute or two).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Postroom needs Python 3.11 or newer")'
	@set -e; start=$$(date +%s); \
	echo "==> [1/3] creating the virtual environment $(VENV)"; \
	$(PYTHON) -m venv $(VENV); \
	echo "==> [2/3] upgrading pip"; \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	echo "==> [3/3] installing Postroom and its dependencies (pinned by constraints.txt)"; \
	PIP_CONSTRAINT=constraints.txt $(BIN)/python -m pip install --disable-pip-version-check \
	  --progress-bar on -e '.[dev]'; \
	touch $(STAMP); \
	echo "==> set up in $$(( $$(date +%s) - start )) s"

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

# The inbound row alone (make bench measures it too): replies read from a Dovecot folder.
bench-inbound: setup
	$(BIN)/python bench/inbound.py $(BENCH_ARGS)

# The rows after "sent" alone (make bench measures them too): delivery reports read from
# a Dovecot folder and applied, webhook events signed and POSTed to a loopback receiver.
bench-feedback: setup
	$(BIN)/python bench/feedback.py $(BENCH_ARGS)

# The latency rows alone (make bench measures them too): from an enqueue's commit to the
# server's 250, at a steady rate, on PostgreSQL, within `postroom serve`, and the peer's.
bench-latency: setup
	$(BIN)/python bench/latency.py $(BENCH_ARGS)

# The idle row alone (make bench measures it too): an agent with nothing to send, its CPU
# over 60 s on SQLite and PostgreSQL.
bench-idle: setup
	$(BIN)/python bench/idle.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) postroom.db postroom.db-wal postroom.db-shm postroom.key postroom-inbox postroom-demo test-artifacts
