"""
What the running Airflow offers, checked in one place (as the official providers' ``version_compat.py``).

The provider supports Airflow 2.11 and every 3.x; features arrived on the way, and code elsewhere asks
these flags instead of importing and catching on its own.
"""

from __future__ import annotations

from typing import Any


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The installed Airflow's (major, minor, micro) version."""
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_0_PLUS = get_base_airflow_version_tuple() >= (3, 0, 0)
AIRFLOW_V_3_2_PLUS = get_base_airflow_version_tuple() >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS = get_base_airflow_version_tuple() >= (3, 3, 0)

# Triggers that carry a queue, and triggerers that serve only some (``airflow triggerer --queues``).
HAS_TRIGGER_QUEUES = AIRFLOW_V_3_2_PLUS

# task_state_store, ResumableJobMixin and retry policies arrived together in Airflow 3.3.
HAS_TASK_STATE_STORE = AIRFLOW_V_3_3_PLUS
HAS_RETRY_POLICY = AIRFLOW_V_3_3_PLUS


def resumable_job_mixin() -> type:
    """Airflow's ``ResumableJobMixin`` (3.3+), or a stand-in with its ``durable`` switch that always submits."""
    if AIRFLOW_V_3_3_PLUS:
        from airflow.sdk import ResumableJobMixin

        return ResumableJobMixin

    class SubmitEveryTry:
        """No ``task_state_store`` before Airflow 3.3: nothing to resume from, so every try submits."""

        def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.durable = durable

        def execute_resumable(self, context: Any) -> Any:
            return self.poll_until_complete(self.submit_job(context), context)  # type: ignore[attr-defined]

    return SubmitEveryTry


def async_connection_lookup(hook: Any) -> Any:
    """``hook.aget_connection`` where Airflow has it, else the sync lookup in a thread (Airflow 2.11, 3.0)."""
    lookup = getattr(hook, "aget_connection", None)
    if lookup is not None:
        return lookup
    from asgiref.sync import sync_to_async

    return sync_to_async(hook.get_connection)
