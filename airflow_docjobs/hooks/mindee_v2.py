"""
Mindee v2: ``POST v2/products/{product}/enqueue``, ``GET v2/jobs/{job_id}``, then the job's ``result_url``.

The paths, form fields and answers are those of the official ``mindee`` SDK (5.x, ``mindee.v2``): the key
goes raw in ``Authorization`` (no ``Token`` prefix) and errors are RFC 9457 problem documents (``status``,
``title``, ``detail``, ``code``, ``errors``), also as a failed job's ``error``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from airflow_docjobs.exceptions import VendorAPIError
from airflow_docjobs.hooks.base import DocJobsHook
from airflow_docjobs.hooks.calls import FAILED, PENDING, SUCCEEDED, Call, JobStatus, vendor_message

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import httpx

EXTENSIONS = frozenset({".pdf", ".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"})
# The v2 products, as the SDK's parameter classes name them (their enqueue slug).
PRODUCTS = ("extraction", "classification", "crop", "ocr", "split")
# Options only the extraction product takes; every product takes alias and webhook_ids.
EXTRACTION_FLAGS = ("rag", "raw_text", "polygon", "confidence")
_MODEL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class MindeeV2Hook(DocJobsHook):
    """
    Mindee v2: a document enqueued on a model, a job polled, its inference fetched from ``result_url``.

    The current API; v1 is :class:`~airflow_docjobs.hooks.mindee.MindeeHook`, which Mindee calls legacy.
    A job reference is ``{"job_id"}``, with the ``model_id`` when known (ingestion names rows after it). A
    document is a local path or object-storage URI (uploaded as ``file``) or a public ``https://`` URL
    (sent as ``url``, Mindee fetches it).

    :param mindee_v2_conn_id: connection whose password is the Mindee v2 API key.
    """

    conn_name_attr = "mindee_v2_conn_id"
    default_conn_name = "mindee_v2_default"
    conn_type = "mindee_v2"
    hook_name = "Mindee v2"
    vendor = "Mindee v2"
    default_base_url = "https://api-v2.mindee.net"
    auth_header = "Authorization"
    reference_key = "job.id"

    def __init__(self, mindee_v2_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(conn_id=mindee_v2_conn_id, **kwargs)

    def submit_call(
        self,
        document: Any,
        model_id: str,
        product: str = "extraction",
        *,
        rag: bool | None = None,
        raw_text: bool | None = None,
        polygon: bool | None = None,
        confidence: bool | None = None,
        text_context: str | None = None,
        alias: str | None = None,
        webhook_ids: Sequence[str] | None = None,
    ) -> Call:
        """
        The ``POST v2/products/{product}/enqueue`` of a document on a model, as the SDK sends it.

        Options left ``None`` are not sent (the model's defaults apply). ``rag``, ``raw_text``, ``polygon``,
        ``confidence`` and ``text_context`` are the extraction product's only.
        """
        if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
            raise self.bad_input(
                "model_id", f"expected the model's id from the Mindee platform, got {model_id!r}"
            )
        if product not in PRODUCTS:
            raise self.bad_input("product", f"expected one of {', '.join(PRODUCTS)}, got {product!r}")
        data: dict[str, str | list[str]] = {"model_id": model_id}
        flags = {"rag": rag, "raw_text": raw_text, "polygon": polygon, "confidence": confidence}
        for name, value in (*flags.items(), ("text_context", text_context)):
            if value is not None and product != "extraction":
                raise self.bad_input(name, f"only the extraction product takes it, not {product!r}")
        for name, value in flags.items():
            if value is not None:
                if not isinstance(value, bool):
                    raise self.bad_input(name, f"expected True, False or None, got {value!r}")
                data[name] = str(value).lower()
        for name, text in (("text_context", text_context), ("alias", alias)):
            if text is not None:
                if not isinstance(text, str):
                    raise self.bad_input(name, f"expected a string, got {text!r}")
                data[name] = text
        if webhook_ids:
            if isinstance(webhook_ids, str) or not all(isinstance(i, str) and i for i in webhook_ids):
                raise self.bad_input("webhook_ids", f"expected a list of webhook ids, got {webhook_ids!r}")
            data["webhook_ids"] = list(webhook_ids)
        path = f"v2/products/{product}/enqueue"
        if isinstance(document, str) and document.strip().lower().startswith(("https://", "http://")):
            url = document.strip()
            if not url.lower().startswith("https://") or not urlsplit(url).hostname:
                raise self.bad_input("document", "Mindee only fetches public https:// URLs")
            return Call("POST", path, data=data | {"url": url})
        upload = self.rules(EXTENSIONS).file(document, param="document", field="file")
        return Call("POST", path, data=data, uploads=(upload,))

    def probe_call(self) -> Call:
        """The connection test's request: a ``GET`` of a job that cannot exist (good key 404, bad key 401)."""
        return Call("GET", f"v2/jobs/{'0' * 8}-0000-0000-0000-{'0' * 12}")

    @staticmethod
    def job_reference(reference: str, model_id: str | None = None) -> dict[str, str]:
        """The job reference of an enqueued document, from its job id (and its model, when known)."""
        return {"job_id": reference} | ({"model_id": model_id} if model_id else {})

    def poll_call(self, job: Mapping[str, Any]) -> Call:
        """The ``GET v2/jobs/{job_id}`` poll of a job."""
        job_id = job.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise self.bad_input("job_id", f"expected the job id returned by the enqueue, got {job_id!r}")
        return Call("GET", f"v2/jobs/{quote(job_id, safe='')}", job_id=job_id)

    def read_poll(self, job: Mapping[str, Any], response: httpx.Response) -> JobStatus | Call:
        """
        Read a job or an inference; an inference succeeds.

        ``Processed`` becomes a ``GET`` of its ``result_url`` (as does a redirect), ``Failed`` keeps the
        problem's ``code`` and ``detail``.
        """
        job_id = job.get("job_id")
        if response.status_code in (301, 302, 303, 307, 308):
            location = response.headers.get("location")
            if not location:
                raise self.error(VendorAPIError, "redirected without a Location", job_id=job_id)
            return Call("GET", str(response.url.join(location)), job_id=job_id)
        body = self.check(response, job_id)
        if isinstance(body, dict) and isinstance(body.get("inference"), dict):
            return JobStatus(SUCCEEDED, result=body)
        found = body.get("job") if isinstance(body, dict) else None
        state: dict[str, Any] = found if isinstance(found, dict) else {}
        status = state.get("status")
        if status == "Failed":
            error = state.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            return JobStatus(
                FAILED,
                message=vendor_message(error) or "the job failed",
                code=str(code) if code is not None else None,
            )
        result_url = state.get("result_url")
        if status == "Processed" and isinstance(result_url, str) and result_url:
            # Same origin: the key goes along (the base decides); another host gets no credentials.
            return Call("GET", urljoin(self.settings.base_url + "/", result_url), job_id=job_id)
        # Processed without a result_url yet is still pending, as the SDK reads it.
        return JobStatus(PENDING, progress=status if isinstance(status, str) else None)
