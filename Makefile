# Two commands on a fresh machine with only Python 3.11 and make:
#   make run   - start a node with an embedded SQLite database and demo Parties
#                (on another port: make run PORT=8001)
#   make test  - lint, type-check and run the whole test suite
PYTHON ?= python3
PORT ?= 8000
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync
# uv trusts only its built-in root certificates unless told otherwise; behind a TLS-inspecting
# proxy (whose CA is in the system store, as pip uses it) `make run` would fail to download.
export UV_SYSTEM_CERTS ?= true

.PHONY: run test lint typecheck pytest sync bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml setup.py epix/permits/mapping.pyx
	@command -v cc >/dev/null || command -v gcc >/dev/null || { echo "make: a C compiler is \
	needed to build epix/permits/mapping.pyx: install gcc and Python's headers (Debian, Ubuntu: \
	apt-get install gcc python3-dev)" >&2; exit 1; }
	$(UV) sync --frozen --quiet
	touch $@

sync: $(VENV)/.synced

run: sync
	$(RUN) epix serve --demo --port $(PORT)

lint: sync
	$(RUN) ruff check epix tests
	$(RUN) ruff format --check epix tests

typecheck: sync
	$(RUN) mypy

pytest: sync
	$(RUN) pytest -n auto $(PYTEST_ARGS)

test: lint typecheck pytest

bench: sync
	$(RUN) epix bench validate
	$(RUN) epix bench verify
	$(RUN) epix bench node

clean:
	rm -rf $(TOOLS) $(VENV) .pytest_cache .mypy_cache .ruff_cache
