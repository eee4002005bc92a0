# One command each: `make test` (lint, types, import contract, tests) and `make demo`;
# `make test-deploy` (root, Debian bookworm: the images built and the compose stack run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-deploy lint typecheck pytest demo bench clean

DEMO_OUT ?= demo-data
DEMO_PORT ?= 8000

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check evaluator app tests benchmarks
	$(BIN)/ruff format --check evaluator app benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict evaluator
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# The deployment for real (root on Debian bookworm, no registry needed): podman and
# docker-compose from Debian, a local Python base (mmdebstrap), the wheelhouse, the
# images, then `pytest -m deploy tests/deploy` (docker/local/test-deploy.sh, timed).
test-deploy: $(STAMP)
	PYTEST=$(BIN)/pytest docker/local/test-deploy.sh

# The synthetic challenge judged end to end over HTTP; serves http://127.0.0.1:$(DEMO_PORT)
# until Ctrl-C. DEMO_EXIT=1 exits after printing the leaderboards (tests, CI).
demo: $(STAMP)
	$(BIN)/hecktor-eval synth --small --out $(DEMO_OUT)/challenge
	$(BIN)/python -m app demo --out $(DEMO_OUT) --challenge $(DEMO_OUT)/challenge --port $(DEMO_PORT)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.task1 --cases 40

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
