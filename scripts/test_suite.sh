#!/usr/bin/env bash
# `make test`: the lint, then every test but the real deployments on PYTEST_WORKERS pytest-xdist workers
# (default 4, more than the cores: most of that time is waiting on Airflow starting, jobs and triggers
# polling, not CPU). Arguments go to pytest, e.g. `make test PYTEST_ARGS="--durations=20"`.
# `make test-deploy` (scripts/test_deploy.sh) runs the real deployments. See tests/README.md.
set -u
VENV=${VENV:-.venv}
make --no-print-directory lint VENV="$VENV" || exit 1
"$VENV/bin/pytest" -q -n "${PYTEST_WORKERS:-4}" -m "not integration and not deploy" "$@"
rc=$?
[ "$rc" = 5 ] && rc=0 # 5: pytest selected nothing (PYTEST_ARGS="-k ...")
exit "$rc"
