"""Mindee submit operator: ``predict_async``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.operators.base import DocJobSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Sequence


class MindeeSubmitOperator(DocJobSubmitOperator):
    """
    Enqueue a document for asynchronous prediction; return the job id.

    A list, a folder or a prefix ending in ``/`` is a batch (list mode): it returns one job id per document.

    :param document: local path or object-storage URI (uploaded), public ``https://`` URL (Mindee fetches
        it), or base64 content (``bytes``, ``data:...;base64,...`` or ``base64:...``); or a list of them,
        or a folder.
    :param product: product name, e.g. ``"invoices"``.
    :param version: product version, e.g. ``"v4"``.
    :param account: ``"mindee"`` for off-the-shelf products, else your account name.
    :param mindee_conn_id: Mindee connection id.
    """

    hook_class = MindeeHook
    input_field = "document"
    submit_params = ("product", "version", "account")
    reference_params = ("product", "version", "account")
    template_fields: Sequence[str] = ("conn_id", "document", "product", "version", "account")

    def __init__(
        self,
        *,
        document: Any,
        product: str,
        version: str,
        account: str = "mindee",
        mindee_conn_id: str = MindeeHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=mindee_conn_id, **kwargs)
        self.document = document
        self.product = product
        self.version = version
        self.account = account
