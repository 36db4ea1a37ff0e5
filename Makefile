# Every target sets up what it needs: a fresh clone runs `make test` or `make demo` as is.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
# torch and torchvision exactly as tested (constraints.txt); the package itself declares ranges
PIP_INSTALL := $(PY) -m pip install -q -c constraints.txt
EXTRAS := test,plot,parquet,siglip,search

.PHONY: test test-slow lint registry-schema demo rsicd pretrain transfer transfer-tune bench cards docs search-demo clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP_INSTALL) -e '.[$(EXTRAS)]'
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[$(EXTRAS),docs]'
	touch $(DOCS_STAMP)

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

# Stage 2: the leaderboard of six methods, each fine-tuned from that backbone to all of RSICD at the rate its grid
# chose, seeds 0, 1, 2 (mean ± std), two runs side by side with one thread each (41 min on 2 cores; runs already
# finished in results/transfer are kept). `make transfer-tune`: each method's learning-rate grid (its recipe's
# `tuning`), one epoch a rate (~80 min); the recipes state the rates it chose.
TRANSFER_ARGS ?= --parallel-runs 2
transfer: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/harma-zoo bench --preset rsicd-transfer --out results/transfer $(TRANSFER_ARGS)

transfer-tune: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/harma-zoo bench --preset rsicd-transfer-tune --out results/transfer-tune $(TRANSFER_ARGS)

# CPU benchmarks (ViT-B-32 training step per method, encoding throughput, evaluation at dataset sizes),
# each measurement in its own process; tables on stdout, figures in results/bench.json. ~10 min on 2 cores;
# `make bench BENCH_ARGS=--quick` for a fast check (`--threads N`, `--compile`: see benchmarks/run.py --help).
bench: $(STAMP)
	$(PY) benchmarks/run.py --out results/bench.json $(BENCH_ARGS)

# Every model card in model_cards/ rendered again from the registry (after a change to the renderer).
cards: $(STAMP)
	$(PY) -m harma_zoo.zoo.cards

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or a page missing from the
# nav fails the build (CI runs it).
docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

# Archive search on built-in data (docs/search.md): RSICD val indexed with the published RSICD adapter and three
# queries; then a synthetic georeferenced scene the package writes, cut into chips, its hits written as GeoJSON.
SEARCH_DEMO ?= results/search-demo
SEARCH_MODEL ?= harma_tiny-vit-rsicd-source_rsicd
HARMA_ZOO := $(VENV)/bin/harma-zoo
search-demo: $(STAMP)
	$(PY) -m harma_zoo.search.demo $(SEARCH_DEMO)
	$(HARMA_ZOO) index $(SEARCH_DEMO)/rsicd-val.txt --model $(SEARCH_MODEL) --out $(SEARCH_DEMO)/rsicd-val.index
	$(HARMA_ZOO) search $(SEARCH_DEMO)/rsicd-val.index "many planes parked next to a long terminal" -k 5
	$(HARMA_ZOO) search $(SEARCH_DEMO)/rsicd-val.index "a large playground with a red running track" -k 5
	$(HARMA_ZOO) search $(SEARCH_DEMO)/rsicd-val.index "many white storage tanks" -k 5
	$(HARMA_ZOO) index $(SEARCH_DEMO)/scene.tif --model $(SEARCH_MODEL) --chip 224 --overlap 112 --out $(SEARCH_DEMO)/scene.index
	$(HARMA_ZOO) search $(SEARCH_DEMO)/scene.index "white storage tanks" -k 3 --geojson $(SEARCH_DEMO)/scene-hits.geojson

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info site
