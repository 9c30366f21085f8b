# One target per task; .ci/run calls `make test`. Every target installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP := $(VENV)/.keystep-installed
SYS_STAMP := .make-system

.PHONY: demo test test-fast lint typecheck check bench system services venv clean

$(SYS_STAMP): scripts/install-system.sh
	bash scripts/install-system.sh
	touch $@

system: $(SYS_STAMP)

$(PY_STAMP): pyproject.toml $(SYS_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dataset,server,ray,dev]'
	touch $@

venv: $(PY_STAMP)

services: $(PY_STAMP)
	$(BIN)/python -m keystep.store.pg_admin ensure-server

demo: $(PY_STAMP)
	$(BIN)/python scripts/demo.py

test: $(PY_STAMP) services
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	OMP_THREAD_LIMIT=1 $(BIN)/pytest -q -p no:cacheprovider

test-fast: $(PY_STAMP) services
	OMP_THREAD_LIMIT=1 $(BIN)/pytest -q -p no:cacheprovider -m "not slow"

lint: $(PY_STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(PY_STAMP)
	$(BIN)/mypy

bench: $(PY_STAMP) services
	for b in bench/*.py; do OMP_THREAD_LIMIT=1 $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(SYS_STAMP) demo-out .pytest_cache .mypy_cache .ruff_cache
