# The inner loop, tier by tier; `bash scripts/test` (CI) sets up and runs all of it.
PY ?= .venv/bin/python

.PHONY: lint unit service e2e all bench

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports
	$(PY) -m schemas.export --check

unit:
	$(PY) -m pytest -m "unit or fuzz" -q

service:
	$(PY) -m pytest -m service -q

e2e:
	$(PY) -m pytest -m "e2e and not slow" -q

all:
	bash scripts/test

bench:
	$(PY) -m bench.perf
