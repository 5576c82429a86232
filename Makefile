# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins
export VIDSEARCH_DATA_DIR ?= $(CURDIR)/data

.PHONY: help install system-deps venv weaviate up down status demo test test-unit bench bench-search bench-gpu lock clean

help:
	@echo "make demo    install everything, start the embedded stack, ingest a sample video"
	@echo "make test    install everything, run the whole test suite"
	@echo "make up / make down / make status   the embedded stack (Postgres, Weaviate, Airflow, warm worker)"
	@echo "make bench   stage benchmarks (writes bench/reports/); make bench-search: search at 10k..1M objects"
	@echo "make bench-gpu   detect+embed frames/s with full-size models on a CUDA GPU"

install: system-deps venv weaviate

system-deps:
	@bash scripts/install-system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

weaviate: venv
	$(PY) -m devstack build-weaviate

up: install
	$(PY) -m devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi

status: venv
	$(PY) -m devstack status

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit

bench: install
	$(PY) bench/stages.py

# Similar-object latency and import rate at 10k .. 1M objects (about 25 minutes).
bench-search: install
	$(PY) bench/search.py

# Detect+embed frames/s, full-size random-init DETR-R50 + CLIP B/32 (needs a CUDA GPU; --device cpu works, slowly).
bench-gpu: venv
	$(PY) bench/gpu_detect_embed.py

# Re-resolve requirements.in into exact pins (needs the package index).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -r requirements.in
	.lockvenv/bin/pip freeze --exclude-editable > requirements.txt
	rm -rf .lockvenv
