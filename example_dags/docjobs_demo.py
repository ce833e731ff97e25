"""
docjobs_demo: every vendor end to end, the way a nightly ingestion DAG uses them.

Each vendor gets a submit operator (which pushes the vendor's token or job id) and a deferrable sensor
(which waits in the triggerer and returns the vendor's result JSON). One last task ingests the six
results into a SQLite "warehouse", idempotently (re-running the DAG replaces rows, never duplicates
them), and prints what it ingested. ``make demo`` runs it against the local emulator.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.operators.mindee_v2 import MindeeV2SubmitOperator
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor

DATA = Path(__file__).parent / "data"
# Short waits for the emulator; against the real vendors keep the sensors' defaults.
WAIT = {"poke_interval": 1, "timeout": 300, "deferrable": True}


def summarize(name: str, result: dict) -> str:
    """One line per result: the field a data engineer looks at first."""
    if name == "finovox_document":
        return f"global_risk={result['global_risk']} software={result.get('software')}"
    if name == "finovox_case":
        decision = result["decision"]
        return f"decision={decision['status']} fraud={decision['status_fraud']} share_link={'share_link' in result}"
    if name == "mindee":
        prediction = result["document"]["inference"]["prediction"]
        total = (prediction.get("total_amount") or {}).get("value")
        return f"document={result['document']['name']} pages={result['document']['n_pages']} total_amount={total}"
    if name == "mindee_v2":
        inference = result["inference"]
        total = inference["result"]["fields"].get("total_amount", {}).get("value")
        return f"file={inference['file']['name']} model={inference['model']['id']} total_amount={total}"
    if name == "docimprint":
        return f"bundle_id={result['bundle_id']} manifest_sha256={result['manifest_sha256'][:12]}..."
    pages = result.get("document_pages", [])
    return f"status={result['document']['status']} pages={len(pages)} entities={sum(len(p.get('entities', {})) for p in pages)}"


with DAG(
    dag_id="docjobs_demo",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["docjobs", "demo"],
    doc_md=__doc__,
) as dag:
    finovox_document = FinovoxSubmitDocumentOperator(
        task_id="finovox_submit_document", file=str(DATA / "payslip_2026_10.pdf")
    )
    finovox_document_result = FinovoxResultSensor(
        task_id="finovox_document_result", retrieve_token=finovox_document.output, **WAIT
    )

    finovox_case = FinovoxSubmitCaseOperator(
        task_id="finovox_submit_case",
        documents=str(DATA / "rental_folder"),
        use_case="rental",
        analyse_type=["decision", "share_link"],
        share_link_settings={"access": "public", "password": ""},
    )
    finovox_case_result = FinovoxResultSensor(
        task_id="finovox_case_result", retrieve_token=finovox_case.output, analysis="case", **WAIT
    )

    mindee = MindeeSubmitOperator(
        task_id="mindee_submit",
        document=str(DATA / "invoice_2026_11_042.pdf"),
        product="invoices",
        version="v4",
    )
    mindee_result = MindeeJobSensor(
        task_id="mindee_result", job_id=mindee.output, product="invoices", version="v4", **WAIT
    )

    # Mindee's current API: a model of your account, by its id (the emulator takes any id).
    mindee_v2 = MindeeV2SubmitOperator(
        task_id="mindee_v2_submit",
        document=str(DATA / "invoice_2026_11_042.pdf"),
        model_id="8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11",
        confidence=True,
    )
    mindee_v2_result = MindeeV2JobSensor(
        task_id="mindee_v2_result",
        job_id=mindee_v2.output,
        model_id="8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11",
        **WAIT,
    )

    docimprint = DocimprintSubmitOperator(
        task_id="docimprint_submit",
        source=["https://example.com/lease_agreement.pdf", "https://example.com/utility_bill.pdf"],
    )
    docimprint_result = DocimprintJobSensor(task_id="docimprint_result", job_id=docimprint.output, **WAIT)

    biros = BirosSubmitOperator(
        task_id="biros_submit", file=str(DATA / "id_card_julien_moreau.pdf"), service_id="id-cards"
    )
    biros_result = BirosDocumentSensor(
        task_id="biros_result", service_id="id-cards", document_id=biros.output, **WAIT
    )

    @task
    def ingest(results: dict[str, dict], run_id: str | None = None) -> int:
        """Upsert each result keyed by (source, run): re-running a DAG run replaces its rows, never duplicates."""
        home = os.environ.get("AIRFLOW_HOME", ".")
        warehouse = os.environ.get("DOCJOBS_DEMO_WAREHOUSE", os.path.join(home, "docjobs_demo.sqlite"))
        with sqlite3.connect(warehouse) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS document_results (source TEXT, run_id TEXT, summary TEXT,"
                " result TEXT, PRIMARY KEY (source, run_id))"
            )
            for name, result in results.items():
                db.execute(
                    "INSERT INTO document_results VALUES (?, ?, ?, ?) ON CONFLICT (source, run_id) DO UPDATE"
                    " SET summary = excluded.summary, result = excluded.result",
                    (name, run_id, summarize(name, result), json.dumps(result)),
                )
        width = max(map(len, results))
        print(f"\nIngested {len(results)} results into {warehouse}:")
        for name, result in results.items():
            print(f"  {name:<{width}}  {summarize(name, result)}")
        return len(results)

    ingest(
        results={
            "finovox_document": finovox_document_result.output,
            "finovox_case": finovox_case_result.output,
            "mindee": mindee_result.output,
            "mindee_v2": mindee_v2_result.output,
            "docimprint": docimprint_result.output,
            "biros": biros_result.output,
        },
        run_id="{{ run_id }}",
    )
