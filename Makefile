# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck clean fuzz audit-deps load soak bundle audit-bench workers-bench

$(VENV)/.installed: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e .
	touch $@

# One resolver run installs the package and its dev extras (and counts as the plain install).
$(VENV)/.installed-dev: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(VENV)/bin/explainer serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check explainer models api tests benchmarks notebooks docs
	$(VENV)/bin/ruff format --check explainer models api tests benchmarks notebooks docs

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

# The browser tests drive Debian's chromium (no browser download is possible here).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: lint typecheck $(CHROMIUM)
	$(PY) -m pytest -q

# Longer runs, not part of `make test`.
FUZZ_EXAMPLES ?= 1000
fuzz: $(VENV)/.installed-dev  # schemathesis, stateful phase included
	FUZZ_MAX_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q --timeout=3600 -p no:cacheprovider tests/fuzz/test_schemathesis.py

audit-deps: $(VENV)/.installed-dev  # needs pypi.org's JSON API
	$(PY) -m pytest -q tests/privacy/test_supply_chain.py
	$(VENV)/bin/pip-audit --strict -r constraints.txt --no-deps --disable-pip --progress-spinner off

load: $(VENV)/.installed-dev
	$(PY) -m benchmarks.load --clients 16 --seconds 60 --overload 4 --overload-seconds 30

soak: $(VENV)/.installed-dev
	$(PY) -m benchmarks.soak --requests 2000

bundle: $(VENV)/.installed-dev
	$(PY) -m benchmarks.bundle

audit-bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks.audit

workers-bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks.workers

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
