# proute — run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Nothing reaches the internet at run time: models load from installed packages, W&B
# logs offline unless you set WANDB_MODE=online with an API key.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export DGLBACKEND := pytorch

.DEFAULT_GOAL := help
.PHONY: help install test test-full lint format data-summary reproduce adapt bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with the pinned CPU stack and proute (editable, dev extras)

$(STAMP): requirements/constraints.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q \
		-c requirements/constraints.txt -e ".[dev]"
	$(BIN)/python -m pip check
	touch $(STAMP)

test: install ## fast tests (not marked slow), one process per core, one thread each
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" -q -n auto

test-full: install ## all tests, slow ones included
	$(BIN)/python -m pytest -q

LINT_PATHS := src tests scripts

lint: install ## check style and common bugs with ruff (lint rules and formatting) and types with mypy; changes nothing
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

format: install ## rewrite the code in place: ruff's safe fixes (import order) and ruff format
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

data-summary: install ## summarise the default dataset (users, queries, splits, best LLMs)
	$(BIN)/python -m proute.data

# The study's overrides, e.g. STUDY_ARGS="setting=default,new_llms random_state=42" or
# "hydra/launcher=slurm hydra.launcher.partition=cpu" (a cluster instead of this machine).
STUDY_ARGS ?=

reproduce: install ## the study (conf/sweep/study.yaml; ~45 min on 2 cores): runs in outputs/study, tables, figures, summary.md and the notebook as HTML in experiments/results
	$(BIN)/python -m proute.train +sweep=study $(STUDY_ARGS); status=$$?; \
		$(BIN)/python -m proute.study aggregate outputs/study --out experiments/results || status=1; \
		exit $$status

# Overrides of the adaptation experiments, e.g. ADAPT_ARGS="random_state=43".
ADAPT_ARGS ?=

adapt: install ## new users, feedback and new LLMs without retraining (conf/experiment/adapt_*.yaml; minutes per router): experiments/new_users/<name>_s<seed>.{json,md,png}
	for e in adapt_new_users adapt_feedback adapt_new_llms; do \
		$(BIN)/python -m proute.study adapt experiment=$$e $(ADAPT_ARGS) --out experiments/new_users || exit 1; \
	done

bench: install ## data-load/cache, masking, training-step and routing-latency benchmarks
	$(BIN)/python scripts/bench.py

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache
