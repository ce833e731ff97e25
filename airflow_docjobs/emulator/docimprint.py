"""
docimprint async jobs: ``POST /v1/extract``, ``POST /v1/jobs`` (batches) and ``GET /v1/jobs/{job_id}``.

Also the focused endpoints, ``POST /v1/summarize`` and ``POST /v1/qa``. ``/v1/extract`` takes a JSON
``source`` URL or a multipart ``file`` upload (with form fields such as ``mode``); the secret is an x402
``X-Payment`` token or an API key as ``Authorization: Bearer <key>``, as docimprint's own client sends it.

Webhooks are accepted and kept on the job but never delivered: every client must be able to poll anyway,
and an emulator calling out to the network would break the "everything runs offline" promise.
"""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from airflow_docjobs.emulator.routes import Bulk, Vendor, read_form, read_json, vendor_route
from airflow_docjobs.emulator.values import Seeded, scenarios_of, seed_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from airflow_docjobs.emulator.core import Emulator, Job

PAGES_PER_SOURCE = 12
ERROR_CODES = {
    400: "invalid_request",
    402: "payment_required",
    404: "not_found",
    422: "invalid_request",
    429: "rate_limited",
    503: "service_unavailable",
}
# Synchronous unless ?async=true; then the full result lands in the job response (no bundle to fetch).
# The vendor documents no request bodies for them: the fields beside ``source`` are their options.
FOCUSED = ("summarize", "qa")
BULK_OPTIONS: dict[str, str] = {}
# Bulk jobs have no upload: their file name is read from this site, reserved for examples (RFC 2606).
BULK_SITE = "https://example.com/"


def _error(request: Request, status: int, message: str, code: str | None = None) -> Response:
    code = code or ERROR_CODES.get(status, "internal_error" if status >= 500 else "invalid_request")
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


DOCIMPRINT = Vendor(
    name="docimprint",
    secret_header="x-payment",
    secret_prefix="",
    error=_error,
    unauthorized=lambda request: _error(
        request, 402, "A valid X-Payment token or API key is required for this endpoint"
    ),
    other_secrets=(("authorization", "Bearer "),),
)


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    url = urlparse(value)
    return url.scheme in ("http", "https") and bool(url.netloc)


def _bundle(*sources: str) -> dict[str, str]:
    """The stored evidence bundle of ``sources``: the same sources always make the same bundle."""
    values = Seeded("\n".join(sources))
    return {
        "bundle_id": "ev_" + values.hexdigest("bundle")[:16],
        "manifest_sha256": values.hexdigest("manifest"),
    }


def _item_error(source: str) -> dict[str, str]:
    """A failed job's ``error`` (a string, as the official client reads it) and its ``code``."""
    name = source.split("\n", 1)[0]  # an upload's source is its name and its content's SHA-256
    return {"error": f"Could not extract {name}: the document could not be parsed", "code": "extract_failed"}


CANCELLED = {"error": "The job was cancelled before it completed", "code": "job_cancelled"}


def _job_json(job: Job, now: float) -> dict[str, Any]:
    sources = job.data["sources"]
    failing = ["fail" in scenarios_of(source) for source in sources]
    cancelled = any("cancel" in scenarios_of(source) for source in sources)
    out: dict[str, Any] = {"job_id": job.key}
    if job.queued(now):
        # "processing" is the only status documented before the end; the message tells a queue apart.
        out |= {"status": "processing", "progress_pct": 0, "progress_message": "Queued"}
    elif not job.done(now):
        pages = PAGES_PER_SOURCE * len(sources)
        # A hair over: a clock's sum such as 36011.3 + 0.2 - 36011.3 is 0.19999..., not 0.2.
        done = job.progress(now) + 1e-9
        pct = math.floor(done * 100)
        page = min(pages, math.floor(done * pages) + 1)  # the page being read now
        out |= {"status": "processing", "progress_pct": pct, "progress_message": f"OCR page {page}/{pages}"}
    elif cancelled:
        out |= {"status": "cancelled", "progress_message": "Cancelled"} | CANCELLED
    elif any(failing):
        out |= {"status": "failed", "progress_pct": 100, "progress_message": "Failed"}
        out |= _item_error(sources[failing.index(True)])
    elif job.kind in FOCUSED:
        out |= {"status": "complete", "progress_pct": 100, "progress_message": "Done", "endpoint": job.kind}
        out["result"] = _focused_result(job.kind, sources[0], job.data.get("options") or {})
    else:
        out |= {"status": "complete", "progress_pct": 100, "progress_message": "Evidence bundle stored"}
        out |= _bundle(*sources)
    if job.kind == "batch":
        items = []
        for source, fails in zip(sources, failing, strict=True):
            item: dict[str, Any] = {"source": source, "status": "processing"}
            if job.done(now):
                item |= {"status": "failed"} | _item_error(source) if fails else {"status": "complete"}
                item |= {} if fails else _bundle(source)
            items.append(item)
        out["items"] = items
    return out


async def _one_source(request: Request) -> dict[str, Any] | Response:
    """The JSON body of a one-source request, or the 422 for a missing source or a bad webhook."""
    body = await read_json(request)
    if not isinstance(body, dict) or not _is_http_url(body.get("source")):
        return _error(request, 422, "Body must be a JSON object whose 'source' is an http(s) URL")
    refused = _bad_webhook(request, body)
    return body if refused is None else refused


def _bad_webhook(request: Request, body: dict[str, Any]) -> Response | None:
    """The 422 for a ``webhook`` that is given but not an http(s) URL, else ``None``."""
    if body.get("webhook") is not None and not _is_http_url(body["webhook"]):
        return _error(request, 422, "webhook must be an http(s) URL")
    return None


async def _upload(request: Request) -> tuple[dict[str, Any], str, str] | Response:
    """
    The form fields, source and shown name of a multipart ``/v1/extract``, or its 422.

    An upload's source is its file name and its content's SHA-256: scenarios and bundles derive from it.
    """
    form = await read_form(request)
    upload = form.get("file") if form is not None else None
    if form is None or not isinstance(upload, UploadFile):
        return _error(request, 422, "A multipart body must carry the document in the field 'file'")
    content = await upload.read()
    if not content:
        return _error(request, 422, "The uploaded file is empty")
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if (refused := _bad_webhook(request, fields)) is not None:
        return refused
    name = upload.filename or "upload"
    return fields, seed_of(name, content), name


async def extract(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /v1/extract``: one source or upload, answered inline with ``sync=true``, else a job."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        found = await _upload(request)
        if isinstance(found, Response):
            return found
        body, source, shown = found
    else:
        found_body = await _one_source(request)
        if isinstance(found_body, Response):
            return found_body
        body, source, shown = found_body, found_body["source"], found_body["source"]
    if request.query_params.get("sync", "").lower() == "true":
        if "fail" in scenarios_of(source):
            return _error(request, 422, _item_error(source)["error"], code="extract_failed")
        # Inline processing: the job is recorded already complete so GET /v1/jobs/{id} agrees.
        job = extraction_job(emulator, "extract", [source], inline=True)
        return JSONResponse(_job_json(job, emulator.now()) | {"source": shown})
    job = extraction_job(emulator, "extract", [source], webhook=body.get("webhook"))
    return JSONResponse({"job_id": job.key, "status": "processing"}, status_code=202)


def _focused_result(endpoint: str, source: str, options: dict[str, Any]) -> dict[str, Any]:
    """What a focused endpoint answers about ``source``: the same source and options, the same answer."""
    values = Seeded(f"{endpoint}\n{source}\n{sorted(options.items())}")
    name = urlparse(source).path.rsplit("/", 1)[-1] or source
    pages = values.integer("pages", 1, PAGES_PER_SOURCE)
    if endpoint == "summarize":
        topic = values.choice("topic", ["an invoice", "a lease", "a payslip", "an identity card"])
        return {"summary": f"{name} is {topic} of {pages} page(s).", "pages": pages}
    question = str(options.get("question") or "What is this document?")
    return {
        "question": question,
        "answer": f"{name}, page {values.integer('page', 1, pages)}",
        "confidence": values.integer("confidence", 60, 99) / 100,
    }


async def focused(request: Request, emulator: Emulator) -> Response:
    """Serve the focused endpoints (``POST /v1/summarize``, ``/v1/qa``...): a job with ``async=true``."""
    endpoint = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    body = await _one_source(request)
    if isinstance(body, Response):
        return body
    source = body["source"]
    options = {k: v for k, v in body.items() if k not in ("source", "webhook")}
    if request.query_params.get("async", "").lower() != "true":  # synchronous: the answer inline
        if "fail" in scenarios_of(source):
            return _error(request, 422, _item_error(source)["error"], code="extract_failed")
        return JSONResponse({"source": source, "result": _focused_result(endpoint, source, options)})
    job = extraction_job(emulator, endpoint, [source], options=options, webhook=body.get("webhook"))
    return JSONResponse({"job_id": job.key, "status": "processing"}, status_code=202)


async def batch(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /v1/jobs``: a batch of sources as one job."""
    body = await read_json(request)
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return _error(request, 422, 'items must be a non-empty list of {"source": url} objects')
    if not all(isinstance(item, dict) and _is_http_url(item.get("source")) for item in items):
        return _error(request, 422, "every item needs a 'source' that is an http(s) URL")
    if (refused := _bad_webhook(request, body)) is not None:
        return refused
    mode = body.get("mode", "extract")
    if not isinstance(mode, str) or not mode:
        return _error(request, 422, "mode must be a string such as 'extract'")
    sources = [item["source"] for item in items]
    job = extraction_job(emulator, "batch", sources, mode=mode, webhook=body.get("webhook"))
    return JSONResponse({"job_id": job.key, "status": "processing"}, status_code=202)


async def job_status(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET /v1/jobs/{job_id}``: the job's status, progress and result (public, free)."""
    job = emulator.get("docimprint", request.path_params["job_id"])
    if job is None:
        return _error(request, 404, f"No job {request.path_params['job_id']}")
    now = emulator.now()
    emulator.answered(job, now)
    return JSONResponse(_job_json(job, now))


# -- job creation, shared by the submit handlers and /_emulator/bulk -----------------------------------


def extraction_job(
    emulator: Emulator,
    kind: str,
    sources: list[str],
    duration: float | None = None,
    inline: bool = False,
    **data: Any,
) -> Job:
    """
    An ``extract`` or focused (one source) or ``batch`` job; ``data`` keeps the request's other fields.

    An ``inline`` job was processed within its request: complete at once, whatever its scenarios.
    """
    job_id = "job_" + uuid.uuid4().hex[:16]
    scenarios = frozenset() if inline else scenarios_of(*sources)
    duration = 0.0 if inline else duration
    return emulator.new_job("docimprint", kind, job_id, scenarios, duration=duration, sources=sources, **data)


def bulk_job(emulator: Emulator, bulk: Bulk) -> Callable[[], Job]:
    """A factory of extract jobs for ``POST /_emulator/bulk``."""
    sources, seconds = [BULK_SITE + bulk.name], bulk.processing_seconds
    return lambda: extraction_job(emulator, "extract", sources, seconds, webhook=None)


ROUTES = [
    vendor_route(DOCIMPRINT, "/v1/extract", extract, ["POST"]),
    vendor_route(DOCIMPRINT, "/v1/jobs", batch, ["POST"]),
    *(vendor_route(DOCIMPRINT, f"/v1/{endpoint}", focused, ["POST"]) for endpoint in FOCUSED),
    # Polling is documented as free and shown without X-Payment, so it needs no token.
    vendor_route(DOCIMPRINT, "/v1/jobs/{job_id}", job_status, ["GET"], public=True),
]
