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

Each run has a **setting** (:data:`SETTINGS`): how long the vendor takes per job (a range: each job draws its
own time, ``--processing-seconds-max``), how many it runs at once, and the sensor's ``poke_interval``. A
setting whose jobs take minutes runs with every duration and the interval divided by its ``scale`` (the
emulator's clock is real time), and its figures are in those scaled seconds. The emulator counts vendor
requests (**requests per document** against the vendor's **floor**: Mindee v1 needs 3, the enqueue, the
queue poll that answers with the 302 and the document) and knows when each job ended and when a poll
first answered that it had: the **lag**, worst and median.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SECRET = "emulator"
# Mindee v1's fewest requests per document: enqueue, the queue poll answering 302, the document.
FLOOR = 3


@dataclass(frozen=True)
class Setting:
    """
    A vendor's timing: jobs take ``seconds``..``seconds_max`` each, ``concurrency`` at once, polled every
    ``poke_interval``; everything divided by ``scale`` when run (jobs of minutes would take hours).
    """

    name: str
    seconds: float
    seconds_max: float
    concurrency: int
    poke_interval: float
    scale: float = 1.0

    @property
    def mean_seconds(self) -> float:
        return (self.seconds + max(self.seconds, self.seconds_max)) / 2

    def lower_bound(self, documents: int) -> float:
        """N x L / C in the run's (scaled) seconds: no schedule can end the batch sooner."""
        return documents * self.mean_seconds / self.concurrency / self.scale


SETTINGS = {
    "default": Setting("default", 2.0, 2.0, 50, 1.0),
    # Finovox-like: minutes per document, 10 at once; run 100x faster (0.3-1.2 s, polled every 0.3 s).
    "slow": Setting("slow", 30.0, 120.0, 10, 30.0, scale=100.0),
    "fast": Setting("fast", 2.0, 5.0, 50, 1.0),
}


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
def emulator(setting: Setting) -> Iterator[str]:
    """The emulator CLI as a subprocess; yields its URL (it prints it when it listens)."""
    command = [sys.executable, "-m", "airflow_docjobs.emulator", "--port", "0"]
    command += ["--processing-seconds", str(setting.seconds / setting.scale)]
    command += ["--processing-seconds-max", str(setting.seconds_max / setting.scale)]
    command += ["--concurrency", str(setting.concurrency)]
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
        # Where the run's time went: each task's first start to its last end (a mapped task's over all).
        tasks = dict(
            conn.execute(
                "SELECT task_id, (julianday(max(end_date)) - julianday(min(start_date))) * 86400"
                " FROM task_instance WHERE dag_id = ? GROUP BY task_id",
                (dag_id,),
            ).fetchall()
        )
    return {
        "state": state,
        "run_s": seconds,
        "task_instances": sum(states.values()),
        "ti_states": states,
        "task_s": {task: round(value, 2) for task, value in tasks.items()},
    }


def measure(tmp: Path, documents: int, sample: int, setting: Setting, log: Any = print) -> dict[str, Any]:
    """Both DAGs (the mapped one only when ``sample``) in one fresh AIRFLOW_HOME against one emulator."""
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
        "DOCJOBS_BENCH_POKE_INTERVAL": str(setting.poke_interval / setting.scale),
    }
    log(f"  airflow db migrate (fresh AIRFLOW_HOME {home}, SQLite; output in {airflow_log})")
    airflow(env, airflow_log, "db", "migrate")
    result: dict[str, Any] = {"setting": asdict(setting), "documents": documents, "floor": FLOOR}
    result |= {"processing_s": setting.mean_seconds, "concurrency": setting.concurrency}
    result |= {"poll_interval_s": setting.poke_interval / setting.scale}
    result |= {"lower_bound_s": setting.lower_bound(documents)}
    runs = [("bench_nightly_list", "", documents)]
    if sample:
        runs.append(("bench_nightly_mapped", "mapped_", sample))
    with emulator(setting) as url:
        env["AIRFLOW_CONN_MINDEE_DEFAULT"] = json.dumps(
            {"conn_type": "mindee", "host": f"{url}/mindee", "password": SECRET}
        )
        for dag_id, prefix, count in runs:
            control(url, "/_emulator/reset", "POST")
            log(f"  airflow dags test {dag_id} ({count} documents, setting {setting.name})")
            load = os.getloadavg()[0]
            wall = airflow(env, airflow_log, "dags", "test", dag_id)
            facts = run_facts(home / "airflow.db", dag_id)
            if facts["state"] != "success":
                raise SystemExit(f"{dag_id} ended {facts['state']}: {facts['ti_states']}; see {airflow_log}")
            requests = control(url, "/_emulator/stats")["requests"]
            lags = control(url, f"/_emulator/lags?late_after={result['poll_interval_s']}")
            if lags["found"] != count:
                raise SystemExit(f"{dag_id}: {lags['found']} of {count} jobs seen ended; see {airflow_log}")
            outside = wall - facts["run_s"]
            result |= {
                f"{prefix}wall_s": wall,
                f"{prefix}run_s": facts["run_s"],
                f"{prefix}task_instances": facts["task_instances"],
                f"{prefix}task_s": facts["task_s"],
                f"{prefix}requests": requests,
                f"{prefix}requests_per_document": requests / count,
                f"{prefix}worst_lag_s": lags["worst_lag_s"],
                f"{prefix}median_lag_s": lags["median_lag_s"],
                f"{prefix}p99_lag_s": lags["p99_lag_s"],
                f"{prefix}worst_lag_job_ended_s": lags["worst_ended_s"],  # after the first poll answered
                # The worst lag of the jobs that ended after the first poll (the submit's backlog left out).
                f"{prefix}worst_lag_ended_later_s": lags["worst_lag_ended_later_s"],
                # Where the wall time went: Airflow's CLI start and exit around the run; in the run, the
                # vendor's own span (first submit to last end) and the rest (task start-up before the
                # first submit, finding the last job, the sensor's end).
                f"{prefix}outside_run_s": outside,
                f"{prefix}vendor_span_s": lags["vendor_span_s"],
                f"{prefix}run_outside_vendor_span_s": facts["run_s"] - lags["vendor_span_s"],
                f"{prefix}found_after_span_s": lags["found_after_span_s"],
                # How many jobs were found later than one interval after their end; the first twenty.
                f"{prefix}late_count": lags["late_count"],
                f"{prefix}late": lags["late"][:20],
                f"{prefix}polls_per_job": lags["polls"],
                f"{prefix}load_average": [load, os.getloadavg()[0]],
            }
            log(
                f"    {wall:.1f} s (outside the run {outside:.1f} s, vendor's span"
                f" {lags['vendor_span_s']:.1f} s, last found {lags['found_after_span_s']:.1f} s after it;"
                f" tasks: {facts['task_s']}), {facts['task_instances']} task instances,"
                f" {requests} vendor requests"
                f" ({requests / count:.2f}/document, floor {FLOOR}), lag worst {lags['worst_lag_s']:.2f} s"
                f" (its job ended {lags['worst_ended_s']:.2f} s after the first poll) p99 {lags['p99_lag_s']:.2f} s,"
                f" of jobs ending after the first poll {lags['worst_lag_ended_later_s'] or 0:.2f} s,"
                f" median {lags['median_lag_s']:.2f} s, load {load:.1f}"
            )
    if sample:
        result["mapped_documents"] = sample
        result["mapped_wall_s_per_document"] = result["mapped_wall_s"] / sample
        result["mapped_task_instances_per_document"] = result["mapped_task_instances"] / sample
    return result


def main() -> None:
    """One setting, one size, the list DAG only: ``python benchmarks/nightly.py --setting slow 1000``."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setting", choices=SETTINGS, default="default")
    parser.add_argument("--sample", type=int, default=0, help="documents of the mapped DAG (0: not run)")
    parser.add_argument("documents", type=int, nargs="?", default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docjobs-nightly-") as tmp:
        result = measure(Path(tmp), args.documents, args.sample, SETTINGS[args.setting])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
