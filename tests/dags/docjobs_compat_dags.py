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
from airflow_docjobs.operators.mindee_v2 import MindeeV2SubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor

FILE = "{{ params.file }}"
WAIT = {"task_id": "wait", "deferrable": True, "poke_interval": 0.2, "timeout": 60}
MINDEE = {"product": "invoices", "version": "v4"}
MINDEE_V2 = {"model_id": "8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11"}


def finovox():
    submit = FinovoxSubmitDocumentOperator(task_id="submit", file=FILE)
    return submit, FinovoxResultSensor(retrieve_token=submit.output, **WAIT), "global_risk"


def mindee():
    submit = MindeeSubmitOperator(task_id="submit", document=FILE, **MINDEE)
    return submit, MindeeJobSensor(job_id=submit.output, **MINDEE, **WAIT), "document"


def mindee_v2():
    submit = MindeeV2SubmitOperator(task_id="submit", document=FILE, **MINDEE_V2)
    return submit, MindeeV2JobSensor(job_id=submit.output, **MINDEE_V2, **WAIT), "inference"


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
        "mindee_v2": mindee_v2,
        "docimprint": docimprint,
        "biros": biros,
    }.items()
}
globals().update(DAGS)
