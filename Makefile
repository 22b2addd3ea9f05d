# The inner loop, tier by tier; `bash scripts/test` (CI) sets up and runs all of it.
PY ?= .venv/bin/python

.PHONY: lint unit service fuzz e2e all bench

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports
	$(PY) -m schemas.export --check

# A quarter of the property examples CI draws (GATEKEEPER_PROPERTY_SCALE): seconds, not a minute.
unit:
	GATEKEEPER_PROPERTY_SCALE=0.25 $(PY) -m pytest tests/unit -q

service:
	$(PY) -m pytest tests/service -q

fuzz:
	$(PY) -m pytest tests/fuzz -q

e2e:
	$(PY) -m pytest -m "e2e and not slow" -q

all:
	bash scripts/test

bench:
	$(PY) -m bench.perf
