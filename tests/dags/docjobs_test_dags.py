"""
DAGs the test suite runs with ``dag.test()`` against the emulator: one submit and one sensor per vendor,
in deferrable and in poke mode, plus timeout and durable-submit cases. The document name comes from the
run conf (``file``, ``name``), since the emulator picks its scenario from it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor

FILE = "{{ params.file }}"


def finovox(wait):
    submit = FinovoxSubmitDocumentOperator(task_id="submit", file=FILE)
    return submit, FinovoxResultSensor(task_id="wait", retrieve_token=submit.output, **wait)


def finovox_case(wait):
    submit = FinovoxSubmitCaseOperator(
        task_id="submit", documents=[FILE], use_case="rental", analyse_type=["decision", "share_link"]
    )
    return submit, FinovoxResultSensor(task_id="wait", retrieve_token=submit.output, analysis="case", **wait)


def mindee(wait):
    submit = MindeeSubmitOperator(task_id="submit", document=FILE, product="invoices", version="v4")
    return submit, MindeeJobSensor(
        task_id="wait", job_id=submit.output, product="invoices", version="v4", **wait
    )


def docimprint(wait, submit_class=DocimprintSubmitOperator):
    submit = submit_class(task_id="submit", source="https://example.com/{{ params.name }}")
    return submit, DocimprintJobSensor(task_id="wait", job_id=submit.output, **wait)


def biros(wait):
    submit = BirosSubmitOperator(task_id="submit", file=FILE, service_id="svc-1")
    return submit, BirosDocumentSensor(task_id="wait", service_id="svc-1", document_id=submit.output, **wait)


class WorkerDiesAfterSubmit(DocimprintSubmitOperator):
    """Fails its first try right after the vendor accepted the job, as a killed worker would."""

    def execute(self, context):
        reference = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost after submitting")
        return reference


def make_dag(dag_id, build, **wait):
    with DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params={"file": "", "name": "doc.pdf"},
        # Retries are allowed, so a test can see that a vendor failure does not use them.
        default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    ) as dag:
        submit, sensor = build({"poke_interval": 0.2, "timeout": 60, **wait})
        submit >> sensor
    return dag


VENDORS = {
    "finovox": finovox,
    "finovox_case": finovox_case,
    "mindee": mindee,
    "docimprint": docimprint,
    "biros": biros,
}
DAGS = {
    f"docjobs_{vendor}_{mode}": make_dag(f"docjobs_{vendor}_{mode}", build, deferrable=mode == "deferrable")
    for vendor, build in VENDORS.items()
    for mode in ("deferrable", "poke")
}
DAGS["docjobs_docimprint_reschedule"] = make_dag(
    "docjobs_docimprint_reschedule", docimprint, deferrable=False, mode="reschedule"
)
DAGS["docjobs_reschedule_vendor_down"] = make_dag(
    "docjobs_reschedule_vendor_down",
    docimprint,
    deferrable=False,
    mode="reschedule",
    max_consecutive_failures=2,
)
DAGS["docjobs_timeout_deferrable"] = make_dag(
    "docjobs_timeout_deferrable", docimprint, deferrable=True, timeout=2
)
DAGS["docjobs_timeout_poke"] = make_dag("docjobs_timeout_poke", docimprint, deferrable=False, timeout=2)
DAGS["docjobs_durable_submit"] = make_dag(
    "docjobs_durable_submit", lambda wait: docimprint(wait, WorkerDiesAfterSubmit), deferrable=True
)
globals().update(DAGS)
