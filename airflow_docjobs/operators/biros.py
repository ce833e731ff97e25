"""myBiros submit operator: ``async-predict``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.operators.base import DocJobSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Sequence


class BirosSubmitOperator(DocJobSubmitOperator):
    """
    Upload a document to a myBiros service for asynchronous inference; return the document id.

    A list, a folder or a prefix ending in ``/`` is a batch (list mode): it returns one document id per file.

    :param file: local path or object-storage URI of the document, or a list of them, or a folder.
    :param service_id: myBiros service id.
    :param biros_conn_id: myBiros connection id.
    """

    hook_class = BirosHook
    input_field = "file"
    submit_params = ("service_id",)
    reference_params = ("service_id",)
    template_fields: Sequence[str] = ("conn_id", "file", "service_id")

    def __init__(
        self,
        *,
        file: str | Sequence[str],
        service_id: str,
        biros_conn_id: str = BirosHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=biros_conn_id, **kwargs)
        self.file = file
        self.service_id = service_id
