"""myBiros document sensor, optionally waiting for human review."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.sensors.base import DocJobSensor

if TYPE_CHECKING:
    from collections.abc import Sequence


class BirosDocumentSensor(DocJobSensor):
    """
    Wait for a myBiros document and return the predicted-document JSON.

    :param service_id: myBiros service id.
    :param document_id: document id returned by the submit operator (the API's ``resource``), or a list.
    :param include_validation_errors: ask for validation errors in the result.
    :param wait_for_review: also wait until a reviewer set ``revision_status`` to ``approved`` or
        ``not_approved`` (give a long ``timeout`` and ``poke_interval``: people are slower than models).
    :param biros_conn_id: myBiros connection id.
    """

    hook_class = BirosHook
    reference_field = "document_id"
    reference_params = ("service_id", "include_validation_errors", "wait_for_review")
    default_poke_interval = 5.0
    template_fields: Sequence[str] = (
        "conn_id",
        "service_id",
        "document_id",
        "include_validation_errors",
        "wait_for_review",
    )

    def __init__(
        self,
        *,
        service_id: str,
        document_id: str | Sequence[str | None],
        include_validation_errors: bool = False,
        wait_for_review: bool = False,
        biros_conn_id: str = BirosHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=biros_conn_id, **kwargs)
        self.service_id = service_id
        self.document_id = document_id
        self.include_validation_errors = include_validation_errors
        self.wait_for_review = wait_for_review
