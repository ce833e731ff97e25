"""
docimprint async jobs: ``/v1/extract`` or a focused endpoint, ``/v1/jobs``, ``GET /v1/jobs/{id}``.

One source goes to ``/v1/extract`` (a URL as JSON, a file as a multipart upload) or to a focused endpoint
(``/v1/summarize``, ``/v1/qa``...), a batch of URLs to ``/v1/jobs``; ``GET /v1/jobs/{id}`` polls either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow_docjobs.exceptions import DocJobsInputError
from airflow_docjobs.hooks.base import DocJobsHook
from airflow_docjobs.hooks.calls import FAILED, PENDING, SUCCEEDED, Call, JobStatus, vendor_message

if TYPE_CHECKING:
    import httpx

# An endpoint under /v1/: extract, or a focused one (summarize, qa, ...).
FOCUSED_NAME = re.compile(r"[a-z][a-z0-9_-]{0,40}")
# What an upload may be: PDFs, images, and the web pages and text docimprint's own examples upload.
EXTENSIONS = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".html", ".htm", ".txt"})
# The connection extra ``auth``: which header carries the password.
AUTH = {"x402": ("X-Payment", ""), "api_key": ("Authorization", "Bearer ")}
# Job states (the official client also accepts "completed" and "error").
DONE, ENDED = ("complete", "completed"), ("failed", "error", "cancelled")


def is_url(value: Any) -> bool:
    """Whether a source is an http(s) URL that docimprint fetches itself (anything else is uploaded)."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class DocimprintHook(DocJobsHook):
    """
    docimprint: evidence-bundle extraction from document URLs and uploaded files.

    Every job costs money (USD 0.075): a submit resent after an answer that may have created a job (502, 504,
    a lost answer) is logged as a warning, and the connection extra ``resend_ambiguous_submits: false``
    refuses such resends.

    A job reference is ``{"job_id": ...}``. The connection's password is an x402 payment token, sent as
    ``X-Payment``, or with the extra ``auth: "api_key"`` an account's API key, sent as
    ``Authorization: Bearer <key>``.

    :param docimprint_conn_id: connection whose password is the payment token or API key.
    """

    conn_name_attr = "docimprint_conn_id"
    default_conn_name = "docimprint_default"
    conn_type = "docimprint"
    hook_name = "docimprint"
    vendor = "docimprint"
    default_base_url = "https://api.docimprint.com"
    auth_header = "X-Payment"
    secret_label = "Payment token or API key"
    reference_key = "job_id"
    error_envelope = "error"

    def __init__(self, docimprint_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(conn_id=docimprint_conn_id, **kwargs)

    def auth_headers(self, secret: str, extra: Mapping[str, Any]) -> dict[str, str]:
        """``X-Payment: <token>`` (extra ``auth: "x402"``, the default) or ``Authorization: Bearer <key>``."""
        how = extra.get("auth") or "x402"
        if how not in AUTH:
            raise self.error(
                DocJobsInputError, f"connection extra 'auth' must be 'x402' or 'api_key', got {how!r}"
            )
        header, scheme = AUTH[how]
        return {header: f"{scheme}{secret}"}

    def _url(self, value: Any, param: str) -> str:
        if is_url(value):
            return str(value).strip()
        raise self.bad_input(param, f"expected an http(s) URL, got {value!r}")

    def _with_webhook(self, body: dict[str, Any], webhook: str | None) -> dict[str, Any]:
        if webhook is not None:
            body["webhook"] = self._url(webhook, "webhook")
        return body

    def extract_call(
        self, source: str | Path, webhook: str | None = None, endpoint: str = "extract", options: Any = None
    ) -> Call:
        """
        The ``POST v1/{endpoint}?async=true`` of one source: ``extract`` or a focused endpoint.

        One source to ``/v1/extract`` (a stored evidence bundle), or to a focused endpoint such as
        ``"summarize"`` or ``"qa"``, whose result lands in the job response. ``options`` go beside
        ``source`` in the JSON body (the vendor documents no more of these bodies). A source that is not a
        URL is a file, uploaded to ``/v1/extract`` as the multipart field ``file`` with ``mode`` and the
        options as form fields, as docimprint's own client sends it.
        """
        if not isinstance(endpoint, str) or not FOCUSED_NAME.fullmatch(endpoint) or endpoint == "jobs":
            raise self.bad_input(
                "endpoint", f"expected an endpoint name such as 'summarize', got {endpoint!r}"
            )
        # async=true: always a job id, never an inline answer that could time out on a large PDF.
        params = {"async": "true"}
        if not is_url(source):
            return self._upload_call(source, webhook, endpoint, options, params)
        body = {**self._options(options), "source": self._url(source, "source")}
        return Call("POST", f"v1/{endpoint}", params=params, json=self._with_webhook(body, webhook))

    def _upload_call(
        self, source: Any, webhook: str | None, endpoint: str, options: Any, params: dict[str, str]
    ) -> Call:
        if endpoint != "extract":
            raise self.bad_input(
                "source", f"the {endpoint!r} endpoint takes a URL; only extract takes an uploaded file"
            )
        upload = self.rules(EXTENSIONS).file(source, param="source", field="file")
        fields = {"mode": "extract", **self._options(options)}
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        return Call(
            "POST", "v1/extract", params=params, data=self._with_webhook(form, webhook), uploads=(upload,)
        )

    def _options(self, options: Any) -> dict[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, Mapping) or {"source", "webhook"} & set(options):
            raise self.bad_input(
                "options",
                f"expected a mapping of endpoint options without source or webhook, got {options!r}",
            )
        try:
            json.dumps(options)
        except (TypeError, ValueError) as exc:
            raise self.bad_input("options", f"not JSON: {exc}") from None
        return dict(options)

    def batch_call(self, sources: Sequence[str], mode: str = "extract", webhook: str | None = None) -> Call:
        """The ``POST v1/jobs`` batch of several source URLs."""
        if isinstance(sources, str) or not sources:
            raise self.bad_input("source", "expected a non-empty list of URLs for a batch")
        if files := [s for s in sources if not is_url(s)]:
            raise self.bad_input(
                "source",
                f"a batch takes URLs only, got {files[0]!r}; files are uploaded one job each "
                "(DocimprintSubmitOperator's list mode)",
            )
        items = [{"source": self._url(s, "source")} for s in sources]
        return Call("POST", "v1/jobs", json=self._with_webhook({"items": items, "mode": mode}, webhook))

    def submit_call(
        self,
        source: str | Path | Sequence[str],
        mode: str = "extract",
        webhook: str | None = None,
        endpoint: str = "extract",
        options: Mapping[str, Any] | None = None,
    ) -> Call:
        """
        One source to ``/v1/{endpoint}`` (default ``extract``), or a list of URLs to one ``/v1/jobs`` batch.

        One source is a URL, or a local path or object-storage URI that is uploaded.
        """
        if isinstance(source, (str, Path)):
            if mode != "extract":
                raise self.bad_input(
                    "mode", f"a single source is always an extract; pass a list for mode {mode!r}"
                )
            return self.extract_call(source, webhook, endpoint, options)
        if not isinstance(source, (list, tuple)):
            raise self.bad_input("source", f"expected a URL, a file path or a list of URLs, got {source!r}")
        if endpoint != "extract":
            raise self.bad_input(
                "source", f"the {endpoint!r} endpoint takes one source per job; batches are extracts"
            )
        return self.batch_call(source, mode, webhook)

    def probe_call(self) -> Call:
        """The connection test's request: an empty ``POST v1/jobs`` batch, never billed."""
        # Polls are free and need no token, so they cannot test it. An empty batch is refused before any
        # work (422) with a good token and is never billed; a bad token gets 401/402.
        return Call("POST", "v1/jobs", json={"items": []}, idempotent=True)

    @staticmethod
    def job_reference(reference: str) -> dict[str, str]:
        """The job reference of a submitted job, from its job id."""
        return {"job_id": reference}

    def poll_call(self, job: Mapping[str, Any]) -> Call:
        """The ``GET v1/jobs/{job_id}`` poll of a job."""
        job_id = job.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise self.bad_input("job_id", f"expected the job id returned by the submit, got {job_id!r}")
        return Call("GET", f"v1/jobs/{quote(job_id, safe='')}", job_id=job_id)

    def read_poll(self, job: Mapping[str, Any], response: httpx.Response) -> JobStatus:
        """
        Read a job: ``complete`` succeeds; ``failed`` or ``cancelled`` fails; the rest is pending.

        A failed job's ``error`` is a string and its ``code`` a field of the job (an ``error`` object with
        its own ``code`` and ``message`` is read too); both become the failure's message and code.
        """
        body = self.check(response, job.get("job_id"))
        status = body.get("status") if isinstance(body, dict) else None
        if status in DONE:
            return JobStatus(SUCCEEDED, result=body)
        if status in ENDED:
            error = body.get("error")
            code = body.get("code") or (error.get("code") if isinstance(error, dict) else None)
            return JobStatus(
                FAILED,
                message=vendor_message(error) or f"the job ended {status}",
                code=str(code) if code else None,
            )
        pct, note = body.get("progress_pct"), body.get("progress_message")
        progress = " ".join(str(p) for p in (f"{pct}%" if pct is not None else None, note) if p)
        fraction = pct / 100 if isinstance(pct, int | float) and not isinstance(pct, bool) else None
        return JobStatus(PENDING, progress=progress or status, fraction=fraction)
