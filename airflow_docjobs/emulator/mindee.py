"""
Mindee v1 asynchronous prediction: ``predict_async``, ``documents/queue/{job_id}``, ``documents/{document_id}``.

Faithful enough for the official ``mindee`` SDK's v1 client (``enqueue``, ``parse_queued``,
``enqueue_and_parse``) and its ``InvoiceV4`` parser, which reads every field below by name.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from airflow_docjobs.emulator.routes import Bulk, Vendor, read_form, read_json, vendor_route
from airflow_docjobs.emulator.values import Seeded, pdf_page_count, scenarios_of, seed_of

if TYPE_CHECKING:
    from collections.abc import Callable

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


# -- predictions --------------------------------------------------------------------------------------

INVOICE_FEATURES = (
    "locale",
    "invoice_number",
    "po_number",
    "reference_numbers",
    "date",
    "due_date",
    "payment_date",
    "total_net",
    "total_amount",
    "total_tax",
    "taxes",
    "supplier_payment_details",
    "supplier_name",
    "supplier_company_registrations",
    "supplier_address",
    "supplier_phone_number",
    "supplier_website",
    "supplier_email",
    "customer_name",
    "customer_company_registrations",
    "customer_address",
    "customer_id",
    "shipping_address",
    "billing_address",
    "document_type",
    "document_type_extended",
    "subcategory",
    "category",
    "line_items",
)


SUPPLIERS = (
    "Acme Corporation",
    "Globex Inc",
    "Initech LLC",
    "Umbrella Supplies",
    "Stark Industries",
    "Wayne Logistics",
    "Hooli Cloud",
    "Vandelay Imports",
)
TAX_RATES = (5.0, 8.25, 10.0, 20.0)
# description, product code, most units, unit price range, polygon on the page
LINE_ITEMS = (
    ("Consulting services (hours)", "CONS-01", 40, (50.0, 200.0), (0.05, 0.45, 0.95, 0.48)),
    ("Hosting, monthly plan", "HOST-12", 12, (9.0, 99.0), (0.05, 0.49, 0.95, 0.52)),
)


def invoice_values(values: Seeded) -> dict[str, Any]:
    """The invoice fields that tell documents apart, consistent with each other (total = net + tax)."""
    lines = []
    for description, code, most, (low, high), box in LINE_ITEMS:
        quantity = float(values.integer(f"{code} quantity", 1, most))
        unit_price = values.amount(f"{code} unit price", low, high)
        lines.append((description, code, quantity, unit_price, round(quantity * unit_price, 2), box))
    net = round(sum(line[4] for line in lines), 2)
    rate = values.choice("tax rate", TAX_RATES)
    tax = round(net * rate / 100, 2)
    issued = date(2024, 1, 1) + timedelta(days=values.integer("date", 0, 365))
    supplier = values.choice("supplier", SUPPLIERS)
    return {
        "supplier": supplier,
        "domain": supplier.split()[0].lower() + ".example",
        "invoice_number": f"INV-{issued.year}-{values.integer('invoice number', 1, 9999):04d}",
        "po_number": f"PO-{values.integer('po number', 1000, 9999)}",
        "date": issued.isoformat(),
        "due_date": (issued + timedelta(days=30)).isoformat(),
        "lines": lines,
        "total_net": net,
        "tax_rate": rate,
        "total_tax": tax,
        "total_amount": round(net + tax, 2),
    }


def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _field(
    value: Any, box: tuple[float, float, float, float] | None, page_id: int | None, **extra: Any
) -> dict[str, Any]:
    found = value is not None
    out: dict[str, Any] = {
        "confidence": 0.99 if found else 0.0,
        "polygon": _box(*box) if found and box else [],
        "value": value,
    }
    if page_id is not None:
        out["page_id"] = page_id if found else None
    return out | extra


def invoice_prediction(page_id: int | None, v: dict[str, Any], filled: bool = True) -> dict[str, Any]:
    """
    An InvoiceV4 prediction of the values ``v`` (see ``invoice_values``).

    ``page_id`` is set on document-level fields only, as Mindee does. An unfilled prediction has every field
    empty.
    """

    def f(value: Any, box: tuple[float, float, float, float] | None = None, **extra: Any) -> dict[str, Any]:
        return _field(value if filled else None, box, page_id, **(extra if filled else {}))

    address = "123 Market Street, San Francisco, CA 94105, USA"
    parts = {"street_number": "123", "street_name": "Market Street", "city": "San Francisco"}
    parts |= {"postal_code": "94105", "state": "CA", "country": "USA"}
    line_items = [
        {
            "confidence": 0.98,
            "description": description,
            "polygon": _box(*box),
            "product_code": code,
            "quantity": quantity,
            "tax_amount": None,
            "tax_rate": v["tax_rate"],
            "total_amount": total,
            "unit_measure": None,
            "unit_price": unit_price,
        }
        | ({"page_id": page_id} if page_id is not None else {})
        for description, code, quantity, unit_price, total, box in (v["lines"] if filled else [])
    ]
    tax_box = (0.7, 0.62, 0.95, 0.64)
    taxes = [_field(v["total_tax"], tax_box, page_id, base=v["total_net"], code="SALES", rate=v["tax_rate"])]
    return {
        "billing_address": f("456 Oak Avenue, Springfield, IL 62701, USA", (0.05, 0.25, 0.35, 0.3)),
        "category": {"confidence": 0.95 if filled else 0.0, "value": "miscellaneous" if filled else None},
        "customer_address": f("456 Oak Avenue, Springfield, IL 62701, USA", (0.05, 0.25, 0.35, 0.3)),
        "customer_company_registrations": [],
        "customer_id": f("CUST-0042", (0.6, 0.2, 0.75, 0.22)),
        "customer_name": f("JOHN DOE", (0.05, 0.22, 0.2, 0.24), raw_value="John Doe"),
        "date": f(v["date"], (0.8, 0.15, 0.95, 0.17)),
        "document_type": {"value": "INVOICE" if filled else None},
        "document_type_extended": {
            "confidence": 0.99 if filled else 0.0,
            "value": "INVOICE" if filled else None,
        },
        "due_date": f(v["due_date"], (0.8, 0.18, 0.95, 0.2), is_computed=False),
        "invoice_number": f(v["invoice_number"], (0.8, 0.12, 0.95, 0.14)),
        "line_items": line_items,
        "locale": {"confidence": 0.94, "country": "US", "currency": "USD", "language": "en"}
        if filled
        else {"confidence": 0.0, "country": None, "currency": None, "language": None},
        "payment_date": f(v["due_date"], (0.8, 0.18, 0.95, 0.2)),
        "po_number": f(v["po_number"], (0.6, 0.12, 0.75, 0.14)),
        "reference_numbers": [f(v["po_number"], (0.6, 0.12, 0.75, 0.14))] if filled else [],
        "shipping_address": _field(None, None, page_id),
        "subcategory": {"confidence": 0.0, "value": None},
        "supplier_address": f(address, (0.05, 0.06, 0.4, 0.1), **parts),
        "supplier_company_registrations": [f("12-3456789", (0.05, 0.11, 0.2, 0.12), type="EIN")]
        if filled
        else [],
        "supplier_email": f(f"billing@{v['domain']}", (0.6, 0.06, 0.8, 0.08)),
        "supplier_name": f(v["supplier"].upper(), (0.05, 0.03, 0.3, 0.05), raw_value=v["supplier"]),
        "supplier_payment_details": [
            {
                "account_number": "000123456789",
                "confidence": 0.9,
                "iban": None,
                "polygon": _box(0.05, 0.8, 0.5, 0.82),
                "routing_number": "121000358",
                "swift": "BOFAUS3N",
            }
            | ({"page_id": page_id} if page_id is not None else {})
        ]
        if filled
        else [],
        "supplier_phone_number": f("+14155550100", (0.6, 0.08, 0.8, 0.1)),
        "supplier_website": f(f"https://{v['domain']}", (0.6, 0.1, 0.8, 0.11)),
        "taxes": taxes if filled else [],
        "total_amount": f(v["total_amount"], (0.8, 0.66, 0.95, 0.68)),
        "total_net": f(v["total_net"], (0.8, 0.6, 0.95, 0.62)),
        "total_tax": f(v["total_tax"], tax_box),
    }


def generic_values(values: Seeded) -> dict[str, Any]:
    """The values of a prediction on a product other than invoices: a date and a total amount."""
    issued = date(2024, 1, 1) + timedelta(days=values.integer("date", 0, 365))
    return {"date": issued.isoformat(), "total_amount": values.amount("total amount", 5.0, 500.0)}


def generic_prediction(page_id: int | None, v: dict[str, Any]) -> dict[str, Any]:
    """A generic prediction of the values ``v``: date, locale and total amount."""
    return {
        "date": _field(v["date"], (0.7, 0.1, 0.9, 0.12), page_id),
        "locale": {"confidence": 0.9, "country": "US", "currency": "USD", "language": "en"},
        "total_amount": _field(v["total_amount"], (0.7, 0.8, 0.9, 0.82), page_id),
    }


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
