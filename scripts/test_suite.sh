#!/usr/bin/env bash
# `make test`: the lint, then the suite in two steps, each one at a time so that no step's timing limits
# compete with another's for the cores:
# - everything but the real deployments on PYTEST_WORKERS pytest-xdist workers (default 4, more than the
#   cores: most of that time is waiting on Airflow starting, jobs and triggers polling, not CPU);
# - the real deployments (marker `integration`, minutes each), one after the other, in a pytest of their own
#   with its own --basetemp: a new pytest session resets /tmp/pytest-of-$USER to mode 0700, which locks the
#   embedded PostgreSQL's own system user out of a data folder below it (PANIC: could not open pg_control).
# (xdist's --dist loadgroup could keep the deployments together inside one pytest, but it groups nothing on
# pytest 9.2: pytest-xdist issue 1386.) The distributed deployment (marker `deploy`) is `make test-deploy`.
# Arguments go to both pytests, e.g. `make test PYTEST_ARGS="--durations=20"`. See tests/README.md.
set -u
VENV=${VENV:-.venv}
make --no-print-directory lint VENV="$VENV" || exit 1
"$VENV/bin/pytest" -q -n "${PYTEST_WORKERS:-4}" -m "not integration and not deploy" "$@"
rest=$?
basetemp=$(mktemp -d "${TMPDIR:-/tmp}/docjobs-deployments-XXXXXX")
chmod 755 "$basetemp"
"$VENV/bin/pytest" -q -p no:cacheprovider --basetemp "$basetemp/t" -m "integration and not deploy" "$@"
integration=$?
status=0
for rc in "$rest" "$integration"; do
  [ "$rc" = 0 ] || [ "$rc" = 5 ] || status=1 # 5: pytest selected nothing (PYTEST_ARGS="-k ...")
done
exit "$status"
