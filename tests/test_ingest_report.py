"""
``python -m airflow_docjobs.ingest.report --conn-id ID`` reads the connection wherever Airflow keeps it: here a
connection that exists only in the metadata database, not as an ``AIRFLOW_CONN_*`` variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from airflow_docjobs.ingest import ResultsDatabase


def test_the_report_reads_a_connection_from_the_metadata_database(airflow_db, tmp_path, monkeypatch):
    from airflow.models import Connection
    from airflow.utils.session import create_session

    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_REPORT_SETUP", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    ResultsDatabase("report_setup").ensure_tables()
    conn_id = f"warehouse_{uuid.uuid4().hex[:8]}"  # parallel-safe in the shared metadata database
    with create_session() as session:
        session.add(Connection(conn_id=conn_id, conn_type="sqlite", host=str(path)))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        run = subprocess.run(
            [sys.executable, "-m", "airflow_docjobs.ingest.report", "--conn-id", conn_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "docjobs_results: 0 rows, docjobs_fields: 0 rows" in run.stdout
