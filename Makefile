# Every target sets up what it needs: a fresh clone runs `make test` or `make demo` as is.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-slow lint demo clean

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

demo: $(STAMP)
	$(VENV)/bin/harma-zoo params --backbone open_clip:harma-tiny-vit --method harma

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
