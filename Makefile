# The usual chores. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3
PIP_FLAGS ?= --quiet --disable-pip-version-check --root-user-action=ignore

.PHONY: install install-test lint typecheck test demo format

install:
	$(PYTHON) -m pip install $(PIP_FLAGS) -c constraints.txt -e .

install-test:
	$(PYTHON) -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[test]'
	./scripts/install-test-peers

lint:
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -m ruff format --check src tests bench

format:
	$(PYTHON) -m ruff check --fix src tests bench
	$(PYTHON) -m ruff format src tests bench

typecheck:
	$(PYTHON) -m mypy

test: install-test lint typecheck
	$(PYTHON) -m pytest

demo: install
	smsgate demo
