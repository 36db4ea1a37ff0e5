# Every target sets up what it needs: a fresh clone runs `make test` or `make demo` as is.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-slow lint demo rsicd clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check harma_zoo tests
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check harma_zoo tests

# The built-in default job: synthetic data drawn by the package, small backbone, CPU minutes.
demo: $(STAMP)
	$(VENV)/bin/harma-zoo bench --preset demo --out results/demo

# Real images (../shared/data/rsicd or $$HARMA_ZOO_DATA/rsicd): the tiny ViT trained on RSICD train,
# selected and reported on RSICD val.
rsicd: $(STAMP)
	$(VENV)/bin/harma-zoo train full_tiny-vit_rsicd

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
