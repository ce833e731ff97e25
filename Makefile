# Two commands on a fresh machine: `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint demo emulator bench clean

venv: $(STAMP)

# uv resolves Airflow's ~200 dependencies in seconds where pip takes minutes; it comes from PyPI.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[test,bench]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check airflow_docjobs tests example_dags scripts benchmarks
	$(VENV)/bin/ruff format --check airflow_docjobs tests example_dags scripts benchmarks

test: lint
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) scripts/demo.py

emulator: $(STAMP)
	$(PY) -m airflow_docjobs.emulator --port 8080

# Ours vs Airflow's HTTP provider triggers, one run, medians; see benchmarks/README.md.
bench: $(STAMP)
	$(PY) benchmarks/bench_polling.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache
