"""docimprint: one billed batch job for the day's documents, waited on in the triggerer."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor

with DAG(
    dag_id="example_docimprint",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs", "docimprint"],
    # Render "{{ params.sources }}" as the list itself, not its text.
    render_template_as_native_obj=True,
    params={"sources": ["https://example.com/lease_agreement.pdf", "https://example.com/utility_bill.pdf"]},
) as dag:
    # A list is one /v1/jobs batch (one charge); a single URL is one /v1/extract job.
    job = DocimprintSubmitOperator(task_id="queue_batch", source="{{ params.sources }}", retries=3)
    bundle = DocimprintJobSensor(task_id="bundle", job_id=job.output, deferrable=True, timeout=1800)

    @task
    def record(result: dict) -> dict:
        return {"bundle_id": result["bundle_id"], "manifest_sha256": result["manifest_sha256"]}

    record(bundle.output)
