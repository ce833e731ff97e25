"""
The package's one vendor list (``get_provider_info.CONN_TYPES``), for the scripts.

Read from the file itself, without importing the package: ``airflow_docjobs`` imports Airflow, and Airflow
reads (and may create) ``AIRFLOW_HOME`` when it is imported, before a script has set the home it means.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "_docjobs_provider_info",
    Path(__file__).resolve().parent.parent / "airflow_docjobs" / "get_provider_info.py",
)
_INFO = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_INFO)  # type: ignore[union-attr]  # a .py file always has a loader

CONN_TYPES: tuple[str, ...] = _INFO.CONN_TYPES
