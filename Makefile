# The same targets locally and in CI (.ci/run calls `make lint` and `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format bench bench-quick clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,test,lint]'
	touch $(STAMP)

install: $(STAMP)

## make run: the whole stack on an embedded Redis-compatible server (or on $$REDIS_URL)
run: $(STAMP)
	$(BIN)/docpulse dev

## make test: unit, integration and end-to-end tests (a real server is started by a fixture)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict docpulse app workers

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## make bench: benchmarks on an embedded server; one table, raw JSON in bench/results/ (< 15 min)
bench: $(STAMP)
	$(BIN)/python -c 'import socketio, broadcaster' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

## make bench-quick: the same, everything smaller (< 2 min)
bench-quick: $(STAMP)
	$(BIN)/python -c 'import socketio, broadcaster' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
