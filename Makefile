# Developer and CI entry points. Everything installs into .venv from this repository's own files.
# `make demo`: build, start the workspace emulator, run `devbox-native setup` against it.
# `make test`: every check (rustfmt, clippy, cargo test, ruff, mypy, stubtest, node tests, pytest).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))

# bench/ is not on every branch: lint only the folders that exist.
PY_DIRS := python tests examples $(wildcard bench)

.PHONY: venv build-dev format lint-rust lint-python test-rust test-js test-python test demo bench clean

$(VENV)/.deps: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.9,<2"
	touch $@

venv: $(VENV)/.deps

# Release build (the benchmarks and the demo measure it); installs the dev extras too.
build-dev: venv
	$(VENV)/bin/maturin develop --release --extras dev --quiet

format:
	cargo fmt
	$(VENV)/bin/ruff format $(PY_DIRS)
	$(VENV)/bin/ruff check --fix $(PY_DIRS)

lint-rust:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

lint-python: build-dev
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest devbox_native._native --allowlist .mypy-stubtest-allowlist

test-rust:
	cargo test --quiet

test-js:
	node --test tests/js/

test-python: build-dev
	$(PY) -m pytest -q

test: lint-rust test-rust test-js lint-python test-python

demo: build-dev
	$(PY) examples/demo.py

bench: build-dev
	$(PY) bench/bench.py

clean:
	rm -rf $(VENV) target
