"""Mindee: extract every invoice of the day with the off-the-shelf invoice API, one mapped job each."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.mindee import MindeeJobSensor

DATA = Path(__file__).parent / "data"
PRODUCT = {"product": "invoices", "version": "v4"}

with DAG(
    dag_id="example_mindee",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs", "mindee"],
) as dag:
    # Local paths, object-storage URIs and public https:// URLs can be mixed.
    jobs = MindeeSubmitOperator.partial(task_id="enqueue_invoice", **PRODUCT).expand(
        document=[str(DATA / "invoice_2026_11_042.pdf")]
    )
    documents = MindeeJobSensor.partial(
        task_id="invoice_result", deferrable=True, timeout=1800, **PRODUCT
    ).expand(job_id=jobs.output)

    @task
    def to_rows(documents: list[dict]) -> list[dict]:
        rows = []
        for result in documents:
            prediction = result["document"]["inference"]["prediction"]
            rows.append(
                {
                    "document_id": result["document"]["id"],
                    "file": result["document"]["name"],
                    "invoice_number": (prediction.get("invoice_number") or {}).get("value"),
                    "total_amount": (prediction.get("total_amount") or {}).get("value"),
                }
            )
        return rows

    to_rows(documents.output)
