# Set-up and the two jobs the README names. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
# This machine carries a CPU build of torch 2.13.0 on disk; any other spec downloads gigabytes.
# Override with `make test TORCH_SPEC='torch==2.5.1'` (or TORCH_SPEC= to keep what is installed).
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint bench venv install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(PY)

install: $(PY)
	$(if $(TORCH_SPEC),$(PIP) install --quiet "$(TORCH_SPEC)")
	$(PIP) install --quiet -e ".[all]"

install-test: $(PY)
	$(if $(TORCH_SPEC),$(PIP) install --quiet "$(TORCH_SPEC)")
	$(PIP) install --quiet -e ".[test]"

demo: install
	$(PY) -m engine.demo

test: install-test lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Style and types of the framework-free core run before the tests (seconds).
lint: install-test
	$(PY) -m ruff check engine langchain_scorer llamaindex_scorer bench tests
	$(PY) -m mypy engine

bench: install-test
	$(PY) -m bench.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
