"""myBiros async inference: ``async-predict`` and ``predicted-documents``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_docjobs.hooks.base import DocJobsHook
from airflow_docjobs.hooks.calls import FAILED, PENDING, SUCCEEDED, Call, JobStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

EXTENSIONS = frozenset({".pdf", ".jpg", ".jpeg", ".png", ".tif", ".tiff"})
REVIEW_DONE = frozenset({"approved", "not_approved"})


class BirosHook(DocJobsHook):
    """
    myBiros: document extraction by a platform service, optionally followed by human review.

    A job reference is ``{"service_id", "document_id", "include_validation_errors", "wait_for_review"}``;
    with ``wait_for_review`` a processed document stays pending until a reviewer approved or rejected it.

    :param biros_conn_id: connection whose password is the myBiros API key.
    """

    conn_name_attr = "biros_conn_id"
    default_conn_name = "biros_default"
    conn_type = "biros"
    hook_name = "myBiros"
    vendor = "myBiros"
    default_base_url = "https://platform.mybiros.com/api/v1"
    auth_header = "x-api-key"
    reference_key = "resource"

    def __init__(self, biros_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(conn_id=biros_conn_id, **kwargs)

    def _segment(self, value: Any, param: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise self.bad_input(param, f"expected a non-empty id, got {value!r}")
        return quote(value.strip(), safe="")

    def submit_call(self, file: str, service_id: str) -> Call:
        """The ``POST inference/service/{service_id}/async-predict`` upload of one document."""
        service = self._segment(service_id, "service_id")
        upload = self.rules(EXTENSIONS).file(file, param="file", field="file")
        return Call("POST", f"inference/service/{service}/async-predict", uploads=(upload,))

    def probe_call(self) -> Call:
        """The connection test's request: a ``GET`` of a predicted document that cannot exist."""
        # A service and document that cannot exist: a good key gets 404, a bad one 401.
        return Call("GET", "inference/service/airflow-docjobs-connection-test/predicted-documents/none")

    @staticmethod
    def job_reference(
        reference: str,
        service_id: str,
        include_validation_errors: bool = False,
        wait_for_review: bool = False,
    ) -> dict[str, Any]:
        """The job reference of a submitted document, from its document id (the API's ``resource``)."""
        return {
            "service_id": str(service_id),
            "document_id": reference,
            "include_validation_errors": _flag(include_validation_errors),
            "wait_for_review": _flag(wait_for_review),
        }

    def poll_call(self, job: Mapping[str, Any]) -> Call:
        """The ``GET inference/service/{service_id}/predicted-documents/{document_id}`` poll of a job."""
        service = self._segment(job.get("service_id"), "service_id")
        document = self._segment(job.get("document_id"), "document_id")
        flag = "true" if job.get("include_validation_errors") else "false"
        return Call(
            "GET",
            f"inference/service/{service}/predicted-documents/{document}",
            params={"include_validation_errors": flag},
            job_id=job.get("document_id"),
        )

    def read_poll(self, job: Mapping[str, Any], response: httpx.Response) -> JobStatus:
        """Read a predicted document: ``ERROR`` fails, ``ACTIVE`` succeeds (after review if awaited)."""
        body = self.check(response, job.get("document_id"))
        document = (body.get("document") if isinstance(body, dict) else None) or {}
        status = document.get("status")
        if status == "ERROR":
            # myBiros gives no error code: its status is the code, so reports never show an empty one.
            message = document.get("message") or "document processing failed"
            return JobStatus(FAILED, message=message, code="ERROR")
        if status == "ACTIVE":
            review = document.get("revision_status")
            if job.get("wait_for_review") and review not in REVIEW_DONE:
                return JobStatus(PENDING, progress=f"awaiting review ({review})")
            return JobStatus(SUCCEEDED, result=body)
        return JobStatus(PENDING, progress=status)


def _flag(value: Any) -> bool:
    """A boolean parameter, also when a template rendered it as text ("False" must stay false)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
