"""One sensor base for every vendor: poke, reschedule and deferrable modes share one reading of a poll."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar

import pendulum
from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
    mask_secret,
)

from airflow_docjobs import exceptions
from airflow_docjobs.exceptions import DocJobsError, VendorJobFailedError, VendorTransientError
from airflow_docjobs.hooks.base import FAILED, SUCCEEDED, DocJobsHook, JobStatus
from airflow_docjobs.triggers.job import EVENT_STATUSES, DocJobTrigger

# How long past the trigger's own deadline the defer timeout waits: a backstop if the triggerer is gone.
DEFER_GRACE = timedelta(minutes=5)


class DocJobSensor(BaseSensorOperator):
    """
    Wait for a vendor job and return the vendor's final result JSON, unchanged.

    Subclasses name the hook, the default poll interval and build the job reference. In deferrable mode
    the wait runs in the triggerer (:class:`~airflow_docjobs.triggers.job.DocJobTrigger`) with an absolute
    deadline ``timeout`` seconds after the first poke; otherwise each poke polls once through the sync
    path. Either way a transient poll failure never ends the wait by itself; a vendor-reported failure
    fails the task at once (``VendorJobFailedError``, no retry).

    :param deferrable: run the wait in the triggerer; defaults to ``[operators] default_deferrable``.
    :param max_consecutive_failures: transient poll failures in a row that end the wait.
    """

    hook_class: ClassVar[type[DocJobsHook]]
    default_poke_interval: ClassVar[float] = 30.0
    ui_color = "#d9ecf2"

    def __init__(
        self,
        *,
        conn_id: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_failures: int = 10,
        poke_interval: float | timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            poke_interval=self.default_poke_interval if poke_interval is None else poke_interval, **kwargs
        )
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self._failures = 0
        self._last_progress: str | None = None

    def job_reference(self) -> dict[str, Any]:
        """The JSON job reference, from the (rendered) parameters."""
        raise NotImplementedError

    @cached_property
    def hook(self) -> DocJobsHook:
        return self.hook_class(**{self.hook_class.conn_name_attr: self.conn_id})

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        self.job  # noqa: B018 - masks secret tokens before Airflow stores the rendered fields for the UI

    @cached_property
    def job(self) -> dict[str, Any]:
        job = self.job_reference()
        for key in self.hook_class.secret_job_keys:
            if job.get(key):
                mask_secret(job[key])
        return job

    # ---- deferrable ---------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One poll first: a job that already ended needs no trigger.
        with self.hook:
            done = self.poke(context)
        if done:
            return done.xcom_value
        deadline = pendulum.now("UTC").add(seconds=self.timeout)
        self.defer(
            trigger=DocJobTrigger(
                hook_class=f"{self.hook_class.__module__}.{self.hook_class.__qualname__}",
                conn_id=self.conn_id,
                job=self.job,
                deadline=deadline.isoformat(),
                poll_interval=self.poke_interval,
                max_consecutive_failures=self.max_consecutive_failures,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFER_GRACE,
        )

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Resume after the trigger; on success fetch the result once more (the event never carries it)."""
        if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES:
            raise DocJobsError(
                f"unexpected trigger event {event!r}", vendor=self.hook.vendor, conn_id=self.conn_id
            )
        if event["status"] == "success":
            with self.hook:
                status = self.hook.get_job_status(self.job)
            if status.state != SUCCEEDED:
                raise DocJobsError(
                    f"the trigger saw the job succeed but it now reads {status.state}",
                    vendor=self.hook.vendor,
                    conn_id=self.conn_id,
                )
            return status.result
        if event["status"] == "timeout":
            raise AirflowSensorTimeout(event.get("message") or "the job did not end before the timeout")
        if event["status"] == "failed":
            raise self._job_failed(event.get("message"))
        error = getattr(exceptions, str(event.get("error_type")), None)
        if not (isinstance(error, type) and issubclass(error, DocJobsError)):
            error = DocJobsError
        raise error(event.get("message") or "the wait failed")

    # ---- poke / reschedule ----------------------------------------------------------------------------

    def poke(self, context: Any) -> PokeReturnValue | bool:
        try:
            status = self.hook.get_job_status(self.job)
        except VendorTransientError as exc:
            self._failures += 1
            if self._failures >= self.max_consecutive_failures:
                raise
            self.log.warning("Poll %d failed, will retry: %s", self._failures, exc)
            return False
        self._failures = 0
        return self._read(status)

    def _read(self, status: JobStatus) -> PokeReturnValue | bool:
        if status.state == SUCCEEDED:
            return PokeReturnValue(is_done=True, xcom_value=status.result)
        if status.state == FAILED:
            raise self._job_failed(status.message)
        if status.progress != self._last_progress:
            self.log.info(
                "%s job %s: %s",
                self.hook.vendor,
                self.hook.describe_job(self.job),
                status.progress or "pending",
            )
            self._last_progress = status.progress
        return False

    def _job_failed(self, message: str | None) -> VendorJobFailedError:
        return VendorJobFailedError(
            "the job failed",
            vendor=self.hook.vendor,
            conn_id=self.conn_id,
            job_id=self.hook.describe_job(self.job),
            vendor_message=message,
        )
