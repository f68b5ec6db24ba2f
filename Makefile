# Fresh clone: `make demo` (set up, train on the embedded digits data) and `make test`.
# VENV can point at a shared virtual environment (CI reuses one to save 5 GB per clone);
# the install step still runs every time, so the venv always matches this checkout.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint bench leaderboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'

demo: install
	rm -rf $(DEMO_OUT)
	$(BIN)/robench train --dataset digits --out $(DEMO_OUT)
	for run in $(DEMO_OUT)/*/; do \
	    $(BIN)/robench eval "$$run" --attack pgd --attack autoattack --n-examples all || exit 1; \
	done

test: install
	$(BIN)/python -m pytest -q

# Regenerates the committed digits leaderboard in benchmarks/leaderboard/ (md, csv, png).
leaderboard: install
	$(BIN)/robench sweep benchmarks/leaderboard/digits.yaml

lint: install
	$(BIN)/ruff check robench tests benchmarks

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/attack_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
