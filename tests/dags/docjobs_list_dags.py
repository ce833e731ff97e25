"""
List-mode DAGs the test suite runs with ``dag.test()``: one submit task sends every input of the run conf
(``files``: a list of paths or a folder; ``sources`` for docimprint), one sensor waits for all of them.
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
    from _dies_after_submit import dies_after_submit, killed_mid_batch
except ModuleNotFoundError:  # imported by the suite itself: tests/ is on sys.path
    from dags._dies_after_submit import dies_after_submit, killed_mid_batch

FILES = "{{ params.files }}"
MINDEE = {"product": "invoices", "version": "v4"}
MINDEE_V2 = {"model_id": "8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11"}


def finovox(wait):
    submit = FinovoxSubmitDocumentOperator(task_id="submit", file=FILES)
    return submit, FinovoxResultSensor(task_id="wait", retrieve_token=submit.output, **wait)


def finovox_case(wait):
    submit = FinovoxSubmitCaseOperator(task_id="submit", cases=FILES, use_case="rental")
    return submit, FinovoxResultSensor(task_id="wait", retrieve_token=submit.output, analysis="case", **wait)


def mindee(wait):
    submit = MindeeSubmitOperator(task_id="submit", document=FILES, **MINDEE)
    return submit, MindeeJobSensor(task_id="wait", job_id=submit.output, **MINDEE, **wait)


def mindee_v2(wait):
    submit = MindeeV2SubmitOperator(task_id="submit", document=FILES, **MINDEE_V2)
    return submit, MindeeV2JobSensor(task_id="wait", job_id=submit.output, **MINDEE_V2, **wait)


def biros(wait):
    submit = BirosSubmitOperator(task_id="submit", file=FILES, service_id="svc-1")
    return submit, BirosDocumentSensor(task_id="wait", service_id="svc-1", document_id=submit.output, **wait)


def docimprint(wait):
    # docimprint batches natively; here each source is its own job and one sensor waits for the list.
    submit = DocimprintSubmitOperator.partial(task_id="submit").expand(
        source=["https://example.com/a.pdf", "https://example.com/fail_b.pdf", "https://example.com/c.pdf"]
    )
    return submit, DocimprintJobSensor(task_id="wait", job_id=submit.output, **wait)


def docimprint_files(wait):
    # Files are uploaded, one /v1/extract job each (a /v1/jobs batch takes URLs only).
    submit = DocimprintSubmitOperator(task_id="submit", source=FILES)
    return submit, DocimprintJobSensor(task_id="wait", job_id=submit.output, **wait)


def mindee_retried(wait):
    # Its first try fails after submitting the whole list, as a worker lost mid-batch would.
    submit = dies_after_submit(MindeeSubmitOperator)(task_id="submit", document=FILES, **MINDEE)
    return submit, MindeeJobSensor(task_id="wait", job_id=submit.output, **MINDEE, **wait)


def mindee_killed(wait):
    # Its first try is SIGKILLed (process group and all) as it starts the third submit, one at a time.
    operator = killed_mid_batch(MindeeSubmitOperator, after=2)
    submit = operator(task_id="submit", document=FILES, max_in_flight=1, **MINDEE)
    return submit, MindeeJobSensor(task_id="wait", job_id=submit.output, **MINDEE, **wait)


def docimprint_qa(wait):
    # A focused endpoint takes one source per job: a list of sources is submitted in list mode.
    submit = DocimprintSubmitOperator(
        task_id="submit", source=FILES, endpoint="qa", options={"question": "Who signed the lease?"}
    )
    return submit, DocimprintJobSensor(task_id="wait", job_id=submit.output, **wait)


def make_dag(dag_id, build, **wait):
    with DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params={"files": []},
        render_template_as_native_obj=True,
        default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
    ) as dag:
        submit, sensor = build({"poke_interval": 0.2, "timeout": 60, "max_failed": 10, **wait})
        submit >> sensor
    return dag


BUILDS = {
    "finovox": finovox,
    "finovox_case": finovox_case,
    "mindee": mindee,
    "mindee_v2": mindee_v2,
    "biros": biros,
    "docimprint": docimprint,
    "docimprint_files": docimprint_files,
}
DAGS = {
    f"docjobs_list_{vendor}_{mode}": make_dag(
        f"docjobs_list_{vendor}_{mode}", build, deferrable=mode == "deferrable"
    )
    for vendor, build in BUILDS.items()
    for mode in ("deferrable", "poke")
}
DAGS["docjobs_list_docimprint_qa"] = make_dag("docjobs_list_docimprint_qa", docimprint_qa, deferrable=True)
DAGS["docjobs_list_strict"] = make_dag("docjobs_list_strict", mindee, deferrable=True, max_failed=0)
DAGS["docjobs_list_retried"] = make_dag("docjobs_list_retried", mindee_retried, deferrable=True)
DAGS["docjobs_list_killed"] = make_dag("docjobs_list_killed", mindee_killed, deferrable=True)
DAGS["docjobs_list_serial"] = make_dag(
    "docjobs_list_serial",
    lambda wait: (
        submit := MindeeSubmitOperator(
            task_id="submit",
            document=FILES,
            max_in_flight=1,
            # The provider's policy, with a second instead of its minute before the transient retry.
            retry_policy=docjobs_retry_policy(timedelta(seconds=1)),
            **MINDEE,
        ),
        MindeeJobSensor(task_id="wait", job_id=submit.output, **MINDEE, **wait),
    ),
    deferrable=True,
)
globals().update(DAGS)
