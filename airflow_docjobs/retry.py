"""
A ready ``retry_policy`` for Airflow >= 3.3: fail at once on what a retry cannot fix, retry what may pass.

Airflow 3.3 lets a task decide per exception whether a failure is worth a retry
(``airflow.sdk.definitions.retry_policy``). Our errors are typed for exactly that split (see
:mod:`airflow_docjobs.exceptions`): a refused key, a refused request, an unknown job or a bad parameter
fails the task without spending its retries; a transient vendor failure (still failing after the hook's
own retries) is retried after ``transient_delay``. Vendor-reported failures are ``AirflowFailException``s,
which Airflow never retries. Every operator and sensor of this provider uses it by default where
Airflow has retry policies; pass ``retry_policy=None`` to get Airflow's plain behaviour.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_docjobs.version_compat import HAS_RETRY_POLICY

INPUT = "airflow_docjobs.exceptions.DocJobsInputError"
PERMANENT = (
    "airflow_docjobs.exceptions.VendorAuthError",
    "airflow_docjobs.exceptions.VendorRequestError",
    "airflow_docjobs.exceptions.VendorNotFoundError",
)
TRANSIENT = "airflow_docjobs.exceptions.VendorTransientError"


def docjobs_retry_policy(transient_delay: timedelta = timedelta(minutes=1)) -> Any:
    """
    The provider's retry policy, or ``None`` on Airflow < 3.3 (no retry policies there).

    :param transient_delay: wait before retrying after a transient vendor failure.
    """
    if not HAS_RETRY_POLICY:
        return None
    from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

    return ExceptionRetryPolicy(
        rules=[
            RetryRule(
                exception=INPUT,
                action=RetryAction.FAIL,
                reason="bad input (a parameter, a connection setting, or a document missing, empty, "
                "unreadable or not of its format): no vendor was contacted, and a retry cannot help",
            ),
            RetryRule(
                exception=list(PERMANENT),
                action=RetryAction.FAIL,
                reason="the vendor refused the key, the request or the job: a retry cannot help",
            ),
            RetryRule(
                exception=TRANSIENT,
                action=RetryAction.RETRY,
                retry_delay=transient_delay,
                reason="transient vendor trouble: retrying later",
            ),
        ]
    )


def said(kwargs: dict[str, Any], name: str) -> bool:
    """
    Whether the user set operator argument ``name``, directly or through ``default_args``.

    Airflow's operator metaclass (``apply_defaults``) fills a subclass's own ``__init__`` parameters from the
    DAG's and task group's ``default_args`` but passes the merged ``default_args`` on as a keyword for the
    base class to apply its own (``retries``, ``retry_delay``, ``retry_policy``...): a subclass that sets one
    of those in ``kwargs`` would override the user's ``default_args``.
    """
    return name in kwargs or name in (kwargs.get("default_args") or {})


def with_defaults(kwargs: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """Operator kwargs with our ``defaults`` where the user said nothing (directly or in ``default_args``)."""
    for name, value in defaults.items():
        if not said(kwargs, name):
            kwargs[name] = value
    return kwargs


def with_retry_policy(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Operator kwargs with the provider's retry policy unless the user chose one (even ``None``)."""
    if not said(kwargs, "retry_policy") and (policy := docjobs_retry_policy()) is not None:
        kwargs["retry_policy"] = policy
    return kwargs
