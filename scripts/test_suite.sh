#!/usr/bin/env bash
# `make test`: the lint and the whole suite, side by side, since most of the suite's time is waiting (Airflow
# starting, jobs and triggers polling), not CPU. Three processes at once:
# - `make lint` (ruff, mypy: CPU, a minute or more on a cold cache), in the background;
# - the real deployments (marker `integration`, minutes each), one at a time in a pytest of their own;
# - everything else on PYTEST_WORKERS pytest-xdist workers (default 4, more than the cores: they mostly wait).
# The two background outputs follow the foreground one's. (xdist's --dist loadgroup could keep the deployments
# together inside one pytest, but it groups nothing on pytest 9.2: pytest-xdist issue 1386.)
# Arguments go to both pytests, e.g. `make test PYTEST_ARGS="--durations=20"`. See tests/README.md.
# -m: each background process in a group of its own that does not ignore SIGINT, so that a Ctrl-C reaches it
# (as a KeyboardInterrupt: the deployments' fixtures then stop their Airflow processes).
set -um
VENV=${VENV:-.venv}
stop_background() {
  [ -n "${deployments:-}" ] && kill -INT -- "-$deployments" 2>/dev/null
  [ -n "${lint:-}" ] && kill -TERM -- "-$lint" 2>/dev/null
}
trap stop_background INT TERM

make --no-print-directory lint VENV="$VENV" > .lint.log 2>&1 &
lint=$!
"$VENV/bin/pytest" -q -p no:cacheprovider -m "integration and not deploy" "$@" > .integration.log 2>&1 &
deployments=$!
echo "$VENV/bin/pytest -q -n ${PYTEST_WORKERS:-4} -m 'not integration and not deploy' $*  (beside: make lint, pytest -m integration)"
"$VENV/bin/pytest" -q -n "${PYTEST_WORKERS:-4}" -m "not integration and not deploy" "$@"
rest=$?
[ "$rest" = 2 ] && stop_background # 2: interrupted
wait "$deployments"
integration=$?
wait "$lint"
lint_status=$?

echo "---- pytest -q -m integration $* (the real deployments, run beside the above):"
cat .integration.log
echo "---- make lint (run beside the above):"
cat .lint.log
status=0
for rc in "$rest" "$integration" "$lint_status"; do
  [ "$rc" = 0 ] || [ "$rc" = 5 ] || status=1 # 5: pytest selected nothing (PYTEST_ARGS="-k ...")
done
exit "$status"
