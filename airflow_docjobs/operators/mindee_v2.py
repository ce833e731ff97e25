"""Mindee v2 submit operator: ``POST v2/products/{product}/enqueue``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook
from airflow_docjobs.operators.base import DocJobSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Sequence


class MindeeV2SubmitOperator(DocJobSubmitOperator):
    """
    Enqueue a document on a Mindee v2 model; return the job id.

    A list, a folder or a prefix ending in ``/`` is a batch (list mode): it returns one job id per document.

    :param document: local path or object-storage URI (uploaded), or public ``https://`` URL (Mindee fetches
        it); or a list of them, or a folder.
    :param model_id: the model's id, from the Mindee platform.
    :param product: ``"extraction"`` (default), ``"classification"``, ``"crop"``, ``"ocr"`` or ``"split"``:
        the kind of model ``model_id`` is.
    :param rag: extraction only: use the model's Retrieval-Augmented Generation.
    :param raw_text: extraction only: return the document's full text too.
    :param polygon: extraction only: return each field's locations.
    :param confidence: extraction only: return each field's confidence.
    :param text_context: extraction only: extra text context for the model.
    :param alias: your own name for the document, echoed in the job and the result.
    :param webhook_ids: ids of webhooks Mindee calls when the job ends.
    :param mindee_v2_conn_id: Mindee v2 connection id.
    """

    hook_class = MindeeV2Hook
    input_field = "document"
    submit_params = (
        "model_id",
        "product",
        "rag",
        "raw_text",
        "polygon",
        "confidence",
        "text_context",
        "alias",
        "webhook_ids",
    )
    reference_params = ("model_id",)
    template_fields: Sequence[str] = (
        "conn_id",
        "document",
        "model_id",
        "alias",
        "text_context",
        "webhook_ids",
    )

    def __init__(
        self,
        *,
        document: Any,
        model_id: str,
        product: str = "extraction",
        rag: bool | None = None,
        raw_text: bool | None = None,
        polygon: bool | None = None,
        confidence: bool | None = None,
        text_context: str | None = None,
        alias: str | None = None,
        webhook_ids: Sequence[str] | None = None,
        mindee_v2_conn_id: str = MindeeV2Hook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=mindee_v2_conn_id, **kwargs)
        self.document = document
        self.model_id = model_id
        self.product = product
        self.rag = rag
        self.raw_text = raw_text
        self.polygon = polygon
        self.confidence = confidence
        self.text_context = text_context
        self.alias = alias
        self.webhook_ids = webhook_ids
