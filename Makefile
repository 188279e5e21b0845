# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install debian-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/squeezefpga demo

# Headless Chromium for the report screenshot test, libftdi1 for openFPGALoader (Debian
# packages, installed by scripts/install-chromium and scripts/install-fpga-deps).
debian-deps:
	@scripts/install-chromium
	@scripts/install-fpga-deps

# Full suite, slow (full-network) tests included, warnings are errors (pyproject.toml).
test: $(STAMP) debian-deps
	$(BIN)/python -m pytest -n auto

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
