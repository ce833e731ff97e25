"""
Prepare a throwaway Airflow home for running your own DAGs against the vendor emulator.

    eval "$(.venv/bin/python scripts/airflow_home.py .airflow --emulator http://127.0.0.1:8080)"

It creates the directory (default ``.airflow/``), runs ``airflow db migrate`` in it (a fresh Airflow home
has no metadata database, and ``airflow dags test`` fails without one) and prints ``export`` lines for
your shell: ``AIRFLOW_HOME``, ``AIRFLOW__CORE__DAGS_FOLDER`` (default: this repository's
``example_dags/``), ``AIRFLOW__CORE__LOAD_EXAMPLES=False`` and one ``AIRFLOW_CONN_<VENDOR>_DEFAULT``
connection per vendor pointing at the emulator. Progress goes to stderr, the ``export`` lines to stdout,
so ``eval "$(...)"`` sets them in the current shell. Running it again on the same directory is harmless.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from vendors import CONN_TYPES

ROOT = Path(__file__).resolve().parent.parent
VENDORS = CONN_TYPES
# The secret the emulator accepts unless it was started with --api-key.
EMULATOR_SECRET = "emulator"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/airflow_home.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("home", nargs="?", default=".airflow", help="the Airflow home (default: .airflow)")
    parser.add_argument(
        "--emulator",
        default="http://127.0.0.1:8080",
        help="the emulator's root URL, as `make emulator` prints it (default: http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--dags-folder",
        default=str(ROOT / "example_dags"),
        help="the folder Airflow reads DAG files from (default: this repository's example_dags/)",
    )
    parser.add_argument(
        "--api-key", default=EMULATOR_SECRET, help="the secret in every connection (default: emulator)"
    )
    args = parser.parse_args(argv)
    url = urlsplit(args.emulator)
    if url.scheme not in ("http", "https") or not url.hostname:
        parser.error(
            f"--emulator must be an http(s) URL such as http://127.0.0.1:8080, got {args.emulator!r}"
        )
    return args


def airflow_executable() -> str:
    """The ``airflow`` of this virtualenv, else the first one on the PATH."""
    beside = Path(sys.executable).parent / "airflow"
    return str(beside) if beside.exists() else "airflow"


def environment(home: Path, emulator: str, dags_folder: Path, api_key: str) -> dict[str, str]:
    """The variables to export, in the order they are printed."""
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    for vendor in VENDORS:
        conn = {"conn_type": vendor, "host": f"{emulator.rstrip('/')}/{vendor}", "password": api_key}
        env[f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT"] = json.dumps(conn)
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(args.home).expanduser().resolve()
    dags_folder = Path(args.dags_folder).expanduser().resolve()
    if not dags_folder.is_dir():
        print(f"airflow_home: DAGs folder {dags_folder} does not exist", file=sys.stderr)
        return 1
    home.mkdir(parents=True, exist_ok=True)
    env = environment(home, args.emulator, dags_folder, args.api_key)
    log = home / "db-migrate.log"
    print(f"airflow db migrate in {home} (log: {log}) ...", file=sys.stderr, flush=True)
    with log.open("w") as out:
        code = subprocess.call(
            [airflow_executable(), "db", "migrate"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if code != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        print(f"airflow_home: `airflow db migrate` failed (exit {code}); see {log}", file=sys.stderr)
        return 1
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"# Airflow home ready; DAGs from {dags_folder}, vendors at {args.emulator}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
