#!/usr/bin/env bash
# `make test-deploy`: the real deployments (marker `integration`), minutes each, one after the other in a
# pytest of their own: `airflow standalone` on SQLite, LocalExecutor on PostgreSQL with two triggerers, and
# the distributed one (marker `deploy`: Celery workers on Redis, PostgreSQL, an S3 server, three
# triggerers). Each takes both cores; side by side their time limits would compete.
# Its own --basetemp: a new pytest session resets /tmp/pytest-of-$USER to mode 0700, which locks the
# embedded PostgreSQL's own system user out of a data folder below it (PANIC: could not open pg_control).
# Arguments go to pytest, e.g. `make test-deploy PYTEST_ARGS="-s -k cluster"`. See tests/README.md.
set -u
VENV=${VENV:-.venv}
basetemp=$(mktemp -d "${TMPDIR:-/tmp}/docjobs-deployments-XXXXXX")
chmod 755 "$basetemp"
"$VENV/bin/pytest" -q -p no:cacheprovider --basetemp "$basetemp/t" -m integration "$@"
rc=$?
[ "$rc" = 5 ] && rc=0 # 5: pytest selected nothing (PYTEST_ARGS="-k ...")
exit "$rc"
