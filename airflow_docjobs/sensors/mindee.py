"""Mindee job sensor: the queue, then the document behind its redirect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.sensors.base import DocJobSensor

if TYPE_CHECKING:
    from collections.abc import Sequence


class MindeeJobSensor(DocJobSensor):
    """
    Wait for a Mindee asynchronous prediction and return the document JSON (``document`` and ``job``).

    :param job_id: job id returned by the submit operator, or a list of them (one trigger waits for all).
    :param product: product name, e.g. ``"invoices"``.
    :param version: product version, e.g. ``"v4"``.
    :param account: ``"mindee"`` for off-the-shelf products.
    :param mindee_conn_id: Mindee connection id.
    """

    hook_class = MindeeHook
    reference_field = "job_id"
    reference_params = ("product", "version", "account")
    default_poke_interval = 5.0
    template_fields: Sequence[str] = ("conn_id", "job_id", "product", "version", "account")

    def __init__(
        self,
        *,
        job_id: str | Sequence[str | None],
        product: str,
        version: str,
        account: str = "mindee",
        mindee_conn_id: str = MindeeHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=mindee_conn_id, **kwargs)
        self.job_id = job_id
        self.product = product
        self.version = version
        self.account = account
