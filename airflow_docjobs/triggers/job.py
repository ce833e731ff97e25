"""One trigger for every vendor: poll a job through its hook's async path until it ends or the deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pendulum
from airflow.providers.common.compat.module_loading import import_string
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_docjobs.exceptions import DocJobsError, VendorTransientError
from airflow_docjobs.hooks.base import FAILED, SUCCEEDED, DocJobsHook

# The closed set of statuses a DocJobTrigger event carries back to the sensor.
EVENT_STATUSES = frozenset({"success", "failed", "error", "timeout"})
MAX_BACKOFF = 300.0


class DocJobTrigger(BaseTrigger):
    """
    Poll a vendor job every ``poll_interval`` seconds until it succeeds, fails, or ``deadline`` passes.

    Every outcome resumes the sensor with a small event, ``{"status": "success" | "failed" | "error" |
    "timeout", ...}``; on success the sensor fetches the result once more and returns it. The result is
    never carried in the event: the triggerer logs every event payload, and document results hold
    personal data. Nor does the trigger end the task itself with ``TaskSuccessEvent(xcoms=...)``: Airflow
    3.3.2 stores such XComs JSON-encoded twice, so downstream tasks would receive the result as a string
    (``tests/test_standalone.py`` shows it on a real deployment).

    Polls that hit transient trouble (429, 5xx, network, timeouts, garbled bodies; already retried by
    the hook) are counted; the wait ends only after ``max_consecutive_failures`` of them in a row, and a
    healthy poll resets the count. The kwargs are JSON and hold no credential: the hook reads the API
    key from the connection in the triggerer. They do hold the job reference, which for Finovox is the
    retrieve token; Airflow stores trigger kwargs encrypted.

    :param hook_class: import path of a :class:`~airflow_docjobs.hooks.base.DocJobsHook` subclass.
    :param conn_id: Airflow connection id.
    :param job: the vendor job reference, as the hook's ``job(...)`` builds it.
    :param deadline: ISO 8601 time after which the wait fails as a sensor timeout; absolute, so a
        restarted triggerer keeps it.
    :param poll_interval: seconds between polls.
    :param max_consecutive_failures: transient poll failures in a row that end the wait.
    """

    def __init__(
        self,
        *,
        hook_class: str,
        conn_id: str,
        job: dict[str, Any],
        deadline: str,
        poll_interval: float,
        max_consecutive_failures: int = 10,
    ) -> None:
        super().__init__()
        json.dumps(job)  # fail at defer time, not in the triggerer, if the reference is not JSON
        self.hook_class = hook_class
        self.conn_id = conn_id
        self.job = dict(job)
        self.deadline = pendulum.parse(deadline).isoformat()
        self.poll_interval = float(poll_interval)
        self.max_consecutive_failures = int(max_consecutive_failures)
        hook_type = import_string(hook_class)
        if not (isinstance(hook_type, type) and issubclass(hook_type, DocJobsHook)):
            raise TypeError(f"hook_class must name a DocJobsHook subclass, got {hook_class!r}")
        self._hook_type: type[DocJobsHook] = hook_type

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "hook_class": self.hook_class,
                "conn_id": self.conn_id,
                "job": self.job,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "max_consecutive_failures": self.max_consecutive_failures,
            },
        )

    def _seconds_left(self) -> float:
        return (pendulum.parse(self.deadline) - pendulum.now("UTC")).total_seconds()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook_type(**{self._hook_type.conn_name_attr: self.conn_id})
        label = f"{hook.vendor} job ({hook.describe_job(self.job)})"
        failures = 0
        last_progress: str | None = None
        async with hook:
            while True:
                try:
                    status = await hook.aget_job_status(self.job)
                except VendorTransientError as exc:
                    failures += 1
                    if failures >= self.max_consecutive_failures:
                        yield _event("error", exc, f"{failures} polls in a row failed")
                        return
                    self.log.warning("Poll %d of %s failed, will retry: %s", failures, label, exc)
                except DocJobsError as exc:
                    yield _event("error", exc)
                    return
                else:
                    failures = 0
                    if status.state == SUCCEEDED:
                        self.log.info("%s succeeded", label)
                        yield TriggerEvent({"status": "success"})
                        return
                    if status.state == FAILED:
                        yield TriggerEvent({"status": "failed", "message": status.message})
                        return
                    if status.progress != last_progress:
                        self.log.info("%s: %s", label, status.progress or "pending")
                        last_progress = status.progress
                left = self._seconds_left()
                if left <= 0:
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "message": f"{label} still pending at the deadline {self.deadline}",
                        }
                    )
                    return
                # After failed polls, back off from the poll interval: 2x, 4x, ... up to MAX_BACKOFF.
                delay = min(MAX_BACKOFF, self.poll_interval * 2**failures) if failures else self.poll_interval
                await asyncio.sleep(min(delay, left))


def _event(status: str, exc: DocJobsError, note: str | None = None) -> TriggerEvent:
    message = f"{note}: {exc}" if note else str(exc)
    return TriggerEvent({"status": status, "error_type": type(exc).__name__, "message": message})
