"""Mindee asynchronous prediction: ``predict_async``, the queue, and the document behind its 302."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_docjobs.exceptions import VendorAPIError, VendorRequestError, error_for_status
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
    from collections.abc import Mapping

    import httpx

EXTENSIONS = frozenset({".pdf", ".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"})
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_DATA_URI = re.compile(r"^data:[\w/+.-]*;base64,(?P<payload>.+)$", re.DOTALL)


class MindeeHook(DocJobsHook):
    """
    Mindee: asynchronous prediction on an off-the-shelf (``account="mindee"``) or custom product.

    A job reference is ``{"job_id", "product", "version", "account"}``. A document is a local path or
    object-storage URI (uploaded), a public ``https://`` URL (sent as a URL, Mindee fetches it), or base64
    content given as ``bytes``, a ``data:...;base64,`` URI or a ``base64:...`` string.

    :param mindee_conn_id: connection whose password is the Mindee API key.
    """

    conn_name_attr = "mindee_conn_id"
    default_conn_name = "mindee_default"
    conn_type = "mindee"
    hook_name = "Mindee"
    vendor = "Mindee"
    default_base_url = "https://api.mindee.net"
    auth_header = "Authorization"
    auth_scheme = "Token "
    reference_key = "job.id"
    error_envelope = "api_request"

    def __init__(self, mindee_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(conn_id=mindee_conn_id, **kwargs)

    def product_path(self, product: object, version: object, account: object = "mindee") -> str:
        """``v1/products/{account}/{product}/{version}``; a bare ``4`` is read as ``v4``."""
        version = f"v{version}" if isinstance(version, (int, str)) and str(version).isdigit() else version
        for param, value in (("product", product), ("version", version), ("account", account)):
            if not isinstance(value, str) or not _SEGMENT.match(value):
                raise self.bad_input(
                    param, f"expected one URL path segment such as 'invoices', got {value!r}"
                )
        return f"v1/products/{account}/{product}/{version}"

    def submit_call(self, document: Any, product: str, version: str, account: str = "mindee") -> Call:
        """The ``POST {product path}/predict_async`` of a document: uploaded, as a URL or as base64 JSON."""
        path = f"{self.product_path(product, version, account)}/predict_async"
        if isinstance(document, (bytes, bytearray)):
            if not document:
                raise self.bad_input("document", "the document bytes are empty")
            return Call("POST", path, json={"document": base64.b64encode(document).decode()})
        if isinstance(document, str):
            text = document.strip()
            if text.startswith("https://"):
                return Call("POST", path, json={"document": text})
            if text.startswith("http://"):
                raise self.bad_input("document", "Mindee only fetches public https:// URLs")
            inline = _DATA_URI.match(text) or re.match(r"^base64:(?P<payload>.+)$", text, re.DOTALL)
            if inline:
                payload = inline["payload"].strip()
                try:
                    base64.b64decode(payload, validate=True)
                except ValueError as exc:
                    raise self.bad_input("document", "the base64 content does not decode") from exc
                return Call("POST", path, json={"document": payload})
        upload = self.rules(EXTENSIONS).file(document, param="document", field="document")
        return Call("POST", path, uploads=(upload,))

    def probe_call(self) -> Call:
        """The connection test's request: a ``GET`` of a queued job that cannot exist."""
        # A job id that cannot exist on an off-the-shelf product: a good key gets 404, a bad one 401.
        return Call(
            "GET",
            f"{self.product_path('invoices', 'v4')}/documents/queue/{'0' * 8}-0000-0000-0000-{'0' * 12}",
        )

    @staticmethod
    def job_reference(reference: str, product: str, version: str, account: str = "mindee") -> dict[str, str]:
        """The job reference of an enqueued document, from its job id."""
        return {"job_id": reference, "product": product, "version": version, "account": account}

    def poll_call(self, job: Mapping[str, Any]) -> Call:
        """The ``GET {product path}/documents/queue/{job_id}`` poll of a job."""
        job_id = job.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise self.bad_input("job_id", f"expected the job id returned by predict_async, got {job_id!r}")
        product = self.product_path(job.get("product"), job.get("version"), job.get("account", "mindee"))
        return Call("GET", f"{product}/documents/queue/{quote(job_id, safe='')}", job_id=job_id)

    def check(self, response: httpx.Response, job_id: str | None = None) -> Any:
        """
        Raise the typed error of an error answer, read as Mindee's own client reads it; else the JSON body.

        The body's ``api_request.status_code`` is the status (a 2xx answer may say 400 in it), and a 403
        may mean that the product has no asynchronous mode rather than a refused key.
        """
        body = parse_body(response)
        api_request = body.get("api_request") if isinstance(body, dict) else None
        stated = api_request.get("status_code") if isinstance(api_request, dict) else None
        status = response.status_code
        if status < 300 and isinstance(stated, int) and not isinstance(stated, bool) and stated >= 400:
            status = stated
        message = vendor_message(body)
        if status == 403 and "asynchronous mode" in (message or ""):
            raise self.error(
                VendorRequestError,
                "the product has no asynchronous mode (predict_async); use an asynchronous product",
                status_code=status,
                job_id=job_id,
                vendor_message=message,
            )
        if status != response.status_code:
            error, summary = error_for_status(status)
            raise self.error(error, summary, status_code=status, job_id=job_id, vendor_message=message)
        return super().check(response, job_id)

    def read_poll(self, job: Mapping[str, Any], response: httpx.Response) -> JobStatus | Call:
        """Read a queue answer: a redirect becomes a ``GET`` of the document, else a status from the job."""
        job_id = job.get("job_id")
        if response.status_code in (301, 302, 303, 307, 308):
            location = response.headers.get("location")
            if not location:
                raise self.error(VendorAPIError, "redirected without a Location", job_id=job_id)
            # Same host: the base sends the API key along. Another host gets no credentials.
            return Call("GET", str(response.url.join(location)), job_id=job_id)
        body = self.check(response, job_id)
        state = (body.get("job") or {}).get("status") if isinstance(body, dict) else None
        if isinstance(body, dict) and body.get("document"):
            return JobStatus(SUCCEEDED, result=body)
        if state == "failed":
            error = body["job"].get("error") or {}
            code = error.get("code") if isinstance(error, dict) else None
            return JobStatus(FAILED, message=vendor_message(error) or "the job failed", code=code)
        return JobStatus(PENDING, progress=state)
