# leadscore: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: $(BIN)/uv requirements.lock pyproject.toml
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the locked dependencies (dev extra included)

lock: $(BIN)/uv ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11

demo: install ## Run the main job end to end on the embedded default (synthetic CRM)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@# Deliberate steps, outside the DVC pipeline (an experiment must not reach them): the model
	@# against the champion (the first one registers as champion; a new one is registered as
	@# challenger and promoted only if params.yaml `promote` says so), then the nightly job.
	$(BIN)/leadscore challenge --model data/model --evaluation data/evaluation --training data/training --crm data/crm --explain data/explain
	$(BIN)/leadscore register --model data/model --evaluation data/evaluation --training data/training --summary data/registry/registered.json
	@# Two nights: three days before the export, then the export's own. Leads qualified then and
	@# not touched by sales since are the morning's follow-up list.
	$(BIN)/leadscore score data/crm --create --as-of=-3d
	$(BIN)/leadscore score data/crm --create --summary data/scoring/summary.json
	$(BIN)/leadscore follow-ups sqlite:///data/crm.db --limit 5
	$(BIN)/leadscore manifest data/training/manifest.json --oracle data/oracle/true_propensity.parquet
	$(BIN)/leadscore metrics data/evaluation/metrics.json --registered data/registry/registered.json
	$(BIN)/leadscore scoring-runs sqlite:///data/crm.db --last 3
	$(BIN)/leadscore scores sqlite:///data/crm.db --top 3

# The bring-your-own-CRM demo: the demo CRM re-exported as HubSpot would (docs/foreign-export.md),
# read through its mapping file (mappings/hubspot-example.yaml), trained and scored into a folder.
EXPORT := data/export-demo
HUBSPOT := --mapping mappings/hubspot-example.yaml
demo-export: install ## After `make demo`: the same CRM as a HubSpot export, through its mapping file, to scores
	$(BIN)/leadscore export-foreign data/crm --out $(EXPORT)/crm
	$(BIN)/leadscore validate $(EXPORT)/crm $(HUBSPOT) --out $(EXPORT)/validated --rejects $(EXPORT)/rejects
	$(BIN)/leadscore label --validated $(EXPORT)/validated --out $(EXPORT)/labels/labelled_snapshots.parquet
	$(BIN)/leadscore features $(HUBSPOT) --validated $(EXPORT)/validated --snapshots $(EXPORT)/labels/labelled_snapshots.parquet --out $(EXPORT)/features/features.parquet
	$(BIN)/leadscore training-set --features $(EXPORT)/features/features.parquet --snapshots $(EXPORT)/labels/labelled_snapshots.parquet --validated $(EXPORT)/validated --out $(EXPORT)/training
	$(BIN)/leadscore train $(HUBSPOT) --training $(EXPORT)/training --validated $(EXPORT)/validated --out $(EXPORT)/model
	$(BIN)/leadscore evaluate --training $(EXPORT)/training --model $(EXPORT)/model --out $(EXPORT)/evaluation
	$(BIN)/leadscore score $(EXPORT)/crm $(HUBSPOT) --model $(EXPORT)/model --to $(EXPORT)/scores --create --summary $(EXPORT)/scoring/summary.json

backtest: install ## After `make demo`: replay the demo CRM month by month, with and without retraining (~3 min; docs/backtest.md)
	$(BIN)/leadscore backtest --oracle data/oracle/true_propensity.parquet --out data/backtest

test: install ## Run lint and the whole test suite
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: install ## Run the benchmarks (ratios against references measured in the same run; ~25 min; scoring needs `make demo` first)
	$(BIN)/python benchmarks/bench_behavioral.py
	$(BIN)/python benchmarks/bench_behavioral.py --scenario scoring
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/bench_reasons.py
	$(BIN)/python benchmarks/bench_writeback.py

lint: install ## Lint and format-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: ## Remove generated data, caches and the venv (not what git tracks: the manifest, metrics and plots DVC compares)
	rm -rf $(VENV) data/crm data/oracle data/validated data/rejects data/labels data/features \
		data/training/train.parquet data/training/validation.parquet data/training/test.parquet \
		data/evaluation/cross_validation.json data/model data/explain data/recalibrated \
		data/registry data/scoring data/backtest data/retrain data/crm.db mlflow.db mlruns mlartifacts .pytest_cache .ruff_cache

.PHONY: help install lock demo demo-export backtest test bench lint clean
