"""Finovox document analysis (``/analyse``, ``/retrieve``) and case analysis (``/case``, ``/case/retrieve``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.base import DocJobsHook
from airflow_docjobs.hooks.calls import (
    FAILED,
    PENDING,
    SUCCEEDED,
    Call,
    JobStatus,
    parse_body,
    vendor_message,
)

if TYPE_CHECKING:
    import httpx

DOCUMENT_EXTENSIONS = frozenset({".pdf", ".jpg", ".jpeg", ".png"})
# A case folder also takes office files and the applicants' *.json folder forms.
CASE_EXTENSIONS = DOCUMENT_EXTENSIONS | frozenset(
    {".tif", ".tiff", ".webp", ".heic", ".doc", ".docx", ".odt", ".xls", ".xlsx", ".ods", ".json"}
)
CASE_ANALYSE_TYPES = frozenset({"decision", "explanation", "share_link"})
ANALYSES = ("document", "case")


class FinovoxHook(DocJobsHook):
    """
    Finovox: fraud analysis of one document, or a decision on a case folder.

    ``submit(file)`` uploads one document, ``submit(folder_or_files, analysis="case", use_case=...)`` a case
    folder; either returns a retrieve token. A job reference is ``{"retrieve_token": ..., "analysis":
    "document" | "case"}``. The token alone grants access to the result, so it is kept out of logs and error
    messages.

    :param finovox_conn_id: connection whose password is the Finovox API key.
    """

    conn_name_attr = "finovox_conn_id"
    default_conn_name = "finovox_default"
    conn_type = "finovox"
    hook_name = "Finovox"
    vendor = "Finovox"
    default_base_url = "https://api-v2.finovox.com"
    auth_header = "api-key"
    secret_job_keys = frozenset({"retrieve_token"})
    reference_key = "retrieve_token"
    result_ttl = 3600.0

    def __init__(self, finovox_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(conn_id=finovox_conn_id, **kwargs)

    def _analyse_types(self, value: Any, allowed: frozenset[str] | None) -> list[str]:
        types = [value] if isinstance(value, str) else list(value or [])
        if not types or not all(isinstance(t, str) and t for t in types):
            raise self.bad_input("analyse_type", f"expected a non-empty list of names, got {value!r}")
        if allowed and (unknown := sorted(set(types) - allowed)):
            raise self.bad_input("analyse_type", f"unknown {unknown}; accepted: {', '.join(sorted(allowed))}")
        return types

    def document_call(self, file: str, analyse_type: Sequence[str] = ("risk",)) -> Call:
        """The ``POST analyse`` upload of one document for asynchronous analysis."""
        payload = {"analyse_type": self._analyse_types(analyse_type, None), "asynchronous": True}
        upload = self.rules(DOCUMENT_EXTENSIONS).file(file, param="file", field="file")
        return Call("POST", "analyse", data={"payload": json.dumps(payload)}, uploads=(upload,))

    def case_call(
        self,
        documents: str | Sequence[str],
        use_case: str | None,
        analyse_type: Sequence[str] = ("decision",),
        share_link_settings: Mapping[str, Any] | None = None,
    ) -> Call:
        """The ``POST case`` upload of a case folder for asynchronous analysis."""
        if not isinstance(use_case, str) or not use_case.strip():
            raise self.bad_input("use_case", f"expected a use case name such as 'rental', got {use_case!r}")
        if share_link_settings is not None and not isinstance(share_link_settings, Mapping):
            raise self.bad_input(
                "share_link_settings", f"expected a mapping, got {type(share_link_settings).__name__}"
            )
        payload: dict[str, Any] = {
            "analyse_type": self._analyse_types(analyse_type, CASE_ANALYSE_TYPES),
            "use_case": use_case.strip(),
            "asynchronous": True,
        }
        if share_link_settings is not None:
            payload["share_link_settings"] = dict(share_link_settings)
        uploads = self.rules(CASE_EXTENSIONS).files(documents, param="documents", field="documents")
        return Call("POST", "case", data={"payload": json.dumps(payload)}, uploads=uploads)

    def submit_call(
        self,
        item: Any,
        analysis: str = "document",
        analyse_type: Sequence[str] | None = None,
        use_case: str | None = None,
        share_link_settings: Mapping[str, Any] | None = None,
    ) -> Call:
        """The upload of one document, or (``analysis="case"``) of a case folder or list of files."""
        if analysis == "case":
            return self.case_call(item, use_case, analyse_type or ("decision",), share_link_settings)
        if analysis != "document":
            raise self.bad_input("analysis", f"expected 'document' or 'case', got {analysis!r}")
        if use_case is not None or share_link_settings is not None:
            raise self.bad_input("use_case", "only a case (analysis='case') takes a use case and share link")
        if isinstance(item, (list, tuple)):
            raise self.bad_input("file", "expected one document; a list of files is a case (analysis='case')")
        return self.document_call(item, analyse_type or ("risk",))

    def probe_call(self) -> Call:
        """The connection test's request: a ``POST retrieve`` of a token that cannot exist."""
        # A token that cannot exist: a good key reads "not ready" or "not found", a bad one 401/403.
        return Call(
            "POST", "retrieve", json={"retrieve_token": "airflow-docjobs-connection-test"}, idempotent=True
        )

    @staticmethod
    def job_reference(reference: str, analysis: str = "document") -> dict[str, str]:
        """The job reference of a submitted document or case, from its retrieve token."""
        return {"retrieve_token": reference, "analysis": analysis}

    def poll_call(self, job: Mapping[str, Any]) -> Call:
        """The ``POST retrieve`` (document) or ``POST case/retrieve`` (case) poll of a retrieve token."""
        token, analysis = job.get("retrieve_token"), job.get("analysis", "document")
        if not isinstance(token, str) or not token:
            raise self.bad_input("retrieve_token", "expected the token returned by the submit")
        if analysis not in ANALYSES:
            raise self.bad_input("analysis", f"expected 'document' or 'case', got {analysis!r}")
        path = "case/retrieve" if analysis == "case" else "retrieve"
        return Call("POST", path, json={"retrieve_token": token}, idempotent=True)

    def read_poll(self, job: Mapping[str, Any], response: httpx.Response) -> JobStatus:
        """Read a retrieve answer: 200 succeeds, a case's 500 fails, other answers are pending or raise."""
        status = response.status_code
        if status == 200:
            return JobStatus(SUCCEEDED, result=self.check(response))
        if job.get("analysis") == "case":
            if status == 202:
                return JobStatus(PENDING, progress="processing")
            if status == 500:
                # Documented as terminal: "the async folder failed and could not produce a final result".
                message = vendor_message(parse_body(response)) or "the case folder failed"
                return JobStatus(FAILED, message=message)
            self.check(response)
        # /retrieve answers "not ready" with an unnamed error status: anything but auth or server trouble.
        if status in (401, 403) or status >= 500:
            self.check(response)
        return JobStatus(PENDING)
