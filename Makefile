# `make demo` and `make test` do all set-up on a fresh machine (Python ≥ 3.10 with venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_IN  := chains/examples/demo.flac
DEMO_OUT := demo-output/

# Neural steps need torch, pinned in pyproject's `neural` extra as `torch==2.13.0` (a CPU wheel on this
# machine); a bare `torch` or a newer range pulls a multi-GB CUDA build.

.PHONY: install install-test demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A regular (non-editable) install, so package data (presets, demo clip) is tested as users get it.
install: $(BIN)/python
	$(BIN)/pip install --quiet ".[neural]"

install-test: $(BIN)/python
	$(BIN)/pip install --quiet ".[test]"

demo: install
	$(BIN)/chain apply remaster $(DEMO_IN) -o $(DEMO_OUT) --overwrite
	@echo "listen to $(DEMO_OUT)demo.flac"

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_OUT)
