# movielens-tfx: `make run` trains and pushes a model, `make test` runs the tests.
# Both create the Python 3.10 environment in .venv/ first if it is missing or out of date.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# A MovieLens "latest"-format folder; empty: ml-latest-small, fetched into data/ if needed.
DATA_DIR ?=
# More flags for the local runner, e.g. RUN_ARGS="--split random --no-cache".
RUN_ARGS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist); a module's tests share one (tests/conftest.py). 0: one process.
TEST_WORKERS ?= 2
# More flags for the development server, e.g. SERVE_ARGS="--grpc-port 9500 --host 0.0.0.0".
SERVE_ARGS ?=

# The first Python 3.10 found: PYTHON=..., python3.10 on PATH, or a pyenv-installed 3.10.
PYTHON ?= $(shell for p in python3.10 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10 $$HOME/.pyenv/versions/3.10.*/bin/python3.10 2>/dev/null); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

.PHONY: help venv data run serve test test-all lint lock clean kubeflow bench-deps bench-accuracy \
	bench-ranking bench-throughput bench-scaling synthetic spans mutation mutation-deps

help:
	@echo "make run    create .venv if needed, get the data, run the pipeline (DATA_DIR=..., RUN_ARGS=...)"
	@echo "make serve  development server (TF Serving's gRPC :8500 and REST :8501 APIs) on serving_model/ (SERVE_ARGS=...)"
	@echo "make test   create .venv if needed, lint, run the tests (PYTEST_ARGS=...)"
	@echo "make data   only fetch ml-latest-small into data/"
	@echo "make kubeflow  compile the pipeline for Kubeflow Pipelines (KFP_IMAGE=..., KFP_PIPELINE_ROOT=...)"
	@echo "make bench-accuracy  our models vs Surprise SVD on 3 protocols, 3 seeds (BENCH_ARGS=...)"
	@echo "make bench-ranking   top-10 lists: ours vs popularity, implicit, SVD (DATA_DIR=..., BENCH_ARGS=...)"
	@echo "make bench-throughput  training examples/s of each model vs Surprise SVD (BENCH_ARGS=...)"
	@echo "make bench-scaling   the pipeline on synthetic data of SIZES=\"100k 1m 5m\": time, memory"
	@echo "make synthetic       synthetic MovieLens: RATINGS=1000000 OUT=data/synthetic/1m SEED=0"
	@echo "make spans           cut a MovieLens folder into time spans: SRC=DIR DEST=DIR SPANS=4"
	@echo "make mutation  mutation testing: mutmut on the decision modules + hand-written TF mutations"
	@echo "make lock   re-resolve requirements.in into the pinned requirements.txt"
	@echo "make clean  remove pipeline outputs (tfx_output/, serving_model/)"

venv: $(STAMP)

# uv resolves and installs the TFX stack in seconds where pip's resolver takes many minutes.
$(STAMP): requirements.txt pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.10 not found (TFX 1.16 supports 3.9-3.10). Install it, e.g." \
		     "'pyenv install 3.10' or 'uv python install 3.10', or pass PYTHON=/path/to/python3.10." >&2; \
		exit 1; fi
	@echo "Creating $(VENV) with $(PYTHON)"
	@[ -x $(PY) ] || "$(PYTHON)" -m venv $(VENV)
	@[ -x $(VENV)/bin/uv ] || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade; \
		$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(VENV)/bin/uv pip install --python $(PY) -r requirements.txt
	$(VENV)/bin/uv pip install --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

data: $(STAMP)
	$(PY) -m pipeline.fetch_data $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

# make exits 2 whenever a recipe fails, whatever its code: `make run` exits 0 (pushed) or 2 (not
# pushed: refused model or error), and make's "Error N" line shows the runner's own code (1 error,
# 2 not blessed). Scripts that must tell them apart run `.venv/bin/python -m pipeline.local_runner`.
run: $(STAMP)
	$(PY) -m pipeline.local_runner $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(RUN_ARGS)

# Serves the newest pushed model and each version pushed later, on loopback; Ctrl-C stops it.
# For development and tests: production runs TF Serving's container (serving/README.md).
serve: $(STAMP)
	$(PY) -m serving.server $(SERVE_ARGS)

test: $(STAMP) lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# Everything, the slow marker included.
test-all: $(STAMP) lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope -m "" $(PYTEST_ARGS)

# Settings for the Kubeflow compile (see configs.KubeflowSettings); empty ones keep the defaults.
export KFP_PIPELINE_ROOT KFP_DATA_ROOT KFP_SERVING_MODEL_DIR KFP_IMAGE KFP_TRAINER_GPUS KFP_SPAN_WINDOW

kubeflow: $(STAMP)
	$(PY) -m pipeline.kubeflow_runner

BENCH_ARGS ?=
# Baselines for the benchmarks only (Surprise, implicit): requirements-bench.txt, installed with
# the lock as constraints.
bench-deps: $(STAMP)
	$(VENV)/bin/uv pip install --python $(PY) -r requirements-bench.txt -c requirements.txt

bench-accuracy: bench-deps
	$(PY) -m pipeline.fetch_data
	$(PY) -m bench.accuracy $(BENCH_ARGS)

bench-ranking: bench-deps
	$(PY) -m pipeline.fetch_data $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")
	$(PY) -m bench.ranking $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(BENCH_ARGS)

bench-throughput: bench-deps
	$(PY) -m bench.throughput $(BENCH_ARGS)

# The whole pipeline on synthetic data of each size (generated once into data/synthetic/).
SIZES ?= 100k 1m 5m
bench-scaling: $(STAMP)
	$(PY) -m bench.scaling --sizes $(SIZES) $(BENCH_ARGS)

RATINGS ?= 1000000
SEED ?= 0
OUT ?= data/synthetic/$(RATINGS)-seed$(SEED)
synthetic: $(STAMP)
	$(PY) -m bench.synthetic --ratings $(RATINGS) --out "$(OUT)" --seed $(SEED)

# New ratings arriving: SRC's ratings cut by time into DEST/span-1 .. span-$(SPANS) (README,
# "New ratings every week").
SRC ?= data/ml-latest-small
DEST ?= data/spans
SPANS ?= 4
spans: $(STAMP)
	$(PY) -m pipeline.spans "$(SRC)" "$(DEST)" --spans $(SPANS)

# Mutation testing (not part of `make test`): mutmut over the pure-Python modules that decide what
# users get ([tool.mutmut] in pyproject.toml), then the hand-written mutations of the TensorFlow
# modules (bench/mutations.py); bench/mutation_score.py writes the per-module scores into
# docs/benchmarks.md and fails below MUTATION_TARGET. Every run starts afresh (mutants/ holds
# mutmut's copy and results; `.venv/bin/mutmut browse` shows them). 2026-12-05 on 2 shared
# cores (load 5-8): mutmut 60 min for 1,849 mutants, the hand-written mutations about 10 min.
MUTATION_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MUTATION_TARGET ?= 0.9
mutation-deps: $(STAMP)
	$(VENV)/bin/uv pip install --python $(PY) -r requirements-mutation.txt -c requirements.txt

mutation: mutation-deps
	rm -rf mutants mutation-logs
	mkdir -p mutation-logs
	{ date +%s; cut -d" " -f1-3 /proc/loadavg; } > mutation-logs/start
	$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS)
	{ date +%s; cut -d" " -f1-3 /proc/loadavg; } > mutation-logs/mutmut-end
	status=0; $(PY) -m bench.mutations || status=$$?; \
	$(PY) -m bench.mutation_score --target $(MUTATION_TARGET) || status=$$?; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .

lock: $(STAMP)
	$(VENV)/bin/uv pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_36 \
		requirements.in -o requirements.txt

clean:
	rm -rf tfx_output serving_model
