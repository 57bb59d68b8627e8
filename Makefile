# scale: `make demo` runs the main job on the built-in default; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := results/demo
KNOWN  := results/known-answer

.DEFAULT_GOAL := help
.PHONY: help install quick demo docs test ci-deps bench lint clean

help: ## List the targets.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install scale (CPU torch 2.13.0 first where no torch is present).

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,ray,bpe]"
	touch $(STAMP)

demo: install ## Sweep, fit, plot and report sweeps/demo.toml (Shakespeare), then fit sweeps/known-answer.toml, whose E is known (minutes on 2 cores; reruns train nothing).
	$(BIN)/scale data prepare shakespeare
	$(BIN)/scale sweep sweeps/demo.toml --out $(DEMO) --workers 2
	$(BIN)/scale fit $(DEMO) --holdout 3 --backtest
	$(BIN)/scale plot $(DEMO)
	$(BIN)/scale status $(DEMO) --summary
	$(BIN)/scale report $(DEMO)
	$(BIN)/scale sweep sweeps/known-answer.toml --out $(KNOWN) --workers 2
	$(BIN)/scale fit $(KNOWN) --holdout 3 --backtest
	$(BIN)/scale status $(KNOWN) --summary

docs: demo ## Regenerate the README's figures, excerpt and quoted numbers (demo, known-answer, data-quality and repeat sweeps; reruns train nothing).
	$(BIN)/scale sweep sweeps/data-quality.toml --out results/data-quality --workers 2
	$(BIN)/scale fit results/data-quality --by dataset
	$(BIN)/scale sweep sweeps/repeat.toml --out results/repeat --workers 2
	$(BIN)/scale fit results/repeat --by dataset
	$(BIN)/scale fit results/repeat --law constrained --out results/repeat/constrained.fit.json
	$(BIN)/scale sweep sweeps/lr-transfer.toml --out results/lr-transfer --workers 2
	$(BIN)/python docs/make_docs.py

test: install ci-deps ## Run the test suite in 2 workers (no GPU needed; 646 tests, 4m46s on 2 idle cores, 2026-12-06; docs/benchmarks.md).
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10

quick: install ## The test suite without the tests marked slow (they train whole or shrunk shipped specs, Ray, the README).
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

ci-deps: # In CI only (CI=true): install Debian's chromium (the report's browser test) and Slurm (the Slurm executor's tests) when missing.
	@if [ "$$CI" = "true" ]; then .ci/install-chromium && .ci/install-slurm; fi

bench: install ## Benchmarks: trainer vs a bare PyTorch loop (whole runs, and steady-state step time), fitting vs a plain scipy loop.
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_fit.py --baseline-starts 300
	$(BIN)/python bench/bench_data.py
	$(BIN)/python bench/bench_calibration.py

lint: install ## Static checks with ruff.
	$(BIN)/ruff check scaling_cli tests bench

clean: ## Remove the virtual environment and caches (results are kept).
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
