"""
Errors of the ingestion, below the provider's own tree (:mod:`airflow_docjobs.exceptions`).

The tree::

    DocJobsError
     ├── DocJobsInputError        bad parameter or connection, raised before anything is written
     └── IngestError              some items could not be ingested; every other item was
          └── ResultMissingError  a landed result is not in the results store (also an AirflowFailException)
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_docjobs.exceptions import DocJobsError


class IngestError(DocJobsError):
    """Some items could not be ingested (the message names each); the others were written."""


class ResultMissingError(IngestError, AirflowFailException):
    """A landed result is not in the results store: a retry would not find it either."""
