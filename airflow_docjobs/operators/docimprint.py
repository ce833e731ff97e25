"""docimprint submit operator: one ``/v1/extract`` job, one ``/v1/jobs`` batch, or focused-endpoint jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.docimprint import DocimprintHook, is_url
from airflow_docjobs.operators.base import DocJobSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Sequence


class DocimprintSubmitOperator(DocJobSubmitOperator):
    """
    Queue an extraction; return the job id. Each job is billed, so a retry reuses the job (Airflow >= 3.3).

    A URL is sent for docimprint to fetch; a local path or an object-storage URI is uploaded. A list of URLs
    is one ``/v1/jobs`` batch (one job id). A folder, a prefix ending in ``/``, or a list holding files is
    submitted in list mode: one ``/v1/extract`` job per document, one job id per document.

    With a focused ``endpoint`` (``"summarize"``, ``"qa"``...) each source is its own job, submitted with
    ``?async=true``, and the full result lands in the job response that the sensor returns; a list of
    sources is submitted in list mode (one job id per source). Focused endpoints take URLs only.

    :param source: a document URL, a local path or object-storage URI (uploaded), a folder or prefix, or a
        list of them (a list of URLs only is one ``/v1/jobs`` batch).
    :param mode: batch mode (default ``"extract"``).
    :param webhook: optional URL docimprint calls on progress, completion and failure.
    :param endpoint: ``"extract"`` (default) or a focused endpoint under ``/v1/``.
    :param options: the endpoint's own fields, sent as JSON beside ``source`` (e.g. ``{"question": ...}``
        for ``qa``); docimprint does not document them, so they are passed through as given.
    :param docimprint_conn_id: docimprint connection id.
    """

    hook_class = DocimprintHook
    input_field = "source"
    submit_params = ("mode", "webhook", "endpoint", "options")
    template_fields: Sequence[str] = ("conn_id", "source", "mode", "webhook", "endpoint", "options")

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        mode: str = "extract",
        webhook: str | None = None,
        endpoint: str = "extract",
        options: dict[str, Any] | None = None,
        docimprint_conn_id: str = DocimprintHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=docimprint_conn_id, **kwargs)
        self.source = source
        self.mode = mode
        self.webhook = webhook
        self.endpoint = endpoint
        self.options = options

    def batch_items(self) -> list[Any] | None:
        """
        The documents of list mode, one job each; ``None`` for one source or one ``/v1/jobs`` batch.

        docimprint batches extracts of URLs natively: a list of URLs is one ``/v1/jobs`` job. A focused
        endpoint's list, a folder, a prefix and a list holding files are list mode.
        """
        if (
            self.endpoint == "extract"
            and isinstance(self.source, (list, tuple))
            and all(is_url(source) for source in self.source)
        ):
            return None
        return super().batch_items()
