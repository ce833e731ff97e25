"""Mindee v2 job sensor: the job, then the inference at its ``result_url``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook
from airflow_docjobs.sensors.base import DocJobSensor

if TYPE_CHECKING:
    from collections.abc import Sequence


class MindeeV2JobSensor(DocJobSensor):
    """
    Wait for a Mindee v2 job and return its inference JSON (``{"inference": {...}}``).

    A failed job fails the task with the problem's ``code`` and ``detail``.

    :param job_id: job id returned by the submit operator, or a list of them (one trigger waits for all).
    :param model_id: the model the jobs ran on; optional, it names the rows ingestion writes.
    :param mindee_v2_conn_id: Mindee v2 connection id.
    """

    hook_class = MindeeV2Hook
    reference_field = "job_id"
    reference_params = ("model_id",)
    default_poke_interval = 1.5  # the SDK's polling delay
    template_fields: Sequence[str] = ("conn_id", "job_id", "model_id")

    def __init__(
        self,
        *,
        job_id: str | Sequence[str | None],
        model_id: str | None = None,
        mindee_v2_conn_id: str = MindeeV2Hook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=mindee_v2_conn_id, **kwargs)
        self.job_id = job_id
        self.model_id = model_id
