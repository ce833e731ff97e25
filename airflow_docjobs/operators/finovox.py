"""Finovox submit operators: one document, or one case folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.inputs import documents_under, is_folder
from airflow_docjobs.lineage import files_in
from airflow_docjobs.operators.base import DocJobSubmitOperator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class FinovoxSubmitDocumentOperator(DocJobSubmitOperator):
    """
    Upload a document (PDF, JPEG, PNG) for asynchronous fraud analysis; return its retrieve token.

    A list, a folder or a prefix ending in ``/`` is a batch (list mode): it returns one token per document.

    :param file: local path or object-storage URI of the document, or a list of them, or a folder.
    :param analyse_type: analyses to run (default ``["risk"]``).
    :param finovox_conn_id: Finovox connection id.
    """

    hook_class = FinovoxHook
    input_field = "file"
    analysis = "document"
    submit_params = ("analysis", "analyse_type")
    reference_params = ("analysis",)
    # Finovox runs at most 10 analyses in parallel per API key; more queue on its side.
    default_max_in_flight = 10
    template_fields: Sequence[str] = ("conn_id", "file", "analyse_type")

    def __init__(
        self,
        *,
        file: str | Sequence[str],
        analyse_type: Sequence[str] | None = None,
        finovox_conn_id: str = FinovoxHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=finovox_conn_id, **kwargs)
        self.file = file
        self.analyse_type = list(analyse_type or ["risk"])


class FinovoxSubmitCaseOperator(DocJobSubmitOperator):
    """
    Upload a case folder (rental, payslips...) for asynchronous analysis; return its retrieve token.

    With ``cases`` it submits a batch of cases (list mode) and returns one token per case.

    :param documents: one case: a folder (local or object storage) or a list of files; ``*.json`` files
        ride along as folder forms describing the applicants.
    :param cases: a batch of cases instead: a list of folders or prefixes (one case each), or one folder
        whose subfolders are the cases.
    :param use_case: Finovox use case, e.g. ``"rental"``.
    :param analyse_type: any of ``decision`` (default), ``explanation``, ``share_link``.
    :param share_link_settings: e.g. ``{"access": "public", "password": ""}``.
    :param finovox_conn_id: Finovox connection id.
    """

    hook_class = FinovoxHook
    input_field = "documents"
    analysis = "case"
    submit_params = ("analysis", "use_case", "analyse_type", "share_link_settings")
    reference_params = ("analysis",)
    default_max_in_flight = 10
    template_fields: Sequence[str] = (
        "conn_id",
        "documents",
        "cases",
        "use_case",
        "analyse_type",
        "share_link_settings",
    )

    def __init__(
        self,
        *,
        use_case: str,
        documents: str | Sequence[str] | None = None,
        cases: str | Sequence[str] | None = None,
        analyse_type: Sequence[str] | None = None,
        share_link_settings: Mapping[str, Any] | None = None,
        finovox_conn_id: str = FinovoxHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=finovox_conn_id, **kwargs)
        if (documents is None) == (cases is None):
            raise FinovoxHook(finovox_conn_id).bad_input(
                "documents", "give either documents (one case) or cases"
            )
        self.documents = documents
        self.cases = cases
        self.use_case = use_case
        self.analyse_type = list(analyse_type or ["decision"])
        self.share_link_settings = share_link_settings

    def batch_items(self) -> list[Any] | None:
        """The case folders of ``cases`` (a folder's subfolders with documents); ``None`` for one case."""
        if self.cases is None:
            return None  # one case: its folder or list of files is not a batch
        cases = [self.cases] if isinstance(self.cases, str) else list(self.cases)
        if isinstance(self.cases, str) and is_folder(self.cases):
            # A document's case is its prefix; not PurePosixPath's parent, which turns "s3://" into "s3:/".
            cases = sorted({doc.rsplit("/", 1)[0] for doc in documents_under(self.cases)})
        if not cases:
            raise self.hook.bad_input("cases", f"no case folders in {self.cases!r}")
        return cases

    def documents_of(self, item: Any) -> list[Any]:
        """The documents of one case: its list of files, or its folder's own files."""
        # A case is a list of files, or a folder whose own files the hook uploads.
        return list(item) if isinstance(item, (list, tuple)) else files_in(str(item))
