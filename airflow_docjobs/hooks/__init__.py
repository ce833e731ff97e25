"""One hook per vendor over a shared httpx layer (:mod:`airflow_docjobs.hooks.base`)."""
