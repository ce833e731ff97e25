#!/usr/bin/env bash
# `make test`: the lint and every test but the real deployments, the tests on PYTEST_WORKERS pytest-xdist
# workers (default 4, more than the cores: most of that time is waiting on Airflow starting, jobs and
# triggers polling, not CPU). The lint (mypy: some 40 s of one core on a fresh clone) runs beside the tests,
# its output shown after theirs. Arguments go to pytest, e.g. `make test PYTEST_ARGS="--durations=20"`.
# `make test-deploy` (scripts/test_deploy.sh) runs the real deployments. See tests/README.md.
set -u
VENV=${VENV:-.venv}
lint_log=$(mktemp "${TMPDIR:-/tmp}/docjobs-lint-XXXXXX")
make --no-print-directory lint VENV="$VENV" >"$lint_log" 2>&1 &
lint=$!
"$VENV/bin/pytest" -q -n "${PYTEST_WORKERS:-4}" -m "not integration and not deploy" "$@"
rc=$?
[ "$rc" = 5 ] && rc=0 # 5: pytest selected nothing (PYTEST_ARGS="-k ...")
wait "$lint" || rc=1
cat "$lint_log"
rm -f "$lint_log"
exit "$rc"
