"""Finovox document analysis (``/analyse``, ``/retrieve``) and case analysis (``/case``, ``/case/retrieve``)."""

from __future__ import annotations

import html
import json
import uuid
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData, UploadFile
from starlette.responses import HTMLResponse, JSONResponse, Response

from airflow_docjobs.emulator.routes import Bulk, Vendor, read_form, read_json, vendor_route
from airflow_docjobs.emulator.routes import detail_error as _error
from airflow_docjobs.emulator.values import (
    Seeded,
    fernet_like_token,
    file_extension,
    is_fernet_like,
    scenarios_of,
    seed_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from airflow_docjobs.emulator.core import Emulator, Job

DOCUMENT_EXTENSIONS = frozenset({".pdf", ".jpg", ".jpeg", ".png"})
CASE_EXTENSIONS = DOCUMENT_EXTENSIONS | frozenset(
    {".tif", ".tiff", ".webp", ".heic", ".doc", ".docx", ".odt", ".xls", ".xlsx", ".ods", ".json"}
)
CASE_ANALYSE_TYPES = ("decision", "explanation", "share_link")
FOLDER_FAILED = "The async folder failed and could not produce a final result."
# Producers of clean documents; a tampered one (scenario "fraud" or "fail") always reads "photoshop".
SOFTWARE = ("Microsoft Word", "LibreOffice", "Adobe Acrobat", "Google Docs", "Quartz PDFContext", "iText")
BULK_OPTIONS = {"kind": "document"}


FINOVOX = Vendor(
    name="finovox",
    secret_header="api-key",
    secret_prefix="",
    error=_error,
    unauthorized=lambda request: _error(request, 401, "Invalid API key"),
)


def _payload(form: FormData) -> dict[str, Any] | str:
    """The parsed ``payload`` form field, or an error message."""
    raw = form.get("payload")
    if raw is None:
        return {}
    if not isinstance(raw, str):
        return "payload must be a JSON string form field"
    try:
        payload = json.loads(raw)
    except ValueError:
        return "payload is not valid JSON"
    return payload if isinstance(payload, dict) else "payload must be a JSON object"


def _unsupported(upload: UploadFile, allowed: frozenset[str]) -> str | None:
    if file_extension(upload.filename) in allowed:
        return None
    return f"Unsupported file format for '{upload.filename}'; accepted: {', '.join(sorted(allowed))}"


def _document_result(filename: str, scenarios: frozenset[str], values: Seeded) -> dict[str, Any]:
    # Document analysis documents no failure, so "fail" shows up as a high risk like "fraud". The scenario
    # fixes the global risk and the tampering signs; the other sub-scores vary with the document.
    risky = bool(scenarios & {"fraud", "fail"})
    level = "high" if risky else "low"
    return {
        "name": filename,
        "global_risk": level,
        "software_risk": level,
        "metadata_risk": values.choice("metadata", ("medium", "high") if risky else ("low", "medium")),
        "datastructure_risk": values.choice("datastructure", ("low", "medium")),
        "vision_risk": level,
        "coherence_risk": values.choice("coherence", ("medium", "high") if risky else ("low", "medium")),
        "document_quality": "acceptable",
        "software": "photoshop" if risky else values.choice("software", SOFTWARE),
    }


def _case_result(
    request: Request, names: list[str], payload: dict[str, Any], share_id: str, scenarios: frozenset[str]
) -> dict[str, Any]:
    """The case result; built when it is read, so the share link names the host the client polls."""
    fraud = "high" if "fraud" in scenarios else "low"
    validation = "non_compliant" if "noncompliant" in scenarios else "compliant"
    result: dict[str, Any] = {}
    for kind in payload["analyse_type"]:
        if kind == "decision":
            approved = fraud == "low" and validation == "compliant"
            result["decision"] = {
                "status": "approved" if approved else "rejected",
                "status_fraud": fraud,
                "status_validation": validation,
            }
        elif kind == "explanation":
            if fraud == "high":
                result["explanation"] = (
                    f"Signs of tampering were found among the {len(names)} documents: "
                    "the producing software and metadata of at least one document are inconsistent."
                )
            else:
                result["explanation"] = (
                    f"The {len(names)} documents are consistent with each other and show no sign of tampering."
                )
        elif kind == "share_link":
            settings = payload.get("share_link_settings") or {}
            result["share_link"] = {
                "url": f"{str(request.base_url).rstrip('/')}/finovox/share/{share_id}",
                "access": settings.get("access", "public"),
                "password_protected": bool(settings.get("password")),
            }
    return result


async def analyse(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /analyse``: one document upload; a retrieve token when asynchronous, else the result."""
    form = await read_form(request)
    if form is None:
        return _error(request, 422, "Malformed multipart body")
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _error(request, 422, "Field 'file' is required")
    if problem := _unsupported(upload, DOCUMENT_EXTENSIONS):
        return _error(request, 422, problem)
    payload = _payload(form)
    if isinstance(payload, str):
        return _error(request, 422, payload)
    analyse_type = payload.get("analyse_type", ["risk"])
    if not isinstance(analyse_type, list) or not all(isinstance(t, str) for t in analyse_type):
        return _error(request, 422, "analyse_type must be a list of strings")
    seed = seed_of(upload.filename, await upload.read())
    if not payload.get("asynchronous"):
        return JSONResponse(_document_result(upload.filename, scenarios_of(upload.filename), Seeded(seed)))
    return JSONResponse({"retrieve_token": document_job(emulator, upload.filename, seed).key})


async def _token(request: Request) -> str | None:
    body = await read_json(request)
    token = body.get("retrieve_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


async def retrieve(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /retrieve``: a document analysis' result, or 425 while it is not ready."""
    token = await _token(request)
    if token is None:
        return _error(request, 422, "Body must be a JSON object with a 'retrieve_token'")
    now = emulator.now()
    job = emulator.get("finovox", token, "document")
    if job is not None and job.expired(now, emulator.settings.result_ttl_seconds):
        emulator.drop(job)  # Finovox deletes results; later polls find nothing, as for a bad token.
        job = None
    if job is None or job.api_key != emulator.settings.api_key:
        return _error(request, 404, "No result found for this retrieve_token")
    emulator.answered(job, now)
    if not job.done(now):
        # The docs only promise "an error message" and a non-200 status. 425 Too Early says exactly
        # "ask again later" and is used nowhere else, so a client cannot mistake it for a real error.
        return _error(request, 425, "Result not ready, retry later")
    return JSONResponse(_document_result(job.data["name"], job.scenarios, job.values))


async def case(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /case``: a case folder upload; a retrieve token when asynchronous, else the result."""
    form = await read_form(request)
    if form is None:
        return _error(request, 422, "Malformed multipart body")
    documents = [d for d in form.getlist("documents") if isinstance(d, UploadFile) and d.filename]
    if not documents:
        return _error(request, 422, "At least one file is required in 'documents'")
    for document in documents:
        if problem := _unsupported(document, CASE_EXTENSIONS):
            return _error(request, 422, problem)
    payload = _payload(form)
    if isinstance(payload, str):
        return _error(request, 422, payload)
    use_case = payload.get("use_case")
    if not isinstance(use_case, str) or not use_case.strip():
        return _error(request, 422, "use_case is required")
    analyse_type = payload.setdefault("analyse_type", ["decision"])
    if isinstance(analyse_type, str):
        analyse_type = payload["analyse_type"] = [analyse_type]
    if (
        not isinstance(analyse_type, list)
        or not analyse_type
        or not set(analyse_type) <= set(CASE_ANALYSE_TYPES)
    ):
        return _error(request, 422, f"analyse_type must be a non-empty subset of {list(CASE_ANALYSE_TYPES)}")
    if not isinstance(payload.get("share_link_settings") or {}, dict):
        return _error(request, 422, "share_link_settings must be an object")

    names = [d.filename for d in documents if d.filename]
    if payload.get("asynchronous"):
        return JSONResponse({"retrieve_token": case_job(emulator, names, payload).key}, status_code=202)
    scenarios = scenarios_of(*names)
    if "fail" in scenarios:
        return _error(request, 500, FOLDER_FAILED)
    return JSONResponse(_case_result(request, names, payload, uuid.uuid4().hex, scenarios))


async def case_retrieve(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /case/retrieve``: a case analysis' result, or 202 while it is processing."""
    token = await _token(request)
    if token is None:
        return _error(request, 422, "Body must be a JSON object with a 'retrieve_token'")
    if not is_fernet_like(token):
        return _error(request, 401, "Invalid retrieve_token")
    now = emulator.now()
    job = emulator.get("finovox", token, "case")
    if job is not None and job.expired(now, emulator.settings.result_ttl_seconds):
        emulator.drop(job)
        job = None
    if job is None:
        return _error(request, 404, "Async run not found")
    if job.api_key != emulator.settings.api_key:
        return _error(request, 403, "This retrieve_token belongs to another user")
    if not job.done(now):
        return JSONResponse({"status": "processing", "run_id": job.data["run_id"]}, status_code=202)
    if job.failed:
        return _error(request, 500, FOLDER_FAILED)
    return JSONResponse(_case_json(request, job))


async def share(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET /share/{share_id}``: a done case's HTML report behind its share link (no key)."""
    job = emulator.get("finovox", "share:" + request.path_params["share_id"], "case")
    if job is None or not job.done(emulator.now()) or job.failed:
        return HTMLResponse("<h1>Report not found</h1>", status_code=404)
    items = "".join(f"<li>{html.escape(name)}</li>" for name in job.data["names"])
    decision = html.escape(json.dumps(_case_json(request, job).get("decision", {})))
    return HTMLResponse(f"<h1>Finovox case report (emulator)</h1><ul>{items}</ul><pre>{decision}</pre>")


def _case_json(request: Request, job: Job) -> dict[str, Any]:
    data = job.data
    return _case_result(request, data["names"], data["payload"], data["share_id"], job.scenarios)


# -- job creation, shared by the submit handlers and /_emulator/bulk -----------------------------------


def document_job(emulator: Emulator, name: str, seed: str, duration: float | None = None) -> Job:
    """Record a document analysis job keyed on a new retrieve token."""
    token = fernet_like_token()
    return emulator.new_job("finovox", "document", token, scenarios_of(name), seed, duration, name=name)


def case_job(
    emulator: Emulator, names: list[str], payload: dict[str, Any], duration: float | None = None
) -> Job:
    """Record a case analysis job keyed on a new retrieve token, with its share link and run id."""
    share_id = uuid.uuid4().hex
    job = emulator.new_job(
        "finovox",
        "case",
        fernet_like_token(),
        scenarios_of(*names),
        duration=duration,
        names=names,
        payload=payload,
        share_id=share_id,
    )
    job.data["run_id"] = job.issued_at.strftime("%m_%d_%H_%M_%S_") + uuid.uuid4().hex
    emulator.alias(job, f"share:{share_id}")
    return job


def bulk_job(emulator: Emulator, bulk: Bulk) -> Callable[[], Job]:
    """A factory of document or case jobs for ``POST /_emulator/bulk``."""
    kind, name, seconds = bulk.options["kind"], bulk.name, bulk.processing_seconds
    if kind == "document":
        return lambda: document_job(emulator, name, seed_of(name), seconds)
    if kind == "case":
        payload = {"analyse_type": ["decision"], "use_case": "rental", "asynchronous": True}
        return lambda: case_job(emulator, [name], payload, seconds)
    raise ValueError("kind must be 'document' or 'case'")


ROUTES = [
    vendor_route(FINOVOX, "/analyse", analyse, ["POST"]),
    vendor_route(FINOVOX, "/retrieve", retrieve, ["POST"]),
    vendor_route(FINOVOX, "/case", case, ["POST"]),
    vendor_route(FINOVOX, "/case/retrieve", case_retrieve, ["POST"]),
    # A share link is meant to be opened in a browser, without the API key.
    vendor_route(FINOVOX, "/share/{share_id}", share, ["GET"], public=True),
]
