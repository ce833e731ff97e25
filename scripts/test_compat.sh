#!/usr/bin/env bash
# make test-compat: the hooks, the trigger and one deferrable dag.test() per vendor (tests/test_compat.py)
# on another Airflow or Python, each in its own virtualenv (.venv-compat-<airflow>-<python>).
# Usage: [PYTHON=python3.12] scripts/test_compat.sh 2.11 [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
version="$1"; shift
python="${PYTHON:-python3}"
venv=".venv-compat-$version-$("$python" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')"
stamp="$venv/.installed-$(sha256sum pyproject.toml scripts/test_compat.sh | sha256sum | cut -c1-12)"
case "$version" in
  # Airflow 3.0's task SDK answers every task start with a validation error under today's web stack
  # (../shared/notes/airflow-versions.md): pin what broke, as Airflow's constraints files would.
  3.0) pins=("cadwyn<6" "fastapi<0.117" "starlette<0.48") ;;
  *) pins=() ;;
esac
if [ ! -e "$stamp" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip uv
  # The emulator's server (uvicorn, Starlette) ships with Airflow 3 only: named here for 2.11.
  "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "apache-airflow==$version.*" \
    -e . pytest pytest-asyncio pytest-timeout starlette uvicorn "${pins[@]}"
  touch "$stamp"
fi
"$venv/bin/python" -c 'import airflow, sys; print("Airflow", airflow.__version__, "Python", sys.version.split()[0])'
# pyproject's warning filters name classes of today's Starlette; older stacks lack them.
exec "$venv/bin/pytest" -q -p no:cacheprovider -o addopts="--strict-markers" \
  -o filterwarnings="ignore::DeprecationWarning" tests/test_compat.py "$@"
