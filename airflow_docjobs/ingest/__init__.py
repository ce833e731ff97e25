"""
Ingestion: vendor results into a SQL database through Airflow's common-sql layer, idempotently.

- :mod:`~airflow_docjobs.ingest.tables`: the ``docjobs_results`` and ``docjobs_fields`` tables and rows.
- :mod:`~airflow_docjobs.ingest.vendors`: what each vendor's result says (analysis, headlines, fields).
- :mod:`~airflow_docjobs.ingest.database`: the connection, table creation, the upsert.
- :mod:`~airflow_docjobs.ingest.dedupe`: which documents are new (never pay twice for one).
- :mod:`~airflow_docjobs.ingest.report`: a text summary of the tables (``python -m`` it).

The operator is :class:`airflow_docjobs.operators.ingest.DocJobsIngestOperator`; the guide is
``docs/ingestion.md``.
"""

from __future__ import annotations

from airflow_docjobs.ingest.database import DEFAULT_CONN_ID, ResultsDatabase, embedded_database_path
from airflow_docjobs.ingest.dedupe import new_documents
from airflow_docjobs.ingest.errors import IngestError, ResultMissingError
from airflow_docjobs.ingest.tables import FIELDS_TABLE, RESULTS_TABLE
from airflow_docjobs.ingest.vendors import mindee_analysis

__all__ = [
    "DEFAULT_CONN_ID",
    "FIELDS_TABLE",
    "RESULTS_TABLE",
    "IngestError",
    "ResultMissingError",
    "ResultsDatabase",
    "embedded_database_path",
    "mindee_analysis",
    "new_documents",
]
