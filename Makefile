# lensflow: `make demo` runs the main job, `make test` runs the tests. Both set up everything first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FIND_LINKS := $(wildcard /opt/wheels)
UV_FLAGS := --python $(BIN)/python --compile-bytecode $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
DEMO_LIMIT ?=

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 DO_NOT_TRACK=true
export MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1
export PREFECT_HOME := $(CURDIR)/.prefect
export TQDM_MININTERVAL ?= 2

.PHONY: help install system-deps browser-deps lint demo test test-fast bench bench-embed bench-index bench-retrain bench-serve bench-soak bench-enrich bench-quality up down clean

help:
	@echo "make demo       install, build the sample catalog, run the retrain flow, print a summary"
	@echo "make test       install, then run every test tier CI checks"
	@echo "make lint       ruff: lint and format check (make test runs it first)"
	@echo "make test-fast  the fast inner loop (no real weights, CLI or crash subprocesses, browser or platform)"
	@echo "make up         start Prefect server + worker + deployments and the MLflow UI on 127.0.0.1 (with credentials)"
	@echo "make down       stop what make up started"
	@echo "make bench      speed tables (embed, index, retrain, serve) into benchmarks/results/; after make demo"
	@echo "make bench-soak  10 minutes of mixed load on lensflow serve, memory sampled (MINUTES=, CLIENTS=)"
	@echo "make bench-quality  frozen features vs the heads and partial strategies on the catalog in data/"

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	@# the lock is the complete, resolved set: install it as is (no re-resolution, no CUDA torch)
	$(BIN)/uv pip install -q $(UV_FLAGS) --no-deps -r requirements.lock
	$(BIN)/uv pip install -q $(UV_FLAGS) --no-deps -e .
	@touch $@

install: $(VENV)/.installed

# apt_install(packages needed): installs the missing ones (root), or says which command to run
define apt_install
	@missing="$(strip $(1))"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: missing Debian packages: $$missing; installing them needs root: sudo apt-get install -y $$missing" >&2; exit 1; fi; \
	  echo "installing Debian packages: $$missing"; \
	  (apt-get install -y -q $$missing >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)) || \
	  { echo "error: could not install $$missing with apt-get (is the Debian archive reachable?)" >&2; exit 1; }; \
	fi
endef

system-deps:
	$(call apt_install,$(if $(wildcard $(FASHION_MNIST)),,dataset-fashion-mnist))

browser-deps:
	$(call apt_install,$(if $(shell command -v chromium),,chromium) $(if $(shell command -v chromedriver),,chromium-driver))

demo: install system-deps
	$(BIN)/lensflow data sample $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT))
	$(BIN)/lensflow retrain --auto-approve $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT))
	$(BIN)/lensflow status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install system-deps browser-deps lint
	$(BIN)/python -m pytest -q

test-fast: install lint
	$(BIN)/python -m pytest -q -m "not real and not cli and not crash and not integration and not browser"

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	@# benchmark-only extras (faiss-cpu, the index baseline), kept out of the runtime lock
	$(BIN)/uv pip install -q $(UV_FLAGS) -r requirements-bench.txt
	@touch $@

# The speed tables (BENCHMARKS.md). Run after `make demo`: retrain, index and serve use its 70k catalog and champion.
bench: bench-embed bench-index bench-retrain bench-serve

bench-embed: $(VENV)/.bench-installed system-deps
	$(BIN)/python -m benchmarks.embed

bench-index: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.index

bench-retrain: install
	$(BIN)/python -m benchmarks.retrain

bench-serve: install
	$(BIN)/python -m benchmarks.serve_latency
	$(BIN)/python -m benchmarks.serve_load

# Reliability soak (not part of `make bench`): MINUTES (default 10) of mixed load on `lensflow serve`, RSS sampled
bench-soak: install
	$(BIN)/python -m benchmarks.soak $(if $(MINUTES),--minutes $(MINUTES)) $(if $(CLIENTS),--clients $(CLIENTS))

bench-enrich: install
	$(BIN)/python -m benchmarks.enrich

bench-quality: install
	$(BIN)/python -m benchmarks.quality --strategies $(or $(STRATEGIES),heads,partial)

up: install
	$(BIN)/lensflow up

down:
	@if [ -x $(BIN)/lensflow ]; then $(BIN)/lensflow down; else echo "nothing to stop (not installed)"; fi

clean: down
	rm -rf lancedb mlflow/mlflow.db mlflow/artifacts reports .cache .prefect .platform dvc-remote
