"""
The nightly-run benchmark's DAGs (``benchmarks/nightly.py`` runs them with ``airflow dags test``).

``bench_nightly_list``: one list-mode submit of a folder of documents, then one deferrable sensor that
waits for the whole batch: two task instances whatever the number of documents.
``bench_nightly_mapped``: the same work written per document, a mapped submit and a mapped sensor: two
task instances per document.

The folders come from the environment (set by ``benchmarks/nightly.py``), read when the file is parsed.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG

from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.mindee import MindeeJobSensor

DOCUMENTS = os.environ.get("DOCJOBS_BENCH_DOCUMENTS", "/nonexistent")
SAMPLE = Path(os.environ.get("DOCJOBS_BENCH_SAMPLE", "/nonexistent"))
PRODUCT = {"product": "invoices", "version": "v4"}
# poke_interval=1 by default: the jobs take seconds, so the wait should not add more than a second to the run
# (benchmarks/nightly.py sets it per setting).
POKE_INTERVAL = float(os.environ.get("DOCJOBS_BENCH_POKE_INTERVAL", "1"))
WAIT = {"deferrable": True, "poke_interval": POKE_INTERVAL, "timeout": 3600 * 4, "max_failed": 0}

with DAG("bench_nightly_list", schedule=None, catchup=False, tags=["benchmark"]):
    submit = MindeeSubmitOperator(task_id="submit", document=DOCUMENTS, **PRODUCT)
    submit >> MindeeJobSensor(task_id="wait", job_id=submit.output, **PRODUCT, **WAIT)

with DAG("bench_nightly_mapped", schedule=None, catchup=False, tags=["benchmark"]):
    files = sorted(str(p) for p in SAMPLE.glob("*.pdf")) if SAMPLE.is_dir() else []
    submitted = MindeeSubmitOperator.partial(task_id="submit", **PRODUCT).expand(document=files)
    MindeeJobSensor.partial(task_id="wait", **PRODUCT, **WAIT).expand(job_id=submitted.output)
