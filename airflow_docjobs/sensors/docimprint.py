"""docimprint job sensor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.sensors.base import DocJobSensor

if TYPE_CHECKING:
    from collections.abc import Sequence


class DocimprintJobSensor(DocJobSensor):
    """
    Wait for a docimprint job and return its final job JSON (``bundle_id``, ``manifest_sha256``...).

    Progress (``progress_pct``) is logged when it changes.

    :param job_id: job id returned by the submit operator, or a list of them (one trigger waits for all).
    :param docimprint_conn_id: docimprint connection id.
    """

    hook_class = DocimprintHook
    reference_field = "job_id"
    default_poke_interval = 3.0  # docimprint: poll every 2 to 5 s
    template_fields: Sequence[str] = ("conn_id", "job_id")

    def __init__(
        self,
        *,
        job_id: str | Sequence[str | None],
        docimprint_conn_id: str = DocimprintHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=docimprint_conn_id, **kwargs)
        self.job_id = job_id
