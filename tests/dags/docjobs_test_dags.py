"""
DAGs the test suite runs with ``dag.test()`` against the emulator: one submit and one sensor per vendor,
in each sensor mode (deferrable, poke, reschedule), plus timeout, durable-submit and vendor-down cases. The document name
comes from the run conf (``file``, ``name``), since the emulator picks its scenario from it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.operators.mindee_v2 import MindeeV2SubmitOperator
from airflow_docjobs.retry import docjobs_retry_policy
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor

try:  # Airflow: the bundle's folder is on sys.path (see _dies_after_submit.py)
    from _dies_after_submit import dies_after_submit
except ModuleNotFoundError:  # imported by the suite itself: tests/ is on sys.path
    from dags._dies_after_submit import dies_after_submit

FILE = "{{ params.file }}"
MINDEE_V2_MODEL = "8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11"
MODES = {
    "deferrable": {"deferrable": True},
    "poke": {"deferrable": False},
    "reschedule": {"deferrable": False, "mode": "reschedule"},
}


def finovox(wait, submit_class=FinovoxSubmitDocumentOperator):
    submit = submit_class(task_id="submit", file=FILE)
    return submit, FinovoxResultSensor(task_id="wait", retrieve_token=submit.output, **wait)


def finovox_case(wait, submit_class=FinovoxSubmitCaseOperator):
    submit = submit_class(
        task_id="submit", documents=[FILE], use_case="rental", analyse_type=["decision", "share_link"]
    )
    return submit, FinovoxResultSensor(task_id="wait", retrieve_token=submit.output, analysis="case", **wait)


def mindee(wait, submit_class=MindeeSubmitOperator):
    submit = submit_class(task_id="submit", document=FILE, product="invoices", version="v4")
    return submit, MindeeJobSensor(
        task_id="wait", job_id=submit.output, product="invoices", version="v4", **wait
    )


def mindee_v2(wait, submit_class=MindeeV2SubmitOperator):
    submit = submit_class(task_id="submit", document=FILE, model_id=MINDEE_V2_MODEL, confidence=True)
    return submit, MindeeV2JobSensor(task_id="wait", job_id=submit.output, model_id=MINDEE_V2_MODEL, **wait)


def docimprint(wait, submit_class=DocimprintSubmitOperator, source="https://example.com/{{ params.name }}"):
    submit = submit_class(task_id="submit", source=source)
    return submit, DocimprintJobSensor(task_id="wait", job_id=submit.output, **wait)


def biros(wait, submit_class=BirosSubmitOperator):
    submit = submit_class(task_id="submit", file=FILE, service_id="svc-1")
    return submit, BirosDocumentSensor(task_id="wait", service_id="svc-1", document_id=submit.output, **wait)


VENDORS = {
    "finovox": (finovox, FinovoxSubmitDocumentOperator),
    "finovox_case": (finovox_case, FinovoxSubmitCaseOperator),
    "mindee": (mindee, MindeeSubmitOperator),
    "mindee_v2": (mindee_v2, MindeeV2SubmitOperator),
    "docimprint": (docimprint, DocimprintSubmitOperator),
    "biros": (biros, BirosSubmitOperator),
}


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


DAGS = {}
for vendor, (build, submit_class) in VENDORS.items():
    for mode, wait in MODES.items():
        DAGS[f"docjobs_{vendor}_{mode}"] = make_dag(f"docjobs_{vendor}_{mode}", build, **wait)
        DAGS[f"docjobs_{vendor}_{mode}_timeout"] = make_dag(
            f"docjobs_{vendor}_{mode}_timeout", build, **wait, timeout=1
        )
    # A retry of the submit reuses the job its first try submitted (Airflow >= 3.3).
    DAGS[f"docjobs_{vendor}_durable"] = make_dag(
        f"docjobs_{vendor}_durable",
        lambda wait, build=build, submit_class=submit_class: build(wait, dies_after_submit(submit_class)),
    )

# The retry renders another source: other parameters, so a new job.
DAGS["docjobs_docimprint_durable_changed"] = make_dag(
    "docjobs_docimprint_durable_changed",
    lambda wait: docimprint(
        wait,
        dies_after_submit(DocimprintSubmitOperator),
        source="https://example.com/try{{ ti.try_number }}/{{ params.name }}",
    ),
)
# A vendor that stays down: two failed polls in a row end the wait, in every sensor mode. The provider's
# retry policy still retries the task, without its minute's wait, so a test can count polls per try.
for mode, wait in MODES.items():
    DAGS[f"docjobs_vendor_down_{mode}"] = make_dag(
        f"docjobs_vendor_down_{mode}",
        docimprint,
        **wait,
        max_consecutive_failures=2,
        retry_policy=docjobs_retry_policy(timedelta(0)),
    )
globals().update(DAGS)
