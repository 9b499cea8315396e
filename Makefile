# The README's commands. `make run` and `make test` create .venv on first use and compile
# the hot path with mypyc (warrenmq/hotpath.py lists it); WARRENMQ_PURE=1 skips the
# compiler and runs the same modules interpreted.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# The compiled build is remade when a hot-path source changes (its digest is checked at
# import too, so a stale build is never run: it falls back to pure with a note).
HOT_SOURCES := $(shell $(PYTHON) warrenmq/hotpath.py 2>/dev/null)
ifeq ($(WARRENMQ_PURE),1)
BUILD :=
else
BUILD := warrenmq/_build_info.py
endif

# The tests the pure build runs in CI beside the compiled full suite: protocol, routing,
# queues, storage, and the wire-level integration tests of the same paths.
PURE_TESTS := tests/unit tests/property tests/integration/test_raw_frames.py \
	tests/integration/test_routing.py tests/integration/test_exchanges.py \
	tests/integration/test_basic.py tests/integration/test_queues.py \
	tests/integration/test_confirms.py tests/integration/test_prefetch.py \
	tests/integration/test_dead_letter.py tests/integration/test_durability.py \
	tests/integration/test_content.py tests/integration/test_hotpath.py

.PHONY: run test test-pure build demo lint bench clean screenshots

$(BIN)/warrenmq: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	WARRENMQ_PURE=1 $(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(BIN)/warrenmq

# mypyc compiles the hot path in place (about 1-2 minutes on 2 cores).
warrenmq/_build_info.py: $(BIN)/warrenmq $(HOT_SOURCES)
	@echo "compiling the hot path with mypyc ..."
	$(BIN)/pip install --quiet --no-build-isolation --no-deps -e .
	@test -f $@ || (echo "the compiled build failed; WARRENMQ_PURE=1 runs pure" && false)

build: $(BUILD)

# Options for warrenmq serve go in ARGS, e.g. make run ARGS="--no-management" or
# ARGS="--port 5673 --config config/broker.yaml".
run: $(BIN)/warrenmq $(BUILD)
	$(BIN)/warrenmq serve $(ARGS)

test: $(BIN)/warrenmq $(BUILD)
	$(BIN)/python -m pytest -q

# The same modules interpreted, whatever is built.
test-pure: $(BIN)/warrenmq
	WARRENMQ_PURE=1 $(BIN)/python -m pytest -q $(PURE_TESTS)

# The OrderPlaced fanout demo against a WarrenMQ it starts itself; pass options with
# ARGS, e.g. make demo ARGS="--orders 1000" or ARGS="--url amqp://guest:guest@host:5672/".
demo: $(BIN)/warrenmq $(BUILD)
	$(BIN)/python examples/orders/demo.py $(ARGS)

# The dashboard's tabs as PNGs in docs/dashboard/ (headless Chromium, a broker with traffic).
screenshots: $(BIN)/warrenmq
	$(BIN)/python -m tests.screenshots --out docs/dashboard $(ARGS)

lint: $(BIN)/warrenmq
	$(BIN)/ruff check warrenmq tests benchmarks examples setup.py
	$(BIN)/mypy
	MYPYPATH=examples/orders $(BIN)/mypy --strict examples/orders/*.py

bench: $(BIN)/warrenmq $(BUILD)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) warrenmq-data build warrenmq/_build_info.py
	find warrenmq -name '*.so' -delete
