"""myBiros: extract an ID card, then wait for a reviewer's approval before loading it."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor

DATA = Path(__file__).parent / "data"

with DAG(
    dag_id="example_biros",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs", "biros"],
) as dag:
    document = BirosSubmitOperator(
        task_id="upload_id_card", file=str(DATA / "id_card_julien_moreau.pdf"), service_id="id-cards"
    )
    reviewed = BirosDocumentSensor(
        task_id="reviewed_id_card",
        service_id="id-cards",
        document_id=document.output,
        include_validation_errors=True,
        wait_for_review=True,
        deferrable=True,
        poke_interval=60,
        timeout=8 * 3600,  # reviewers work office hours
    )

    @task
    def entities(result: dict) -> dict:
        page = result["document_pages"][0]
        return {"revision_status": result["document"]["revision_status"], "fields": sorted(page["entities"])}

    entities(reviewed.output)
