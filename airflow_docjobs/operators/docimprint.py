"""docimprint submit operator: one ``/v1/extract`` job, or one ``/v1/jobs`` batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.operators.base import DocJobSubmitOperator


class DocimprintSubmitOperator(DocJobSubmitOperator):
    """
    Queue an extraction; return the job id. Each job is billed, so a retry reuses the job (Airflow >= 3.3).

    :param source: one document URL (``/v1/extract``) or a list of URLs (one ``/v1/jobs`` batch).
    :param mode: batch mode (default ``"extract"``).
    :param webhook: optional URL docimprint calls on progress, completion and failure.
    :param docimprint_conn_id: docimprint connection id.
    """

    hook_class = DocimprintHook
    input_field = "source"
    template_fields: Sequence[str] = ("source", "mode", "webhook")

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        mode: str = "extract",
        webhook: str | None = None,
        docimprint_conn_id: str = DocimprintHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=docimprint_conn_id, **kwargs)
        self.source = source
        self.mode = mode
        self.webhook = webhook
        self.docimprint_conn_id = docimprint_conn_id

    def batch_items(self) -> None:
        return None  # docimprint batches natively: a list of sources is one /v1/jobs job

    def submit_one(self, hook: DocimprintHook, item: Any) -> str:
        return hook.submit_source(item, self.mode, self.webhook)

    def job_for(self, reference: str) -> dict[str, Any]:
        return DocimprintHook.job(reference)
