# The doors a newcomer uses: `make demo`, `make test`, `make lint`, `make bench`, `make docs`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency pinned (with the dev, embedded and serve extras), so each clone installs the
# same versions. After changing dependencies in pyproject.toml, run `make lock`.
LOCK := requirements.lock

.PHONY: install lock tools demo test lint format bench docs clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Resolve pyproject.toml's dependencies again into requirements.lock, keeping the pinned
# versions that still fit; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile pyproject.toml \
		--extra dev --extra embedded --extra serve --python-version 3.11 --universal --quiet \
		$(LOCK_FLAGS) -o $(LOCK)

# promtool and prometheus-pushgateway for the alert-rule and Pushgateway tests: installed
# with apt-get only when missing; their services are never started.
tools:
	@sh scripts/ops-tools.sh

demo: $(STAMP)
	$(BIN)/feedctl demo

test: $(STAMP) tools
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check feedctl tests bench scripts
	$(BIN)/ruff format --check feedctl tests bench scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format feedctl tests bench scripts
	$(BIN)/ruff check --fix feedctl tests bench scripts

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

# docs/cli.md: every command's --help, written again from the commands themselves
# (tests/unit/test_docs.py fails when it is stale); docs/openapi.json: the HTTP API's schema
# (tests/unit/test_openapi_doc.py).
docs: $(STAMP)
	$(BIN)/python scripts/cli_doc.py
	$(BIN)/python scripts/openapi_doc.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
