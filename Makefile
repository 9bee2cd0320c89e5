# `make demo` and `make test` set up .venv themselves (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.atool-installed
DEMO_OUT ?= demo_out
SEED ?= 0

.PHONY: demo test test-slow test-integration bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/atool demo --out $(DEMO_OUT) --seed $(SEED)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# A real Label Studio in its own .venv-labelstudio/ (installed once; see tools/labelstudio_env.sh).
test-integration: $(STAMP)
	bash tools/labelstudio_env.sh install
	$(PY) -m pytest -q -m integration tests/integration

bench: $(STAMP)
	$(PY) tools/bench_query.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info
