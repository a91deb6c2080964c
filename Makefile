# dnnrsa: set up, run the demo, run the tests.
#   make demo   create .venv, install dnnrsa, run the whole pipeline on the built-in demo data set
#   make test   create .venv, install dnnrsa with its test and GPU extras, run lint and the test suite

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.dnnrsa-installed
DEMO_DIR ?= demo_output

.PHONY: demo test install system-deps lint docs clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e ".[test,gpu]"
	@touch $@

install: $(STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

demo: $(STAMP)
	$(BIN)/dnnrsa-demo $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
