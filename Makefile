# Backprop-free learning-rule benchmark. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATASET ?= fashion_mnist
METHODS ?= all
ARCH ?=
SEEDS ?=
EPOCHS ?=
PROFILE ?= quick
SET ?=
SOURCE ?=
ARGS ?=
PYTEST_ARGS ?=
METHOD ?=
TRIALS ?=
WORKERS ?= 1
STORAGE ?=
EXECUTOR ?=

.DEFAULT_GOAL := help
.PHONY: help venv data bench paper run report test test-fast lint perf perf-grid doctor clean sweep sweep-all efficiency

help: ## list the targets and the variables they take
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "Variables: DATASET=$(DATASET) METHODS=$(METHODS) ARCH=<arch string> SEEDS=0,1,2 EPOCHS=N PROFILE=$(PROFILE)"
	@echo "           SET='lr=0.01 pepita.lr=0.05' (rule options)  SOURCE=runs|wandb:ENTITY/PROJECT  ARGS=<extra CLI flags>"
	@echo "  grid:     EXECUTOR=inline|local|slurm WORKERS=N (ARGS='--workers-per-device K --slurm \"...\" --no-wait --status')"
	@echo "  sweeps:   METHOD=bp TRIALS=N (default: the protocol's) WORKERS=$(WORKERS) EPOCHS=N STORAGE=sqlite:///f.db|journal:/shared/f.log|postgresql://... EXECUTOR=local|slurm"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP) ## create the virtual environment and install the project into it (editable)

# DATASET given (command line or environment): those datasets; else the profile's own (e.g. PROFILE=transfer)
DATASETS_GIVEN = $(filter-out file,$(origin DATASET))

data: $(STAMP) ## make sure DATASET's (or the PROFILE's) files are present (Debian package for Fashion-MNIST, else download)
	$(PY) -m bench data $(if $(DATASETS_GIVEN),--datasets $(DATASET),--profile $(PROFILE))

# a dry run (ARGS=--dry-run) lists the runs without fetching any data
bench: $(STAMP) $(if $(findstring --dry-run,$(ARGS)),,data) ## run the METHODS x SEEDS grid on DATASET (PROFILE: python -m bench list; EXECUTOR, WORKERS), W&B offline
	$(PY) -m bench grid $(if $(DATASETS_GIVEN),--datasets $(DATASET)) --methods $(METHODS) --profile $(PROFILE) \
	  $(if $(ARCH),--arch '$(ARCH)') $(if $(SEEDS),--seeds $(SEEDS)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
	  $(if $(SET),--set '$(SET)') $(if $(EXECUTOR),--executor $(EXECUTOR)) \
	  $(if $(filter-out file,$(origin WORKERS)),--workers $(WORKERS)) $(ARGS)

paper: ## one command from DATASET to a fair paper table: sweeps for rules without tuned settings there, the grid, the report
	$(MAKE) bench PROFILE=paper ARGS="--tune $(ARGS)"

sweep: $(STAMP) data ## tune METHOD on DATASET with Optuna on validation accuracy (TRIALS, WORKERS, EPOCHS, STORAGE, EXECUTOR)
	@test -n "$(METHOD)" || { echo "make sweep needs METHOD=<rule> (python -m bench list); make sweep-all tunes every rule"; exit 2; }
	$(PY) -m bench sweep --dataset $(DATASET) --method '$(METHOD)' $(if $(TRIALS),--trials $(TRIALS)) --workers $(WORKERS) \
	  --executor $(or $(EXECUTOR),local) $(if $(STORAGE),--storage '$(STORAGE)') $(if $(ARCH),--arch '$(ARCH)') \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SET),--set '$(SET)') $(ARGS)

sweep-all: $(STAMP) data ## tune every registered rule with the same budget (TRIALS x EPOCHS each; ARCH for all that can train it)
	$(PY) -m bench sweep --dataset $(DATASET) --method all $(if $(TRIALS),--trials $(TRIALS)) --workers $(WORKERS) \
	  --executor $(or $(EXECUTOR),local) $(if $(STORAGE),--storage '$(STORAGE)') $(if $(ARCH),--arch '$(ARCH)') \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SET),--set '$(SET)') $(ARGS)

report: $(STAMP) ## rebuild tables and figures in reports/out from the W&B runs (SOURCE=runs or wandb:ENTITY/PROJECT)
	$(PY) -m bench report $(if $(SOURCE),--source '$(SOURCE)') $(ARGS)

test: $(STAMP) ## run the test suite (under 10 minutes on 2 CPU cores)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) ## the test suite without the slow tests (those that train on real data for a while)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff: lint and format check (line length 120; settings in pyproject.toml); CI runs it before the tests
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

efficiency: $(STAMP) ## memory, FLOPs and samples/s of one training step per rule, measured beside the theoretical model (METHODS, ARCH, ARGS='--batch-sizes 1,64')
	$(PY) -m bench efficiency $(if $(filter-out all,$(METHODS)),--methods $(METHODS)) $(if $(ARCH),--arch '$(ARCH)') \
	  $(if $(DATASETS_GIVEN),--dataset $(DATASET)) $(ARGS)

perf: $(STAMP) data ## seconds per epoch and per step of every rule of METHODS beside BP (ARCH: the shared shape), and of the harness beside a plain loop
	$(PY) -m bench perf --methods $(METHODS) $(if $(ARCH),--arch '$(ARCH)') $(if $(DATASETS_GIVEN),--dataset $(DATASET)) $(ARGS)

doctor: $(STAMP) data ## every rule of METHODS for a few dozen steps on this machine's accelerator (CUDA, else CPU): eager, compiled, 2 workers per device, DDP on 2 GPUs; a table, exit 0 when all ok (ARGS='--steps 48 --modes eager,workers')
	$(PY) -m bench doctor --methods $(METHODS) $(ARGS)

perf-grid: $(STAMP) data ## wall time of a small grid (8 short BP/FA runs) inline vs EXECUTOR=local vs slurm, WORKERS=2
	$(PY) -m bench perf-grid $(if $(filter-out file,$(origin WORKERS)),--workers $(WORKERS)) $(ARGS)

clean: ## remove runs and generated reports (keeps data and the venv)
	rm -rf runs reports/out
