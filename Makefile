# The two commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist); each test file runs whole in one of them.
TEST_WORKERS ?= auto

.PHONY: run test token e2e screenshots lint lock assets clean mutants

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Fleethook needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs come from the hashed lock files (requirements/), rewritten by `make lock`
# after a change to pyproject.toml's dependencies; one stamp per lock.
$(VENV)/.run-installed: requirements/run.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/run.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements/dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.run-installed

# Every platform and Python from 3.11 in one file (uv's universal resolution), with hashes.
lock: $(VENV)/.dev-installed
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --generate-hashes \
	  --python-version 3.11 --extra embedded -o requirements/run.lock
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --generate-hashes \
	  --python-version 3.11 --extra embedded --extra dev -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --generate-hashes \
	  --python-version 3.11 --extra embedded --extra dev --extra mutants \
	  -o requirements/mutants.lock

assets: $(VENV)/.run-installed
	$(BIN)/python -m devstack assets

run: $(VENV)/.run-installed assets
	$(BIN)/python -m devstack run

# The demo login and API token the running (or last) `make run` printed.
token:
	@$(PYTHON) -m devstack token

test: $(VENV)/.dev-installed assets
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

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

# Mutation testing of the delivery engine (not in CI: slow). mutmut works on a copy in
# ./mutants/ (config: [tool.mutmut] in pyproject.toml); the fencing is outbox/recording.py.
MUTANTS ?= outbox.claims.* outbox.fanout.* outbox.recording.* \
  outbox.addresses.* webhooks.url_safety.*
MUTANTS_VENV := .venv-mutants
$(MUTANTS_VENV)/.installed: requirements/mutants.lock
	$(PYTHON) -m venv $(MUTANTS_VENV)
	$(MUTANTS_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/mutants.lock
	$(MUTANTS_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

mutants: $(MUTANTS_VENV)/.installed assets
	$(MUTANTS_VENV)/bin/mutmut run --max-children 4 $(foreach m,$(MUTANTS),'$(m)')
	$(MUTANTS_VENV)/bin/mutmut results | grep -v ': not checked$$' || true

clean:
	rm -rf $(VENV) $(MUTANTS_VENV) mutants static/vendor .cache .pytest_cache .mypy_cache .ruff_cache
