"""
The provider's metrics, through Airflow's own ``Stats``.

They go wherever the deployment sends Airflow's (StatsD, OpenTelemetry, Datadog; ``[metrics]``), and nowhere
when metrics are off.

Every name carries the vendor (``finovox``, ``mindee``, ``docimprint``, ``biros``) and Airflow's
``[metrics] statsd_prefix`` (default ``airflow``) in front; tagged backends also get a ``vendor`` tag.

=====================================  =======  ============================================================
name                                   type     counts
=====================================  =======  ============================================================
``docjobs.{vendor}.submits``           counter  documents (or cases, URLs) the vendor accepted
``docjobs.{vendor}.resent_submits``    counter  submits sent again after an answer that may have created a
                                                job (a possible double charge; see docs/reliability.md)
``docjobs.{vendor}.polls``             counter  status polls (one per waiting job per poll interval)
``docjobs.{vendor}.poll_failures``     counter  polls that failed transiently after the hook's retries
``docjobs.{vendor}.throttled``         counter  429 answers the hook paused on before retrying
``docjobs.{vendor}.results.{state}``   counter  results landed in the results store, ``succeeded`` or
                                                ``failed``
=====================================  =======  ============================================================
"""

from __future__ import annotations

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
