"""
my_first_dag: a folder of three invoices to Mindee's invoice API in one batch, then each one's headline values.

The README runs it against the emulator: `make emulator`, then `airflow dags test my_first_dag`.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.results import read_json
from airflow_docjobs.sensors.mindee import MindeeJobSensor

# A folder: every document under it is one item of the batch. A list of paths, or an object-storage
# prefix ending in "/" such as "s3://inbox/{{ ds }}/invoices/", works the same way.
INVOICES = str(Path(__file__).parent / "data" / "inbox" / "2026-11-24" / "invoices")
PRODUCT = {"product": "invoices", "version": "v4"}

with DAG(
    dag_id="my_first_dag",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs"],
) as dag:
    # List mode: one task submits every document and returns one Mindee job id per document.
    submit = MindeeSubmitOperator(task_id="submit", document=INVOICES, **PRODUCT)
    # One trigger waits for the whole batch; the sensor returns one outcome per document, in input order.
    # invoice_2026_11_044_failed_scan.pdf fails on purpose ("fail" in a file name is the emulator's
    # failure scenario): up to max_failed failed or rejected documents do not fail the task.
    wait = MindeeJobSensor(
        task_id="wait", job_id=submit.output, deferrable=True, timeout=3600, max_failed=1, **PRODUCT
    )

    @task
    def headline_values(outcomes: list[dict]) -> list[dict]:
        rows = []
        for outcome in outcomes:
            if outcome["state"] != "succeeded":
                error = outcome["error"]
                print(f"{outcome['input']}: {outcome['state']} ({error['code']}: {error['message']})")
                continue
            # Results stay out of XCom: each one is in the results store, at its outcome's result_uri.
            result = read_json(outcome["result_uri"])["result"]
            prediction = result["document"]["inference"]["prediction"]
            row = {
                "file": result["document"]["name"],
                "invoice_number": prediction["invoice_number"]["value"],
                "supplier": prediction["supplier_name"]["value"],
                "total_amount": prediction["total_amount"]["value"],
                "currency": prediction["locale"]["currency"],
            }
            print(row)
            rows.append(row)
        return rows

    headline_values(wait.output)
