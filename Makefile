# cdp: `make demo` runs the whole service locally; `make test` runs the suite.
# Only Python 3.11 is needed: dependencies come pinned with hashes from requirements-dev.lock
# (requirements.lock is the runtime subset, for images), and PostgreSQL is started embedded under
# .cdp/ when DATABASE_URL is unset.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum requirements-dev.lock | cut -c1-12)
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install demo serve test lint typecheck schema schema-check migrations-check check bench lock stop clean

install: $(STAMP)

$(STAMP): requirements-dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

serve: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

schema: install
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file openapi.yaml

schema-check: install
	@$(BIN)/python manage.py spectacular --validate --fail-on-warn --file $(VENV)/openapi.current.yaml
	@diff -u openapi.yaml $(VENV)/openapi.current.yaml || (echo "openapi.yaml is out of date: run 'make schema'" && exit 1)

migrations-check: install
	$(BIN)/python manage.py makemigrations --check --dry-run

check: lint typecheck migrations-check schema-check

bench: install
	$(BIN)/python -m benchmarks

# Re-resolve pinned versions (needs network); commit the result.
lock: install
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements-dev.lock

# Stop the embedded PostgreSQL (if it runs).
stop:
	@test -x $(BIN)/python && $(BIN)/python -c 'from pathlib import Path; from cdp.embedded_db import stop; print("embedded PostgreSQL stopped" if stop(Path.cwd()) else "embedded PostgreSQL was not running")' || true

clean: stop
	rm -rf $(VENV) .cdp .pytest_cache .mypy_cache .ruff_cache
