"""
Mindee v2: enqueue, ``GET /v2/jobs/{job_id}``, and the inference at the job's ``result_url``.

``POST /v2/products/{product}/enqueue`` as the SDK (5.2+) sends it, and the older ``/v2/inferences/enqueue``.
Faithful enough for the official ``mindee`` SDK's v2 client (``enqueue_and_get_result``), which reads every
job and inference key below by name; the shapes follow Mindee's recorded responses (client-lib-test-data
``v2/``). A file name or URL containing ``fail`` makes a ``Failed`` job, ``never`` one that keeps processing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from airflow_docjobs.emulator.mindee_v2_results import product_result
from airflow_docjobs.emulator.routes import Bulk, Vendor, read_form, vendor_route
from airflow_docjobs.emulator.values import file_extension, pdf_page_count, scenarios_of, seed_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from starlette.datastructures import FormData
    from starlette.requests import Request

    from airflow_docjobs.emulator.core import Emulator, Job

PRODUCTS = ("extraction", "classification", "crop", "ocr", "split")
FLAGS = ("rag", "raw_text", "polygon", "confidence")
BULK_OPTIONS = {"model_id": "00000000-0000-4000-8000-000000000001", "product": "extraction"}
MIME_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# The failed job's problem: the emulator's own words (Mindee documents the shape, not its processing codes).
FAILURE = {
    "status": 500,
    "detail": "The document could not be processed.",
    "title": "Processing error",
    "code": "500-001",
    "errors": [],
}


def problem(
    request: Request, status: int, detail: str, title: str = "", code: str = "", errors: Any = ()
) -> Response:
    """An RFC 9457 problem document, as Mindee v2 answers every error."""
    body = {
        "status": status,
        "detail": detail,
        "title": title or detail,
        "code": code or f"{status}-000",
        "errors": list(errors),
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _unauthorized(request: Request) -> Response:
    # Mindee's recorded answers: an invalid key is 401-001, no key at all 401-008.
    if request.headers.get("authorization"):
        return problem(request, 401, "The provided API key is invalid.", "Invalid API key", "401-001")
    return problem(request, 401, "Credentials are required.", "Missing credentials", "401-008")


MINDEE_V2 = Vendor(
    name="mindee_v2",
    secret_header="authorization",
    secret_prefix="",
    error=lambda request, status, detail: problem(request, status, detail),
    unauthorized=_unauthorized,
)


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat()  # as recorded: naive UTC, microseconds


def _invalid(request: Request, pointer: str, detail: str) -> Response:
    errors = [{"pointer": pointer, "detail": detail}]
    return problem(
        request, 422, "One or more fields failed validation.", "Invalid fields in form", "422-001", errors
    )


def _job_json(job: Job, now: float, base: str) -> dict[str, Any]:
    done = job.done(now)
    status = ("Failed" if job.failed else "Processed") if done else "Processing"
    data = job.data
    return {
        "id": job.key,
        "model_id": data["model_id"],
        "filename": data["name"],
        "alias": data["alias"],
        "created_at": _iso(job.issued_at),
        "completed_at": _iso(job.wall(job.finished)) if done else None,
        "status": status,
        "polling_url": f"{base}/v2/jobs/{job.key}",
        "result_url": f"{base}{data['result_path']}" if status == "Processed" else None,
        "webhooks": [
            {"id": hook, "created_at": None, "status": "Processing", "error": None}
            for hook in data["webhooks"]
        ],
        "error": dict(FAILURE) if status == "Failed" else None,
    }


def _base(request: Request) -> str:
    """The API's root on the request's own host and prefix (``.../mindee_v2``), for absolute URLs."""
    return str(request.url.replace(query="")).split("/v2/", 1)[0]


def _flag(form: FormData, name: str) -> bool | None:
    value = form.get(name)
    return None if value is None else str(value).lower() == "true"


async def enqueue(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /v2/products/{product}/enqueue`` (and ``/v2/inferences/enqueue``): a job on a model."""
    product = request.path_params.get("product", "extraction")
    if product not in PRODUCTS:
        return problem(request, 404, f"Unknown product {product!r}.", "Not found", "404-001")
    form = await read_form(request)
    if form is None:
        return _invalid(request, "#/", "the body must be a form")
    model_id = form.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        return _invalid(request, "#/model_id", "model_id is required")
    document, url = form.get("file"), form.get("url")
    if isinstance(document, UploadFile):
        content = await document.read()
        name = document.filename or "document"
        seed, scenarios = seed_of(name, content), scenarios_of(name)
        pages = pdf_page_count(content) if file_extension(name) == ".pdf" else 1
    elif isinstance(url, str) and url:
        parts = urlparse(url)
        if parts.scheme.lower() != "https" or not parts.netloc:
            return _invalid(request, "#/url", "url must be a public https URL")
        name = parts.path.rsplit("/", 1)[-1] or parts.netloc
        seed, scenarios, pages = seed_of(url), scenarios_of(url), 1
    else:
        return _invalid(request, "#/file", "either file or url is required")
    options = {flag: _flag(form, flag) for flag in FLAGS}
    alias = form.get("alias")
    alias = alias if isinstance(alias, str) else None
    webhooks = [str(w) for w in form.getlist("webhook_ids")]
    legacy = "product" not in request.path_params
    job = v2_job(emulator, product, model_id, name, seed, scenarios, pages, alias, webhooks, options, legacy)
    return JSONResponse({"job": _job_json(job, emulator.now(), _base(request))}, status_code=202)


async def get_job(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET /v2/jobs/{job_id}``: the job, with its ``result_url`` once processed."""
    job_id = request.path_params["job_id"]
    job = emulator.get("mindee_v2", job_id, "job")
    if job is None:
        return problem(request, 404, f"No job with id {job_id}.", "Job not found", "404-002")
    return JSONResponse({"job": _job_json(job, emulator.now(), _base(request))})


async def get_result(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET /v2/products/{product}/results/{id}`` (and ``/v2/inferences/{id}``): the inference."""
    inference_id = request.path_params["inference_id"]
    job = emulator.get("mindee_v2", "inference:" + inference_id)
    if job is None or not job.done(emulator.now()) or job.failed:
        return problem(
            request, 404, f"No inference with id {inference_id}.", "Inference not found", "404-003"
        )
    data = job.data
    extension = file_extension(data["name"])
    inference: dict[str, Any] = {
        "id": inference_id,
        "job": {"id": job.key},
        "model": {"id": data["model_id"]},
        "file": {
            "name": data["name"],
            "alias": data["alias"],
            "page_count": data["pages"],
            "mime_type": MIME_TYPES.get(extension, "application/octet-stream"),
        },
        "result": product_result(data["product"], job.values, data["pages"], data["options"]),
    }
    if data["product"] == "extraction":
        inference["active_options"] = {
            **{flag: bool(data["options"].get(flag)) for flag in FLAGS},
            "text_context": False,
            "data_schema": {"replace": False},
        }
    return JSONResponse({"inference": inference})


# -- job creation, shared by enqueue and /_emulator/bulk ------------------------------------------------


def v2_job(
    emulator: Emulator,
    product: str,
    model_id: str,
    name: str,
    seed: str,
    scenarios: frozenset[str],
    pages: int = 1,
    alias: str | None = None,
    webhooks: list[str] | None = None,
    options: dict[str, bool | None] | None = None,
    legacy: bool = False,
    duration: float | None = None,
) -> Job:
    """A job of ``product`` on ``model_id``; its inference is also reachable by its own id."""
    inference_id = str(uuid.uuid4())
    path = f"/v2/inferences/{inference_id}" if legacy else f"/v2/products/{product}/results/{inference_id}"
    job = emulator.new_job(
        "mindee_v2",
        "job",
        str(uuid.uuid4()),
        scenarios,
        seed,
        duration,
        product=product,
        model_id=model_id,
        name=name,
        alias=alias,
        pages=pages,
        webhooks=webhooks or [],
        options=options or {},
        result_path=path,
    )
    emulator.alias(job, "inference:" + inference_id)
    return job


def bulk_job(emulator: Emulator, bulk: Bulk) -> Callable[[], Job]:
    """A factory of jobs for ``POST /_emulator/bulk``."""
    product, model_id = bulk.options["product"], bulk.options["model_id"]
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {', '.join(PRODUCTS)}")
    name, seconds = bulk.name, bulk.processing_seconds
    seed, scenarios = seed_of(name), scenarios_of(name)
    return lambda: v2_job(emulator, product, model_id, name, seed, scenarios, duration=seconds)


ROUTES = [
    vendor_route(MINDEE_V2, "/v2/products/{product}/enqueue", enqueue, ["POST"]),
    vendor_route(MINDEE_V2, "/v2/inferences/enqueue", enqueue, ["POST"]),
    vendor_route(MINDEE_V2, "/v2/jobs/{job_id}", get_job, ["GET"]),
    vendor_route(MINDEE_V2, "/v2/products/{product}/results/{inference_id}", get_result, ["GET"]),
    vendor_route(MINDEE_V2, "/v2/inferences/{inference_id}", get_result, ["GET"]),
]
