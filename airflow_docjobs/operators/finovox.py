"""Finovox submit operators: one document, or one case folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.operators.base import DocJobSubmitOperator


class FinovoxSubmitDocumentOperator(DocJobSubmitOperator):
    """
    Upload one document (PDF, JPEG, PNG) for asynchronous fraud analysis; return its retrieve token.

    :param file: local path or object-storage URI of the document.
    :param analyse_type: analyses to run (default ``["risk"]``).
    :param finovox_conn_id: Finovox connection id.
    """

    hook_class = FinovoxHook
    template_fields: Sequence[str] = ("file", "analyse_type")

    def __init__(
        self,
        *,
        file: str,
        analyse_type: Sequence[str] | None = None,
        finovox_conn_id: str = FinovoxHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=finovox_conn_id, **kwargs)
        self.file = file
        self.analyse_type = list(analyse_type or ["risk"])
        self.finovox_conn_id = finovox_conn_id

    def submit(self, hook: FinovoxHook) -> str:
        return hook.submit_document(self.file, self.analyse_type)


class FinovoxSubmitCaseOperator(DocJobSubmitOperator):
    """
    Upload a case folder (rental, payslips...) for asynchronous analysis; return its retrieve token.

    :param documents: a folder (local or object storage) or a list of files; ``*.json`` files ride along
        as folder forms describing the applicants.
    :param use_case: Finovox use case, e.g. ``"rental"``.
    :param analyse_type: any of ``decision`` (default), ``explanation``, ``share_link``.
    :param share_link_settings: e.g. ``{"access": "public", "password": ""}``.
    :param finovox_conn_id: Finovox connection id.
    """

    hook_class = FinovoxHook
    template_fields: Sequence[str] = ("documents", "use_case", "analyse_type", "share_link_settings")

    def __init__(
        self,
        *,
        documents: str | Sequence[str],
        use_case: str,
        analyse_type: Sequence[str] | None = None,
        share_link_settings: Mapping[str, Any] | None = None,
        finovox_conn_id: str = FinovoxHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=finovox_conn_id, **kwargs)
        self.documents = documents
        self.use_case = use_case
        self.analyse_type = list(analyse_type or ["decision"])
        self.share_link_settings = share_link_settings
        self.finovox_conn_id = finovox_conn_id

    def submit(self, hook: FinovoxHook) -> str:
        return hook.submit_case(
            self.documents,
            self.use_case,
            analyse_type=self.analyse_type,
            share_link_settings=self.share_link_settings,
        )
