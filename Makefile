# asp: two commands for a new user -- `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.asp-installed

.PHONY: demo test mutation bench docs lint clean install

install: $(STAMP)

# The environment: created if missing, refreshed when the package metadata or the
# native call path change.  Idempotent.
$(STAMP): pyproject.toml setup.py asp/runtime/_native.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet numpy
	$(PY) -m pip install --quiet -e '.[dev,docs,dask]'
	$(PY) -c "import asp._native" || (echo "asp: the native call path did not build" && exit 1)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/heat2d.py

# Two pytest workers (pytest-xdist): most of the suite's time is gcc compiling
# variants, one process at a time; two workers took it from 20 to 13 minutes on
# 2 cores.  TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal tests

# Breaks a tile bound, a parallel branch, a collapse and a reduction clause, and checks
# that the suite's per-variant checks catch each (tests/test_mutation.py; also in `test`).
mutation: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_mutation.py

# The differential fuzzer's long run: 10,000 generated kernels against their Python
# (`make test` runs a bounded, deterministic slice in tests/test_fuzz.py).
fuzz: $(STAMP)
	$(PY) -m tests.fuzz --kernels 10000 --findings fuzz_findings.md

bench: $(STAMP)
	$(PY) benchmarks/run.py

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

lint: $(STAMP)
	$(VENV)/bin/ruff check asp specializers examples benchmarks tests

clean:
	rm -rf build docs/_build bench-results .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
