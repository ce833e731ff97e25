"""
Nightly run: N documents end to end through ``airflow dags test``, against the emulator's lower bound.

The emulator runs as a subprocess (``python -m airflow_docjobs.emulator --processing-seconds L
--concurrency C``): each job processes for L seconds, at most C at once per vendor, so N documents cannot
end before N x L / C seconds however they are submitted and polled. Airflow gets a fresh AIRFLOW_HOME on
SQLite (``airflow db migrate`` first, not timed) and its Mindee connection from ``AIRFLOW_CONN_*``
(plain HTTP). The DAGs are in ``benchmarks/dags/nightly.py``:

* ``bench_nightly_list`` on all N documents: a list-mode submit of a folder, one deferrable sensor;
* ``bench_nightly_mapped`` on a sample of the same documents: one mapped submit and one mapped sensor
  task instance per document, reported per document.

Wall time is the ``airflow dags test`` command's, start-up and DAG parsing included; task instances are
counted in the metadata DB's ``task_instance`` table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SECRET = "emulator"


def make_documents(folder: Path, count: int) -> None:
    """Small one-page PDFs, each with its own content (the submit sends one job per distinct content)."""
    folder.mkdir(parents=True)
    for n in range(count):
        (folder / f"invoice-{n:05d}.pdf").write_bytes(
            b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
            b"2 0 obj <</Type /Pages /Kids [3 0 R] /Count 1>> endobj\n"
            b"3 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]>> endobj\n"
            + f"% invoice number {n}\n".encode()
            + b"trailer <</Root 1 0 R>>\n%%EOF\n"
        )


@contextlib.contextmanager
def emulator(processing_seconds: float, concurrency: int) -> Iterator[str]:
    """The emulator CLI as a subprocess; yields its URL (it prints it when it listens)."""
    command = [sys.executable, "-m", "airflow_docjobs.emulator", "--port", "0"]
    command += ["--processing-seconds", str(processing_seconds), "--concurrency", str(concurrency)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stdout or ():
            if match := re.search(r"listening on (\S+)", line):
                url = match[1]
                break
        if url is None:
            raise SystemExit("the emulator did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def control(url: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url + path, method=method)
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read()
    return json.loads(body) if body else None


def airflow(env: dict[str, str], log: Path, *args: str) -> float:
    """Run an ``airflow`` command, its output appended to ``log``; return its wall time."""
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([AIRFLOW, *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise SystemExit(f"airflow {' '.join(args)} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def run_facts(db: Path, dag_id: str) -> dict[str, Any]:
    """The DAG run's state and own duration, and its task instances, from the metadata DB."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        state, seconds = conn.execute(
            "SELECT state, (julianday(end_date) - julianday(start_date)) * 86400 FROM dag_run"
            " WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (dag_id,),
        ).fetchone()
        states = dict(
            conn.execute(
                "SELECT state, count(*) FROM task_instance WHERE dag_id = ? GROUP BY state", (dag_id,)
            ).fetchall()
        )
    return {"state": state, "run_s": seconds, "task_instances": sum(states.values()), "ti_states": states}


def measure(tmp: Path, documents: int, sample: int, processing_seconds: float, concurrency: int,
            log: Any = print) -> dict[str, Any]:  # fmt: skip
    folder, sample_folder = tmp / "documents", tmp / "sample"
    make_documents(folder, documents)
    sample_folder.mkdir()
    for path in sorted(folder.iterdir())[:sample]:
        (sample_folder / path.name).symlink_to(path)
    home, airflow_log = tmp / "airflow-home", tmp / "airflow.log"
    from cryptography.fernet import Fernet

    env = os.environ | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # A list sensor's job list past 4 KB goes to the results store, encrypted with this key.
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "DOCJOBS_BENCH_DOCUMENTS": str(folder),
        "DOCJOBS_BENCH_SAMPLE": str(sample_folder),
    }
    log(f"  airflow db migrate (fresh AIRFLOW_HOME {home}, SQLite; output in {airflow_log})")
    airflow(env, airflow_log, "db", "migrate")
    result: dict[str, Any] = {"documents": documents, "processing_s": processing_seconds}
    result |= {"concurrency": concurrency, "lower_bound_s": documents * processing_seconds / concurrency}
    with emulator(processing_seconds, concurrency) as url:
        env["AIRFLOW_CONN_MINDEE_DEFAULT"] = json.dumps(
            {"conn_type": "mindee", "host": f"{url}/mindee", "password": SECRET}
        )
        for dag_id, prefix, count in (
            ("bench_nightly_list", "", documents),
            ("bench_nightly_mapped", "mapped_", sample),
        ):
            control(url, "/_emulator/reset", "POST")
            log(f"  airflow dags test {dag_id} ({count} documents)")
            wall = airflow(env, airflow_log, "dags", "test", dag_id)
            facts = run_facts(home / "airflow.db", dag_id)
            if facts["state"] != "success":
                raise SystemExit(f"{dag_id} ended {facts['state']}: {facts['ti_states']}; see {airflow_log}")
            requests = control(url, "/_emulator/stats")["requests"]
            result |= {
                f"{prefix}wall_s": wall,
                f"{prefix}run_s": facts["run_s"],
                f"{prefix}task_instances": facts["task_instances"],
                f"{prefix}requests": requests,
            }
            log(f"    {wall:.1f} s, {facts['task_instances']} task instances, {requests} vendor requests")
    result["mapped_documents"] = sample
    result["mapped_wall_s_per_document"] = result["mapped_wall_s"] / sample
    result["mapped_task_instances_per_document"] = result["mapped_task_instances"] / sample
    return result
