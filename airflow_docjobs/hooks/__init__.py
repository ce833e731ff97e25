"""One hook per vendor over a shared layer: :mod:`~airflow_docjobs.hooks.base` and its modules."""
