# dnnrsa: set up, run the demo, run the tests.
#   make demo   create .venv from the lock file, install dnnrsa, run the whole pipeline on the demo data set
#   make test   the same environment (runtime, test, GPU and networks extras), then lint and the test suite
#   make lock   resolve the environment again and rewrite requirements/lock.txt (docs/install.md)
#
# The virtual environment is installed from requirements/lock.txt: every package at an exact
# version with its hashes, for Python 3.11 on Linux x86_64, so every machine gets what CI tested.
# dnnrsa itself is then installed editable, without dependencies and without build isolation
# (its build uses the locked setuptools).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
STAMP   = $(VENV)/.dnnrsa-installed
DEMO_DIR ?= demo_output
LOCK      = requirements/lock.txt
BOOTSTRAP = requirements/bootstrap.txt

# `make lock`: uv, at a fixed version, in its own small environment. It keeps the versions
# already in the lock where setup.cfg still allows them; `make lock LOCK_FLAGS=--upgrade`
# moves every package to its newest allowed release.
UV_VERSION ?= 0.13.9
LOCK_VENV  ?= .venv-lock
UV          = $(LOCK_VENV)/bin/uv
LOCK_TARGET = --python-version 3.11 --python-platform x86_64-manylinux_2_28
UV_COMPILE  = $(UV) pip compile $(LOCK_FLAGS) --quiet --generate-hashes --custom-compile-command "make lock" $(LOCK_TARGET)

.PHONY: demo test install system-deps lint docs lock container-check clean

$(STAMP): setup.cfg pyproject.toml $(LOCK) $(BOOTSTRAP)
	@echo "== dnnrsa setup: virtual environment $(VENV) ($(PYTHON))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "== dnnrsa setup: packaging tools from $(BOOTSTRAP)"
	@$(PIP) install --quiet --require-hashes -r $(BOOTSTRAP)
	@echo "== dnnrsa setup: the locked environment from $(LOCK) (PyTorch with its CUDA libraries: a few GB the first time)"
	@$(PIP) install --quiet --require-hashes -r $(LOCK)
	@echo "== dnnrsa setup: dnnrsa from this checkout (editable)"
	@$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@
	@echo "== dnnrsa setup: done ($$($(BIN)/dnnrsa --version))"

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

lock:
	@test -x $(UV) || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(UV_COMPILE) --extra test --extra gpu --extra networks setup.cfg requirements/bootstrap.in -o $(LOCK)
	$(UV_COMPILE) requirements/bootstrap.in -c $(LOCK) -o $(BOOTSTRAP)
	@echo "== wrote $(LOCK) and $(BOOTSTRAP); run 'make test' and commit them with the change that needed them"

# Builds the Docker image with podman on a Debian 12 base bootstrapped from the Debian archive
# and runs its self-test (docs/containers.md). Needs root, podman and mmdebstrap.
container-check:
	@bash scripts/container_check.sh

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(DEMO_DIR) .pytest_cache
