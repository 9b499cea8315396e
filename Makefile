# The README's commands. `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test demo lint bench clean screenshots

$(BIN)/warrenmq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(BIN)/warrenmq

# Options go in ARGS, e.g. make run ARGS="--no-management" or ARGS="--port 5673 --config config/broker.yaml".
run: $(BIN)/warrenmq
	$(BIN)/warrenmq serve $(ARGS)

test: $(BIN)/warrenmq
	$(BIN)/python -m pytest -q

# The OrderPlaced fanout demo against a WarrenMQ it starts itself; pass options with
# ARGS, e.g. make demo ARGS="--orders 1000" or ARGS="--url amqp://guest:guest@host:5672/".
demo: $(BIN)/warrenmq
	$(BIN)/python examples/orders/demo.py $(ARGS)

# The dashboard's tabs as PNGs in docs/dashboard/ (headless Chromium, a broker with traffic).
screenshots: $(BIN)/warrenmq
	$(BIN)/python -m tests.screenshots --out docs/dashboard $(ARGS)

lint: $(BIN)/warrenmq
	$(BIN)/ruff check warrenmq tests benchmarks examples
	$(BIN)/mypy
	MYPYPATH=examples/orders $(BIN)/mypy --strict examples/orders/*.py

bench: $(BIN)/warrenmq
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) warrenmq-data
