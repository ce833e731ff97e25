"""
Finovox: nightly fraud screening of the payslips that landed in object storage, and a decision on a
rental application folder with a shareable report link.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.sensors.finovox import FinovoxResultSensor

DATA = Path(__file__).parent / "data"

with DAG(
    dag_id="example_finovox",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs", "finovox"],
    # Any ObjectStoragePath URI works too, e.g. "s3://incoming/payslips/{{ ds }}/".
    params={"payslips": [str(DATA / "payslip_2026_10.pdf")], "folder": str(DATA / "rental_folder")},
) as dag:

    @task
    def payslips(params: dict) -> list[str]:
        return params["payslips"]

    # One mapped submit per payslip; each retry reuses its own token (Airflow >= 3.3).
    tokens = FinovoxSubmitDocumentOperator.partial(task_id="submit_payslip").expand(file=payslips())
    # Results are deleted 60 minutes after processing: the deferrable sensor stores each one as it arrives.
    risks = FinovoxResultSensor.partial(task_id="payslip_risk", deferrable=True, timeout=3600).expand(
        retrieve_token=tokens.output
    )

    case = FinovoxSubmitCaseOperator(
        task_id="submit_rental_folder",
        documents="{{ params.folder }}",
        use_case="rental",
        analyse_type=["decision", "explanation", "share_link"],
        share_link_settings={"access": "public", "password": ""},
    )
    decision = FinovoxResultSensor(
        task_id="rental_decision", retrieve_token=case.output, analysis="case", deferrable=True, timeout=3600
    )

    @task
    def report(risks: list[dict], decision: dict) -> dict:
        flagged = [r["name"] for r in risks if r["global_risk"] != "low"]
        return {"flagged_payslips": flagged, "rental_decision": decision["decision"]["status"]}

    report(risks.output, decision.output)
