"""airflow-docjobs: run document-AI vendors' asynchronous APIs from Airflow DAGs."""

__version__ = "0.1.0"
