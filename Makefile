# subcog: make setup | build | test | demo | eval | bench | lint
# Two cargo invocations on purpose: the extension (feature `ext`, rusqlite's
# loadable_extension) and the in-process tests (feature `bundled`) must never share a build.
SHELL := /bin/bash
CARGO ?= cargo
EXT := target/release/libsubcog.so
PY := .venv/bin/python
export SUBCOG_EXT := $(CURDIR)/target/release/libsubcog

.PHONY: setup venv build test test-rust test-py test-shell test-mcp test-serve test-examples demo eval bench bench-micro lint clean stress
.PHONY: wheel npm test-packaging

## setup: ONNX Runtime, the model and its tokenizer into ~/.local/share/subcog (checksummed)
setup:
	@scripts/setup.sh

venv:
	@scripts/venv.sh

## build: target/release/libsubcog.so, and target/release/subcog (bundled SQLite, own cargo
## invocation and target dir: `cli` implies `bundled`, which must not meet `ext`)
build:
	$(CARGO) build --release --lib
	$(CARGO) build --release --no-default-features --features cli --target-dir target/cli --bin subcog
	cp target/cli/release/subcog target/release/subcog

$(EXT): build

## test: set-up, build, then every test (Rust unit/in-process, Python, sqlite3 shell)
test: setup venv build test-rust test-py test-shell test-mcp test-serve test-examples test-packaging

test-rust:
	$(CARGO) test --no-default-features --features bundled

test-py: venv build
	SUBCOG_REQUIRE_EXT=1 timeout 1200 $(PY) -m pytest -q tests/py

test-shell: build
	tests/shell/test_sqlite3_cli.sh

## test-mcp: the subcog binary through the MCP Python SDK (pytest) and the MCP Inspector CLI
## (npm ci in tests/mcp; SUBCOG_SKIP_NPM=1 skips the npm part, saying so)
test-mcp: venv build
	SUBCOG_REQUIRE_BIN=1 timeout 900 $(PY) -m pytest -q tests/mcp
	timeout 900 tests/mcp/inspector.sh

## test-serve: `subcog serve` over HTTP (tests/serve, pytest): tokens, scopes in every tool,
## limits and attacks, 16 clients for SUBCOG_LOAD_SECONDS (15), SUBCOG_FAULT_ROUNDS (20)
## SIGKILLs under load, Litestream replication, restores and a VFS read replica (from the venv);
## first the unit tests of the binary (tokens file, scopes)
test-serve: venv build
	$(CARGO) test --release --no-default-features --features cli --target-dir target/cli --bin subcog
	SUBCOG_REQUIRE_BIN=1 timeout 900 $(PY) -m pytest -q tests/serve

## test-examples: examples/python_example.py (stdlib sqlite3) and examples/node (better-sqlite3)
test-examples: build
	/usr/bin/python3 examples/python_example.py
	@if [ "$$SUBCOG_SKIP_NPM" = 1 ]; then echo "examples/node: SKIPPED (SUBCOG_SKIP_NPM=1)"; else \
	  cd examples/node && { [ node_modules/.package-lock.json -nt package-lock.json ] \
	    || npm ci --no-audit --no-fund --loglevel=error \
	    || { echo "examples/node: FAILED to install better-sqlite3 with npm ci (see above);" \
	              "set SUBCOG_SKIP_NPM=1 to skip the npm-based tests" >&2; exit 1; }; } \
	  && node example.js; fi

## wheel: dist/subcog-<version>-py3-none-manylinux_2_34_x86_64.whl (the extension, the binary, the
## model and the tokenizer; depends on onnxruntime from PyPI) packed by hatchling from the outputs
## of `make build` and `make setup` (packaging/stage.sh; nothing is compiled again)
wheel: setup build
	packaging/stage.sh python packaging/python/build/stage
	mkdir -p dist && rm -f dist/subcog-*.whl
	SUBCOG_STAGE=$(CURDIR)/packaging/python/build/stage /usr/bin/python3 -m pip wheel -q --no-deps \
	  --wheel-dir dist packaging/python
	@ls -l dist/subcog-*.whl

## npm: dist/subcog-<version>.tgz (`npm pack` of packaging/npm: the extension, the binary, the
## model, the tokenizer and ONNX Runtime), from the same outputs
npm: setup build
	@if [ "$$SUBCOG_SKIP_NPM" = 1 ]; then echo "npm: SKIPPED (SUBCOG_SKIP_NPM=1)"; else \
	  set -e; packaging/stage.sh npm packaging/npm/native; \
	  mkdir -p dist && rm -f dist/subcog-*.tgz; \
	  (cd packaging/npm && npm pack --pack-destination ../../dist --loglevel=error >/dev/null); \
	  ls -l dist/subcog-*.tgz; fi

## test-packaging: install the wheel and the npm package into fresh environments (empty HOME, no
## SUBCOG_* variables, the checkout hidden) and use them (tests/packaging; SUBCOG_SKIP_NPM=1 skips
## the npm part, saying so)
test-packaging: venv wheel npm
	timeout 1200 $(PY) -m pytest -q -s tests/packaging

## demo: set-up, build, then a memory database from examples/memories.jsonl and a few searches
demo: setup build
	/usr/bin/python3 examples/demo.py

## eval: LoCoMo recall@k of KNN, keyword and hybrid search (../shared/data/locomo-dev.json)
eval: setup build
	/usr/bin/python3 benches/py/locomo_eval.py

## bench: the cross-tool suite (benches/py/bench_suite.py): subcog against sqlite-vec, usearch and
## Python onnxruntime, measured side by side in the same run, with ratios and PASS/MISS per
## target. BENCH_ARGS passes options (e.g. BENCH_ARGS="--quick" or "--sizes 10000 --markdown");
## BENCH_MICRO=1 also runs the criterion micro-benchmarks. The first run embeds the text
## corpus (several minutes) and caches it in target/bench-cache/.
bench: setup venv build
	$(PY) benches/py/bench_suite.py $(BENCH_ARGS)
	@if [ "$$BENCH_MICRO" = 1 ]; then $(MAKE) --no-print-directory bench-micro; fi

## dedup-study: which default dedup_threshold (benches/py/dedup_threshold.py): hand-written
## correction pairs and LoCoMo, per threshold; STUDY_ARGS passes options ("--markdown --verify")
.PHONY: dedup-study
dedup-study: setup venv build
	$(PY) benches/py/dedup_threshold.py $(STUDY_ARGS)

## bench-micro: criterion micro-benchmarks in benches/*.rs (bundled SQLite, in-process; own
## target dir, because the bench profile writes to target/release and would replace the .so)
bench-micro: setup
	$(CARGO) bench --no-default-features --features bundled --target-dir target/bench \
	  --bench knn --bench embed --bench primitives

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --lib -- -D warnings
	$(CARGO) clippy --no-default-features --features bundled --all-targets -- -D warnings
	$(CARGO) clippy --no-default-features --features cli --bin subcog -- -D warnings

clean:
	$(CARGO) clean

## stress: the differential test, longer (20 seeds x 5000 operations, release build), the
## property tests of tests/fuzz.rs with PROPTEST_CASES (default 5000) cases each, and the load
## and SIGKILL tests of `subcog serve` for 60 s and 50 rounds (needs `make build` and the venv)
stress:
	SUBCOG_DIFF_OPS=$${SUBCOG_DIFF_OPS:-5000} SUBCOG_DIFF_SEEDS=$${SUBCOG_DIFF_SEEDS:-$$(seq -s, 1 20)} \
	  $(CARGO) test --release --target-dir target/stress --no-default-features --features bundled \
	  --test differential -- --nocapture
	PROPTEST_CASES=$${PROPTEST_CASES:-5000} $(CARGO) test --release --target-dir target/stress \
	  --no-default-features --features bundled --test fuzz
	SUBCOG_LOAD_SECONDS=$${SUBCOG_LOAD_SECONDS:-60} SUBCOG_FAULT_ROUNDS=$${SUBCOG_FAULT_ROUNDS:-50} \
	  SUBCOG_REQUIRE_BIN=1 $(PY) -m pytest -q -s tests/serve/test_load.py
