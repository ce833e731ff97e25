"""
Mindee v1 asynchronous prediction: ``predict_async``, ``documents/queue/{job_id}``, ``documents/{document_id}``.

Faithful enough for the official ``mindee`` SDK's v1 client (``enqueue``, ``parse_queued``,
``enqueue_and_parse``) and its ``InvoiceV4`` parser, which reads every field below by name.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from airflow_docjobs.emulator.mindee_predictions import (
    INVOICE_FEATURES,
    generic_prediction,
    generic_values,
    invoice_prediction,
    invoice_values,
)
from airflow_docjobs.emulator.routes import Bulk, Vendor, read_form, read_json, vendor_route
from airflow_docjobs.emulator.values import pdf_page_count, scenarios_of, seed_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from starlette.requests import Request

    from airflow_docjobs.emulator.core import Emulator, Job

PRODUCT = "/v1/products/{account}/{name}/{version}"
ERROR_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    413: "FileTooLarge",
    429: "TooManyRequests",
    500: "failure",  # Mindee's own code for a 500 (its recorded error_500_inference_fail.json)
}
BULK_OPTIONS = {"product": "mindee/invoices/v4"}


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat()  # Mindee prints naive UTC timestamps.


def _envelope(
    request: Request, status_code: int, resources: list[str], error: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "api_request": {
            "error": error or {},
            "resources": resources,
            "status": "failure" if error else "success",
            "status_code": status_code,
            "url": str(request.url),
        }
    }


def _error(request: Request, status: int, message: str, details: Any = None) -> Response:
    # The SDK builds its exception from api_request.error, so every error carries the full envelope.
    code = ERROR_CODES.get(status, "ServerError" if status >= 500 else "BadRequest")
    error = {"code": code, "message": message, "details": message if details is None else details}
    return JSONResponse(_envelope(request, status, [], error), status_code=status)


def _unauthorized(request: Request) -> Response:
    details = "Invalid token provided" if request.headers.get("authorization") else "No token provided"
    return _error(request, 401, "Authorization required", details)


MINDEE = Vendor(
    name="mindee",
    secret_header="authorization",
    secret_prefix="Token ",
    error=_error,
    unauthorized=_unauthorized,
)


def _job_json(job: Job, now: float) -> dict[str, Any]:
    done = job.done(now)
    if done:
        status = "failed" if job.failed else "completed"
    else:
        # Queued jobs (elapsed 0) wait too.
        status = "waiting" if job.elapsed(now) < job.duration / 4 else "processing"
    error = {}
    if done and job.failed:
        error = {
            "code": "ServerError",
            "message": "An error occurred",
            "details": "The document could not be processed",
        }
    return {
        "available_at": _iso(job.wall(job.finished)) if done else None,
        "error": error,
        "id": job.key,
        "issued_at": _iso(job.issued_at),
        "status": status,
    }


def _same_product(job: Job, request: Request) -> bool:
    p = request.path_params
    product: tuple[str, str, str] = job.data["product"]
    return product == (p["account"], p["name"], p["version"])


async def predict_async(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /v1/products/{account}/{name}/{version}/predict_async``: enqueue a document."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await read_json(request)
        body = body if isinstance(body, dict) else {}
        document, filename = body.get("document"), body.get("filename")
    else:
        form = await read_form(request)
        document, filename = (form.get("document"), None) if form is not None else (None, None)

    if isinstance(document, UploadFile):
        content = await document.read()
        name = document.filename or "document"
        seed, scenarios = seed_of(name, content), scenarios_of(name)
        n_pages = pdf_page_count(content) if name.lower().endswith(".pdf") else 1
    elif isinstance(document, str) and "://" in document:
        url = urlparse(document)
        if url.scheme.lower() != "https" or not url.netloc:
            return _error(request, 400, "Invalid document URL", "Only public HTTPS URLs are accepted")
        name = url.path.rsplit("/", 1)[-1] or url.netloc
        seed, scenarios, n_pages = seed_of(document), scenarios_of(document), 1
    elif isinstance(document, str) and document:
        try:
            content = base64.b64decode(document, validate=True)
        except (binascii.Error, ValueError):
            return _error(request, 400, "Invalid fields in form", {"document": ["Invalid base64 content."]})
        name = filename if isinstance(filename, str) and filename else "document"
        seed, scenarios = seed_of(name, content), scenarios_of(name, content)
        n_pages = pdf_page_count(content) if content.startswith(b"%PDF") else 1
    else:
        return _error(
            request, 400, "Invalid fields in form", {"document": ["Missing data for required field."]}
        )

    p = request.path_params
    job = prediction_job(emulator, (p["account"], p["name"], p["version"]), name, seed, scenarios, n_pages)
    body = _envelope(request, 202, ["job"]) | {"job": _job_json(job, emulator.now())}
    return JSONResponse(body, status_code=202)


async def queue(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET .../documents/queue/{job_id}``: the job, or a 302 to its document once completed."""
    job = emulator.get("mindee", request.path_params["job_id"])
    if job is None or not _same_product(job, request):
        return _error(request, 404, "Job not found", f"No job with id {request.path_params['job_id']}")
    now = emulator.now()
    emulator.answered(job, now)
    job_json = _job_json(job, now)
    if job_json["status"] != "completed":
        return JSONResponse(_envelope(request, 200, ["job"]) | {"job": job_json})
    # Absolute URL on the request's own host and prefix, so clients following it stay on the emulator.
    queue_url = str(request.url.replace(query=""))
    location = queue_url.rsplit("/documents/queue/", 1)[0] + "/documents/" + job.data["document_id"]
    return JSONResponse(
        _envelope(request, 302, ["job"]) | {"job": job_json}, status_code=302, headers={"Location": location}
    )


async def document(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET .../documents/{document_id}``: a completed job's prediction."""
    document_id = request.path_params["document_id"]
    job = emulator.get("mindee", "document:" + document_id)
    now = emulator.now()
    if job is None or not _same_product(job, request) or not job.done(now) or job.failed:
        return _error(request, 404, "Document not found", f"No document with id {document_id}")
    account, name, version = job.data["product"]
    invoice = (account, name) == ("mindee", "invoices")
    values = invoice_values(job.values) if invoice else generic_values(job.values)
    pages = [
        {
            "extras": {},
            "id": page,
            "orientation": {"value": 0},
            "prediction": invoice_prediction(None, values, filled=page == 0)
            if invoice
            else generic_prediction(None, values),
        }
        for page in range(job.data["n_pages"])
    ]
    inference = {
        "extras": {},
        "finished_at": _iso(job.wall(job.finished)),
        "is_rotation_applied": True,
        "pages": pages,
        "prediction": invoice_prediction(0, values) if invoice else generic_prediction(0, values),
        "processing_time": round(job.duration, 3),
        "product": {
            "features": list(INVOICE_FEATURES if invoice else ("date", "total_amount", "locale")),
            "name": f"{account}/{name}",
            "type": "standard" if account == "mindee" else "custom",
            "version": "4.11" if invoice else version.removeprefix("v") + ".0",
        },
        "started_at": _iso(job.wall(job.started)),
    }
    doc = {
        "id": document_id,
        "inference": inference,
        "n_pages": job.data["n_pages"],
        "name": job.data["name"],
    }
    return JSONResponse(
        _envelope(request, 200, ["document", "job"]) | {"document": doc, "job": _job_json(job, now)}
    )


# -- job creation, shared by predict_async and /_emulator/bulk -----------------------------------------


def prediction_job(
    emulator: Emulator,
    product: tuple[str, str, str],
    name: str,
    seed: str,
    scenarios: frozenset[str],
    n_pages: int = 1,
    duration: float | None = None,
) -> Job:
    """A job of ``product`` (account, name, version); its document is also reachable by its own id."""
    document_id = str(uuid.uuid4())
    job = emulator.new_job(
        "mindee",
        "prediction",
        str(uuid.uuid4()),
        scenarios,
        seed,
        duration,
        product=product,
        document_id=document_id,
        name=name,
        n_pages=n_pages,
    )
    emulator.alias(job, "document:" + document_id)
    return job


def bulk_job(emulator: Emulator, bulk: Bulk) -> Callable[[], Job]:
    """A factory of prediction jobs for ``POST /_emulator/bulk``."""
    parts = bulk.options["product"].split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError("product must read 'account/name/version', e.g. 'mindee/invoices/v4'")
    product = (parts[0], parts[1], parts[2])
    name, seconds = bulk.name, bulk.processing_seconds
    seed, scenarios = seed_of(name), scenarios_of(name)
    return lambda: prediction_job(emulator, product, name, seed, scenarios, duration=seconds)


ROUTES = [
    vendor_route(MINDEE, PRODUCT + "/predict_async", predict_async, ["POST"]),
    vendor_route(MINDEE, PRODUCT + "/documents/queue/{job_id}", queue, ["GET"]),
    vendor_route(MINDEE, PRODUCT + "/documents/{document_id}", document, ["GET"]),
]
