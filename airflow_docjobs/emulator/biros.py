"""myBiros async inference: ``async-predict`` and ``predicted-documents/{document_id}``, with human review."""

from __future__ import annotations

import mimetypes
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from airflow_docjobs.emulator.routes import Bulk, Vendor, read_form, vendor_route
from airflow_docjobs.emulator.routes import detail_error as _error
from airflow_docjobs.emulator.values import Seeded, file_extension, pdf_page_count, scenarios_of, seed_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from airflow_docjobs.emulator.core import Emulator, Job

SERVICE = "/inference/service/{service_id}"
# The one service id that does not exist, so clients can exercise the documented 404.
UNKNOWN_SERVICE = "unknown"
SERVICE_FIELDS = {
    "surname_1": {"tag_alias": "Surname", "tag_multiple_values": True},
    "name_1": {"tag_alias": "Name", "tag_multiple_values": True},
    "fiscal_code_1": {"tag_alias": "FiscalCode", "tag_multiple_values": False},
}
SURNAMES = ("VERDI", "ROSSI", "BIANCHI", "ESPOSITO", "ROMANO", "COLOMBO", "RICCI", "MARINO", "GRECO")
NAMES = ("GIUSEPPE", "MARIA", "GIOVANNI", "ANNA", "LUCA", "FRANCESCA", "MARCO", "GIULIA", "PAOLO")
MONTHS = "ABCDEHLMPRST"  # the fiscal code's letter for January to December
BULK_OPTIONS = {"service_id": "svc-1"}


BIROS = Vendor(
    name="biros",
    secret_header="x-api-key",
    secret_prefix="",
    error=_error,
    unauthorized=lambda request: _error(request, 401, "Invalid or missing API key"),
)


def _box(x: int, y: int, width: int, height: int) -> list[dict[str, int]]:
    return [{"x": x, "y": y, "width": width, "height": height}]


def _entity(entity_id: int, text: str, confidence: float, box: tuple[int, int, int, int]) -> dict[str, Any]:
    return {"id": entity_id, "text": text, "confidence": confidence, "bounding_boxes": _box(*box)}


def _code(word: str, first_name: bool = False) -> str:
    """A name's three letters in an Italian fiscal code: its consonants, then its vowels, then X."""
    consonants = [c for c in word if c not in "AEIOU"]
    if first_name and len(consonants) > 3:
        consonants = [consonants[0], *consonants[2:4]]
    return ("".join(consonants) + "".join(c for c in word if c in "AEIOU") + "XXX")[:3]


def person(values: Seeded) -> tuple[str, str, str]:
    """Surname, name and fiscal code of the person on the document (the checksum letter is not real)."""
    surname, name = values.choice("surname", SURNAMES), values.choice("name", NAMES)
    born = (
        f"{values.integer('year', 40, 99)}{values.choice('month', MONTHS)}{values.integer('day', 1, 28):02d}"
    )
    place = f"{values.choice('place', 'ABCDEFGHILM')}{values.integer('place number', 100, 999)}"
    return surname, name, f"{_code(surname)}{_code(name, True)}{born}{place}{values.choice('check', MONTHS)}"


def _page(index: int, values: Seeded | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A page; only the first one, given ``values``, holds the entities."""
    entities: dict[str, Any] = {}
    words: list[tuple[str, float, tuple[int, int, int, int]]] = []
    if values is not None:
        surname, name, fiscal_code = person(values)
        words = [(surname, 99.43, (120, 80, 90, 24)), (name, 99.47, (120, 120, 120, 24))]
        words.append((fiscal_code, 90.97, (120, 160, 260, 24)))
        entities = {
            "surname_1": [_entity(0, *words[0])],
            "name_1": [_entity(1, *words[1])],
            "fiscal_code_1": _entity(2, *words[2]),  # single-valued field: an object, not a list
        }
    return {
        "page_index": index,
        "page_layout": {"height": 600, "width": 1000, "rotation_angle": 0},
        "ocr": [
            {"text": text, "confidence": confidence, "bounding_boxes": _box(*box)}
            for text, confidence, box in words
        ],
        "entities_index": len(entities),
        "entities": entities,
        "aggregated_entities": {},
        "policy_violations": [],
        "errors": errors,
    }


def _revision_status(job: Job, emulator: Emulator, now: float) -> str:
    # A reviewer picks the document up half way through review_seconds and decides at the end.
    review = emulator.settings.review_seconds
    since = job.since_done(now)
    if since < review / 2:
        return "pending"
    if since < review:
        return "to_review"
    return "not_approved" if "reject" in job.scenarios else "approved"


async def async_predict(request: Request, emulator: Emulator) -> Response:
    """Serve ``POST /inference/service/{service_id}/async-predict``: a document upload."""
    service_id = request.path_params["service_id"]
    if service_id == UNKNOWN_SERVICE:
        return _error(request, 404, f"Service {service_id} not found")
    form = await read_form(request)
    upload = form.get("file") if form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _error(request, 422, "Field 'file' is required")
    content = await upload.read()
    pdf = file_extension(upload.filename) == ".pdf"
    page_count = pdf_page_count(content) if pdf else 1
    job = inference_job(emulator, service_id, upload.filename, content, upload.content_type, page_count)
    return JSONResponse({"job": job.data["job_id"], "resource": job.key})


async def predicted_document(request: Request, emulator: Emulator) -> Response:
    """Serve ``GET /inference/service/{service_id}/predicted-documents/{document_id}``: a poll."""
    service_id, document_id = request.path_params["service_id"], request.path_params["document_id"]
    if service_id == UNKNOWN_SERVICE:
        return _error(request, 404, f"Service {service_id} not found")
    job = emulator.get("biros", document_id)
    if job is None or job.data["service_id"] != service_id:
        return _error(request, 404, f"Document {document_id} not found for service {service_id}")
    now = emulator.now()
    out: dict[str, Any] = {
        "service": service_id,
        "current_date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not job.done(now):
        message = "Currently processing the document. Please attempt again later."
        return JSONResponse(out | {"document": {"status": "RUNNING", "message": message}})
    if job.failed:
        message = "An error occurred during document processing. Inference has been aborted."
        return JSONResponse(out | {"document": {"status": "ERROR", "message": message}})

    # The v1 API spells the same switch as a repeated ``include`` parameter.
    query = request.query_params
    with_validation = query.get("include_validation_errors", "").lower() in ("true", "1") or (
        "validation_errors" in query.getlist("include")
    )
    errors = []
    if with_validation and "reject" in job.scenarios:
        errors = [
            {"type": "validation", "entity": "fiscal_code_1", "message": "Fiscal code checksum mismatch"}
        ]
    data = job.data
    document = {
        "id": document_id,
        "status": "ACTIVE",
        "revision_status": _revision_status(job, emulator, now),
        "original_name": data["original_name"],
        "content_type": data["content_type"],
        "page_count": data["page_count"],
    }
    pages = [_page(0, job.values, errors)]
    pages += [_page(i, None, []) for i in range(1, data["page_count"])]
    return JSONResponse(
        out
        | {
            "service_name": f"Service {service_id}",
            "service_fields": SERVICE_FIELDS,
            "document": document,
            "document_pages": pages,
        }
    )


# -- job creation, shared by async_predict and /_emulator/bulk -----------------------------------------


def inference_job(
    emulator: Emulator,
    service_id: str,
    filename: str,
    content: bytes | None,
    content_type: str | None = None,
    page_count: int = 1,
    duration: float | None = None,
) -> Job:
    """A job keyed by its document id, the reference clients poll with."""
    if not content_type or content_type == "application/octet-stream":
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return emulator.new_job(
        "biros",
        "inference",
        str(uuid.uuid4()),
        scenarios_of(filename),
        seed_of(filename, content),
        duration,
        service_id=service_id,
        job_id=str(uuid.uuid4()),
        original_name=filename,
        content_type=content_type,
        page_count=page_count,
    )


def bulk_job(emulator: Emulator, bulk: Bulk) -> Callable[[], Job]:
    """A factory of inference jobs for ``POST /_emulator/bulk``."""
    service_id, name, seconds = bulk.options["service_id"], bulk.name, bulk.processing_seconds
    if service_id == UNKNOWN_SERVICE:
        raise ValueError(f"service {service_id!r} does not exist")
    return lambda: inference_job(emulator, service_id, name, None, duration=seconds)


ROUTES = [
    vendor_route(BIROS, SERVICE + "/async-predict", async_predict, ["POST"]),
    vendor_route(BIROS, SERVICE + "/predicted-documents/{document_id}", predicted_document, ["GET"]),
]
