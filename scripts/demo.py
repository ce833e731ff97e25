"""
``make demo``: start the vendor emulator on loopback, point one Airflow connection per vendor at it, run
``airflow dags test docjobs_demo`` on SQLite with deferrable sensors, print what was ingested, stop.

Everything lives under ``.demo/`` (Airflow home, SQLite databases, logs); nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vendors import CONN_TYPES

ROOT = Path(__file__).resolve().parent.parent
NIGHT = "2026-11-24"  # the day of the sample inbox, example_dags/data/inbox/2026-11-24/
WORK = ROOT / ".demo"
VENDORS = CONN_TYPES
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SUBMIT_PATHS = ("/analyse", "/case", "/predict_async", "/v1/extract", "/v1/jobs", "/async-predict")


def submit_count(port: int) -> int:
    """Submits (billed jobs) in the emulator's request journal so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/requests") as answer:
        journal = json.load(answer)
    return sum(r["method"] == "POST" and r["path"].endswith(SUBMIT_PATHS) for r in journal)


def start_emulator(port: int, log: Path) -> subprocess.Popen:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_docjobs.emulator", "--port", str(port), "--processing-seconds", "4"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    line = emulator.stdout.readline()
    if "listening" not in line:
        emulator.kill()
        sys.exit(f"the emulator did not start: {line!r}; see {log}")
    return emulator


# What the demo prints around the tables (README.md shows a sample; tests/test_demo_output.py compares).
HEADER = "both DAGs ran in {seconds:.0f}s; docjobs_demo ingested {count} results:"
NIGHTLY = f"docjobs_nightly over example_dags/data/inbox/{NIGHT}, ingested into docjobs_db:"
PAID = "vendor jobs created by the nightly run: {nightly}; by its re-run: {rerun} (nothing paid twice)"


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(WORK / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "DOCJOBS_DEMO_WAREHOUSE": str(WORK / "warehouse.sqlite"),
        "DOCJOBS_NIGHTLY_POKE_INTERVAL": "1",
    }
    for vendor in VENDORS:
        env[f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT"] = json.dumps(
            {"conn_type": vendor, "host": f"http://127.0.0.1:{port}/{vendor}", "password": "emulator"}
        )
    print(f"emulator on http://127.0.0.1:{port}, Airflow home {env['AIRFLOW_HOME']}", flush=True)
    emulator = start_emulator(port, WORK / "emulator.log")
    try:
        started = time.monotonic()
        submits: dict[str, int] = {}
        for step, args in (
            ("db migrate", ["db", "migrate"]),
            ("dags test", ["dags", "test", "docjobs_demo"]),
            # The nightly pipeline over the sample inbox, twice: the second night pays for nothing.
            ("nightly", ["dags", "test", "docjobs_nightly", NIGHT]),
            ("nightly again", ["dags", "test", "docjobs_nightly", NIGHT]),
        ):
            print(f"airflow {step} ...", flush=True)
            log = WORK / f"airflow-{step.replace(' ', '-')}.log"
            with log.open("w") as out:
                code = subprocess.call(
                    [str(BIN / "airflow"), *args], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            submits[step] = submit_count(port)
            if code != 0:
                print(log.read_text()[-6000:])
                print(f"airflow {step} failed (exit {code}); full log: {log}")
                return 1
        for step in ("dags test", "nightly", "nightly again"):
            log = WORK / f"airflow-{step.replace(' ', '-')}.log"
            output = log.read_text()
            if "state=success" not in output and "DagRunState.SUCCESS" not in output:
                print(output[-6000:])
                print(f"the {step} DAG run did not succeed; full log: {log}")
                return 1
        with sqlite3.connect(WORK / "warehouse.sqlite") as db:
            rows = db.execute("SELECT source, summary FROM document_results ORDER BY rowid").fetchall()
        print("\n" + HEADER.format(seconds=time.monotonic() - started, count=len(rows)))
        width = max(len(source) for source, _ in rows)
        for source, summary in rows:
            print(f"  {source:<{width}}  {summary}")
        print("\n" + NIGHTLY)
        sys.stdout.flush()
        subprocess.call([sys.executable, "-m", "airflow_docjobs.ingest.report"], env=env)
        nightly = submits["nightly"] - submits["dags test"]
        rerun = submits["nightly again"] - submits["nightly"]
        print("\n" + PAID.format(nightly=nightly, rerun=rerun))
        print(
            "\nlogs: .demo/airflow-*.log, warehouse: .demo/warehouse.sqlite, results: .demo/airflow/docjobs/"
        )
        return 0 if len(rows) == len(VENDORS) + 1 and nightly > 0 and rerun == 0 else 1
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    sys.exit(main())
