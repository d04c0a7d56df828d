# The same targets locally and in CI (.ci/run calls `make lint` and `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format bench bench-quick soak clean

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
	$(BIN)/mypy --strict docpulse store app workers cli tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## make soak: the soak test for SOAK_SECONDS (default here 900; `make test` runs it for 120)
soak: $(STAMP)
	SOAK_SECONDS=$${SOAK_SECONDS:-900} $(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

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
