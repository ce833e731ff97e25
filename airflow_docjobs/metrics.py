"""
The provider's metrics, through Airflow's own ``Stats``.

They go wherever the deployment sends Airflow's (StatsD, OpenTelemetry, Datadog; ``[metrics]``), and nowhere
when metrics are off.

Every name is ``docjobs.{vendor}.{what}`` (``vendor``: the connection type, ``finovox``, ``mindee``,
``docimprint``, ``biros``), after Airflow's own prefix; tagged backends also get a ``vendor`` tag. The names
and what each counts are in one table, in docs/deployment.md ("Metrics").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def _stats() -> Any:
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow < 3.2 keeps it in core
        from airflow.stats import Stats  # type: ignore[no-redef,attr-defined,unused-ignore]
    return Stats


def count(vendor: str, name: str, value: int = 1) -> None:
    """Add ``value`` to ``docjobs.{vendor}.{name}``; metrics never fail the caller."""
    try:
        _stats().incr(f"docjobs.{vendor}.{name}", value, tags={"vendor": vendor})
    except Exception:  # a broken metrics backend must not fail a submit or a wait
        return


def timing(vendor: str, name: str, seconds: float) -> None:
    """Send ``seconds`` as the timer ``docjobs.{vendor}.{name}``; metrics never fail the caller."""
    try:
        _stats().timing(f"docjobs.{vendor}.{name}", timedelta(seconds=seconds), tags={"vendor": vendor})
    except Exception:  # a broken metrics backend must not fail a wait
        return
