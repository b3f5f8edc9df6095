# plyground: `make demo` runs the embedded model on the built-in envs; `make test` runs the suite.
# Both call `make setup` first, which is idempotent (see scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-all bench lint docs clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m plyground.cli eval GuessNumber-v0 Arithmetic-v0 --model default \
		--episodes 4 --concurrency 4 --max-tokens 32 --temperature 0 --out runs/demo

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

bench: setup
	$(PY) -m pytest -q -m slow
	$(PY) benchmarks/harness_overhead.py

docs: setup
	$(PY) scripts/build_docs.py

lint: setup
	$(VENV)/bin/ruff check plyground tests
	$(VENV)/bin/mypy plyground

clean:
	rm -rf runs site docs/generated .pytest_cache .mypy_cache .ruff_cache
