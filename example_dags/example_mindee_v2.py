"""Mindee v2: extract every invoice of the day with a model of your account, in list mode."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.mindee_v2 import MindeeV2SubmitOperator
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor

DATA = Path(__file__).parent / "data"
# Your model's id, from the Mindee platform (the emulator takes any id).
MODEL_ID = "8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11"

with DAG(
    dag_id="example_mindee_v2",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs", "mindee"],
) as dag:
    # A list (or a folder, or an object-storage prefix ending in /) is one job per document.
    jobs = MindeeV2SubmitOperator(
        task_id="enqueue_invoices",
        document=[str(DATA / "invoice_2026_11_042.pdf")],
        model_id=MODEL_ID,
        confidence=True,
    )
    outcomes = MindeeV2JobSensor(
        task_id="invoice_results", job_id=jobs.output, model_id=MODEL_ID, deferrable=True, timeout=1800
    )

    @task
    def totals(outcomes: list[dict]) -> list[dict]:
        """In list mode the sensor returns one outcome per input; each result is in the results store."""
        from airflow_docjobs.results import read_json

        rows = []
        for outcome in outcomes:
            if outcome["state"] != "succeeded":
                continue
            fields = read_json(outcome["result_uri"])["result"]["inference"]["result"]["fields"]
            rows.append({"input": outcome["input"], "total_amount": fields["total_amount"]["value"]})
        return rows

    totals(outcomes.output)
