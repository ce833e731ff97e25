"""DAGs for the provider's retry policy and the sensors' soft_fail on the first poll, run by dag.test()."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.retry import docjobs_retry_policy
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor

try:  # Airflow: the bundle's folder is on sys.path (see _dies_after_submit.py)
    from _dies_after_submit import dies_after_submit
except ModuleNotFoundError:  # imported by the suite itself: tests/ is on sys.path
    from dags._dies_after_submit import dies_after_submit

SOURCE = "https://example.com/{{ params.name }}"


def dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params={"name": "doc.pdf"},
        default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    )


with dag("docjobs_retry_policy") as retry_policy:
    # The provider's policy, with no wait before a transient retry so the test does not sleep.
    DocimprintSubmitOperator(task_id="submit", source=SOURCE, retry_policy=docjobs_retry_policy(timedelta(0)))

with dag("docjobs_no_retry_policy") as no_retry_policy:
    DocimprintSubmitOperator(task_id="submit", source=SOURCE, retry_policy=None)

with dag("docjobs_soft_fail_first_poll") as soft_fail:
    submit = DocimprintSubmitOperator(task_id="submit", source=SOURCE)
    DocimprintJobSensor(
        task_id="wait", job_id=submit.output, deferrable=True, soft_fail=True, poke_interval=0.2
    )


with dag("docjobs_durable_failed_job") as durable_failed_job:
    # Its first try fails right after the vendor accepted the job, as a killed worker would.
    dies_after_submit(DocimprintSubmitOperator)(task_id="submit", source=SOURCE, retry_policy=None)


with DAG(
    "docjobs_bad_template",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"doc": ""},
    render_template_as_native_obj=True,
) as bad_template:
    MindeeSubmitOperator(task_id="submit", document="{{ params.doc }}", product="invoices", version="v4")
