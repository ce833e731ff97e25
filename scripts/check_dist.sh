#!/usr/bin/env bash
# make dist-check: build the wheel and the sdist, install each in a fresh virtualenv, and check that
# Airflow registers the provider from it (`airflow providers list`) and that its files are all there.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/uv build --quiet --out-dir "$work/dist" .
for artifact in "$work"/dist/*.whl "$work"/dist/*.tar.gz; do
  venv="$work/venv-$(basename "$artifact")"
  "$python" -m venv "$venv"
  .venv/bin/uv pip install --quiet --python "$venv/bin/python" "$artifact"
  export AIRFLOW_HOME="$work/home-$(basename "$artifact")"
  listed="$("$venv/bin/airflow" providers list -o json)"
  echo "$listed" | "$venv/bin/python" -c '
import json, sys
providers = {p["package_name"]: p for p in json.load(sys.stdin)}
assert "airflow-docjobs" in providers, sorted(providers)
print("  registered:", "airflow-docjobs", providers["airflow-docjobs"]["version"])
'
  # Every module imports from the installed copy (not this checkout), the emulator's samples included.
  (cd "$work" && "$venv/bin/python" -c '
import importlib, pkgutil, airflow_docjobs
assert "site-packages" in airflow_docjobs.__file__, airflow_docjobs.__file__
names = [m.name for m in pkgutil.walk_packages(airflow_docjobs.__path__, "airflow_docjobs.")]
for name in names:
    importlib.import_module(name)
print("  imported", len(names), "modules")
')
  "$venv/bin/python" -m airflow_docjobs.emulator --help >/dev/null  # the emulator's CLI runs
  echo "ok: $(basename "$artifact")"
done
