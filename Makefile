# Every target sets up what it needs: a fresh clone runs `make test` or `make demo` as is.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-slow lint registry-schema demo rsicd pretrain transfer bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,search]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check harma_zoo tests benchmarks
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check harma_zoo tests benchmarks

# registry/schema/*.json, the JSON schemas editors check registry/*.yaml with, from the entry models.
registry-schema: $(STAMP)
	$(VENV)/bin/harma-zoo registry-schema

# The built-in default job: synthetic data drawn by the package, small backbone, CPU minutes.
demo: $(STAMP)
	$(VENV)/bin/harma-zoo bench --preset demo --out results/demo

# Real images (../shared/data/rsicd or $$HARMA_ZOO_DATA/rsicd): the tiny ViT trained on RSICD train,
# selected and reported on RSICD val.
rsicd: $(STAMP)
	$(VENV)/bin/harma-zoo train full_tiny-vit_rsicd

# The CPU transfer benchmark (README, "Results"). Stage 1: the tiny ViT from scratch on the source half of
# RSICD's scene classes, exported as a weights file (~12 min); the zoo ships its result as the backbone
# harma-tiny-vit-rsicd-source, so stage 2 does not need this.
pretrain: $(STAMP)
	$(VENV)/bin/harma-zoo train pretrain_tiny-vit_rsicd-source --work-dir results/pretrain
	$(VENV)/bin/harma-zoo export-backbone pretrain_tiny-vit_rsicd-source --checkpoint results/pretrain/best.safetensors \
		--out results/pretrain/harma-tiny-vit-rsicd-source.safetensors

# Stage 2: the six-row leaderboard, every method fine-tuned from that backbone to all of RSICD (~1 h on
# 2 cores; runs already finished in results/transfer are kept).
transfer: $(STAMP)
	$(VENV)/bin/harma-zoo bench --preset rsicd-transfer --out results/transfer

# CPU benchmarks (ViT-B-32 training step per method, encoding throughput, evaluation at dataset sizes),
# each measurement in its own process; tables on stdout, figures in results/bench.json. ~10 min on 2 cores;
# `make bench BENCH_ARGS=--quick` for a fast check (`--threads N`, `--compile`: see benchmarks/run.py --help).
bench: $(STAMP)
	$(PY) benchmarks/run.py --out results/bench.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
