# The README's commands. `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/warrenmq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(BIN)/warrenmq

run: $(BIN)/warrenmq
	$(BIN)/warrenmq serve

test: $(BIN)/warrenmq
	$(BIN)/python -m pytest -q

lint: $(BIN)/warrenmq
	$(BIN)/ruff check warrenmq tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/warrenmq
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) warrenmq-data
