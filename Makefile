# The two commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test token e2e screenshots lint assets clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Fleethook needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when pyproject.toml changes; one stamp per set of extras.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $@ $(VENV)/.run-installed

assets: $(VENV)/.run-installed
	$(BIN)/python devstack.py assets

run: $(VENV)/.run-installed assets
	$(BIN)/python devstack.py run

# The demo login and API token the running (or last) `make run` printed.
token:
	@$(PYTHON) devstack.py token

test: $(VENV)/.dev-installed assets
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests alone (`make test` runs them too); they drive /usr/bin/chromium.
e2e: $(VENV)/.dev-installed assets
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

# The browser tests, writing the README's pictures into docs/screenshots/.
screenshots: $(VENV)/.dev-installed assets
	FLEETHOOK_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) static/vendor .cache .pytest_cache .mypy_cache .ruff_cache
