# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins
export VIDSEARCH_DATA_DIR ?= $(CURDIR)/data

.PHONY: help install system-deps venv weaviate up down status demo lint format test test-unit bench bench-search bench-search-sweep bench-gpu bench-e2e bench-tracking bench-transcribe lock clean

help:
	@echo "make demo    install everything, start the embedded stack, ingest a sample video"
	@echo "make test    install everything, lint (ruff, mypy), run the whole test suite"
	@echo "make lint    ruff check, ruff format --check, mypy (include/ and plugins/); make format fixes what it can"
	@echo "make up / make down / make status   the embedded stack (Postgres, Weaviate, Airflow, warm worker)"
	@echo "make bench   stage benchmarks (writes bench/reports/); make bench-search: search at 10k..1M objects; make bench-search-sweep: index settings"
	@echo "make bench-gpu   detect+embed frames/s with full-size models on a CUDA GPU"
	@echo "make bench-e2e   end to end through the real scheduler, next to the reference design and Pixeltable"
	@echo "make bench-tracking   tracker IDF1/MOTA on a generated 1 fps street scene (a few seconds)"
	@echo "make bench-transcribe   speech-to-text real-time factor (tiny + random whisper-base) next to the video branch's, per segment"

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

# Lint and types first: they take seconds, the suite takes minutes.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install lint
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest tests/unit

bench: install
	$(PY) bench/stages.py

# Similar-object latency and import rate at 10k .. 1M objects (about 25 minutes).
bench-search: install
	$(PY) bench/search.py

# Vector index settings (HNSW, quantisers): recall, p99, memory and import rate per configuration.
bench-search-sweep: install
	$(PY) bench/search_sweep.py $(SWEEP_ARGS)

# Detect+embed frames/s, full-size random-init DETR-R50 + CLIP B/32 (needs a CUDA GPU; --device cpu works, slowly).
bench-gpu: venv
	$(PY) bench/gpu_detect_embed.py

# End to end through the real scheduler (starts the embedded stack), next to the reference design and
# Pixeltable (installed into data/bench/pixeltable-venv on first use); 1, 10 and 30-minute videos.
bench-e2e: install
	$(PY) bench/e2e.py $(E2E_ARGS)

# Tracker quality (motmetrics MOTA, IDF1, ID switches, stitching) on generated scenes with known trajectories.
bench-tracking: venv
	$(PY) bench/tracking.py --seed 0 --heldout 100-109 --tune 1-5

# Transcription real-time factor per segment, tiny and random-init whisper-base (its FLOPs), next to the
# video branch (1 fps frames + detect+embed); TRANSCRIBE_ARGS="--device cuda" on a GPU.
bench-transcribe: venv
	$(PY) bench/transcribe.py $(TRANSCRIBE_ARGS)

# Re-resolve requirements.in into exact pins (needs the package index).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -r requirements.in
	.lockvenv/bin/pip freeze --exclude-editable > requirements.txt
	rm -rf .lockvenv
