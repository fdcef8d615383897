# Two commands: `make run` and `make test`. Everything else is installed into .local/.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .local/venv
VENV_DB := .local/venv-db
PY := $(VENV)/bin/python

.PHONY: run test install lint bench clean

run: install
	@PYTHONPATH=. $(PY) -m deploy.local.run

test: install
	@$(MAKE) --no-print-directory lint
	@PYTHONPATH=. $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy shared services deploy

install: $(VENV)/.installed $(VENV_DB)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	@touch $@

# SecantusDB (the MongoDB-protocol server) gets its own environment: it pulls numpy and shapely.
$(VENV_DB)/.installed:
	@test -x $(VENV_DB)/bin/python || $(PYTHON) -m venv $(VENV_DB)
	$(VENV_DB)/bin/python -m pip install --quiet --disable-pip-version-check 'SecantusDB==0.7.0b3'
	@touch $@

clean:
	rm -rf .local/venv .local/venv-db .local/logs
