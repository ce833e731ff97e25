"""
DAGs of ``tests/test_openlineage.py``: what the submit operators report as OpenLineage inputs and the ingest
operator as outputs. Every input comes from the run conf (``render_template_as_native_obj``, so a list
stays a list).

* ``docjobs_lineage_mindee``: a Mindee submit of ``document`` (a path, a list, a folder or an https URL),
  the sensor, and an ingest into ``database`` (tables and schema from the conf too).
* ``docjobs_lineage_docimprint``: one docimprint submit of ``source`` (a URL, or a list: one batch job).
* ``docjobs_lineage_cases``: a Finovox case batch of ``cases`` (case folders).
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator
from airflow_docjobs.operators.ingest import DocJobsIngestOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.sensors.mindee import MindeeJobSensor

MINDEE = {"product": "invoices", "version": "v4"}


def lineage_dag(dag_id: str, **params) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params=params,
        render_template_as_native_obj=True,
    )


with lineage_dag(
    "docjobs_lineage_mindee",
    document=None,
    database="docjobs_db",
    results_table="docjobs_results",
    fields_table="docjobs_fields",
    schema=None,
) as mindee:
    submit = MindeeSubmitOperator(task_id="submit", document="{{ params.document }}", **MINDEE)
    wait = MindeeJobSensor(
        task_id="wait", job_id=submit.output, poke_interval=0.2, timeout=60, max_failed=5, **MINDEE
    )
    DocJobsIngestOperator(
        task_id="ingest",
        results=wait.output,
        conn_id="{{ params.database }}",
        results_table="{{ params.results_table }}",
        fields_table="{{ params.fields_table }}",
        schema="{{ params.schema }}",
    )

with lineage_dag("docjobs_lineage_docimprint", source=None) as docimprint:
    DocimprintSubmitOperator(task_id="submit", source="{{ params.source }}")

with lineage_dag("docjobs_lineage_cases", cases=None) as cases:
    FinovoxSubmitCaseOperator(task_id="submit", cases="{{ params.cases }}", use_case="rental")
