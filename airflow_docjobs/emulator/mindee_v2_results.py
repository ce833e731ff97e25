"""
The emulated Mindee v2 inference results, with values derived from the enqueued document.

Extraction reads like a financial-document model (the recorded ``financial_document/complete.json``): simple
fields (``value``), objects (``fields``) and lists (``items``), each with ``confidence`` and ``locations``
only when the enqueue asked for them. Classification, crop, OCR and split read like their recorded samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.emulator.mindee_predictions import invoice_values

if TYPE_CHECKING:
    from airflow_docjobs.emulator.values import Seeded

CONFIDENCES = ("Certain", "High", "Medium", "Low")
DOCUMENT_TYPES = ("invoice", "receipt", "bank_statement")


def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


class _Fields:
    """Builds fields as the enqueue's options shape them (``confidence``, ``polygon``)."""

    def __init__(self, values: Seeded, options: dict[str, bool | None]) -> None:
        self.values, self.options = values, options

    def _meta(self, label: str, box: tuple[float, float, float, float] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.options.get("polygon"):
            meta["locations"] = [{"polygon": _box(*box), "page": 0}] if box else []
        if self.options.get("confidence"):
            meta["confidence"] = self.values.choice(f"confidence {label}", CONFIDENCES)
        return meta

    def simple(self, label: str, value: Any, box: tuple[float, float, float, float] | None = None) -> Any:
        return self._meta(label, box) | {"value": value}

    def object(self, label: str, **fields: Any) -> dict[str, Any]:
        return self._meta(label, None) | {"fields": fields}

    def items(self, *items: dict[str, Any]) -> dict[str, Any]:
        return {"items": list(items)}


def extraction(values: Seeded, pages: int, options: dict[str, bool | None]) -> dict[str, Any]:
    """An extraction result: a financial document's fields, the raw text when asked, no RAG match."""
    v, f = invoice_values(values), _Fields(values, options)
    lines = [
        f.object(
            f"line {code}",
            description=f.simple(f"{code} description", description, box),
            product_code=f.simple(f"{code} code", code),
            quantity=f.simple(f"{code} quantity", quantity),
            unit_price=f.simple(f"{code} unit price", unit_price),
            total_price=f.simple(f"{code} total", total),
            tax_rate=f.simple(f"{code} tax rate", v["tax_rate"]),
        )
        for description, code, quantity, unit_price, total, box in v["lines"]
    ]
    fields = {
        "invoice_number": f.simple("invoice_number", v["invoice_number"], (0.8, 0.12, 0.95, 0.14)),
        "date": f.simple("date", v["date"], (0.8, 0.15, 0.95, 0.17)),
        "due_date": f.simple("due_date", v["due_date"], (0.8, 0.18, 0.95, 0.2)),
        "document_type": f.simple("document_type", "INVOICE"),
        "supplier_name": f.simple("supplier_name", v["supplier"], (0.05, 0.03, 0.3, 0.05)),
        "supplier_address": f.object(
            "supplier_address",
            complete=f.simple(
                "address", "123 Market Street\nSan Francisco, CA 94105", (0.05, 0.06, 0.4, 0.1)
            ),
            street_number=f.simple("street_number", "123"),
            street_name=f.simple("street_name", "Market Street"),
            city=f.simple("city", "San Francisco"),
            postal_code=f.simple("postal_code", "94105"),
            state=f.simple("state", "CA"),
            country=f.simple("country", "US"),
        ),
        "locale": f.object(
            "locale",
            country=f.simple("locale country", "US"),
            currency=f.simple("locale currency", "USD"),
            language=f.simple("locale language", "en"),
        ),
        "line_items": f.items(*lines),
        "taxes": f.items(
            f.object(
                "tax",
                base=f.simple("tax base", v["total_net"]),
                rate=f.simple("tax rate", v["tax_rate"]),
                amount=f.simple("tax amount", v["total_tax"], (0.7, 0.62, 0.95, 0.64)),
            )
        ),
        "total_net": f.simple("total_net", v["total_net"], (0.7, 0.6, 0.95, 0.62)),
        "total_tax": f.simple("total_tax", v["total_tax"], (0.7, 0.62, 0.95, 0.64)),
        "total_amount": f.simple("total_amount", v["total_amount"], (0.7, 0.65, 0.95, 0.67)),
    }
    raw_text = None
    if options.get("raw_text"):
        first = f"INVOICE {v['invoice_number']}\n{v['supplier']}\nTotal {v['total_amount']:.2f} USD"
        raw_text = {"pages": [{"content": first if page == 0 else ""} for page in range(pages)]}
    return {"fields": fields, "raw_text": raw_text, "rag": None}


def product_result(
    product: str, values: Seeded, pages: int, options: dict[str, bool | None]
) -> dict[str, Any]:
    """The ``result`` of an inference of ``product`` on a document of ``pages`` pages."""
    document_type = values.choice("document type", DOCUMENT_TYPES)
    if product == "classification":
        return {"classification": {"document_type": document_type}}
    if product == "crop":
        return {
            "crops": [
                {
                    "object_type": document_type,
                    "location": {"polygon": _box(0.15, 0.25, 0.85, 0.95), "page": 0},
                }
            ]
        }
    if product == "ocr":
        v = invoice_values(values)
        words = ("INVOICE", v["invoice_number"], v["supplier"])
        return {
            "pages": [
                {
                    "words": [
                        {"content": word, "polygon": _box(0.05, 0.03 * (i + 1), 0.4, 0.03 * (i + 1) + 0.02)}
                        for i, word in enumerate(words)
                    ]
                    if page == 0
                    else [],
                    "content": " ".join(words) if page == 0 else "",
                }
                for page in range(pages)
            ]
        }
    if product == "split":
        return {"splits": [{"page_range": [0, pages - 1], "document_type": document_type}]}
    return extraction(values, pages, options)
