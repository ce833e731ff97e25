"""
One DAG per vendor for every Airflow version we support (``make test-compat`` runs them on 2.11 and 3.0,
``make test`` on 3.3): a submit, a deferrable sensor, and a downstream task that gets the result as a dict.
Only what all of those versions share: common-compat imports, no retry policy, no task_state_store.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor

FILE = "{{ params.file }}"
WAIT = {"task_id": "wait", "deferrable": True, "poke_interval": 0.2, "timeout": 60}
MINDEE = {"product": "invoices", "version": "v4"}


def finovox():
    submit = FinovoxSubmitDocumentOperator(task_id="submit", file=FILE)
    return submit, FinovoxResultSensor(retrieve_token=submit.output, **WAIT), "global_risk"


def mindee():
    submit = MindeeSubmitOperator(task_id="submit", document=FILE, **MINDEE)
    return submit, MindeeJobSensor(job_id=submit.output, **MINDEE, **WAIT), "document"


def docimprint():
    submit = DocimprintSubmitOperator(task_id="submit", source="https://example.com/doc.pdf")
    return submit, DocimprintJobSensor(job_id=submit.output, **WAIT), "bundle_id"


def biros():
    submit = BirosSubmitOperator(task_id="submit", file=FILE, service_id="svc-1")
    sensor = BirosDocumentSensor(service_id="svc-1", document_id=submit.output, **WAIT)
    return submit, sensor, "document"


def make_dag(vendor, build):
    with DAG(
        f"docjobs_compat_{vendor}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params={"file": ""},
    ) as dag:
        submit, sensor, headline = build()

        @task
        def keep(result: dict, key: str = headline) -> dict:
            assert isinstance(result, dict), type(result)  # as downstream ETL gets it
            return {key: result[key]}

        submit >> sensor
        keep(sensor.output)
    return dag


DAGS = {
    f"docjobs_compat_{vendor}": make_dag(vendor, build)
    for vendor, build in {
        "finovox": finovox,
        "mindee": mindee,
        "docimprint": docimprint,
        "biros": biros,
    }.items()
}
globals().update(DAGS)
