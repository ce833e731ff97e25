"""
The emulated Mindee predictions, with values derived from the uploaded document.

An ``InvoiceV4`` document (every field the official SDK's parser reads, by name) and a generic product's.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_docjobs.emulator.values import Seeded

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
    "orientation",
    "line_items",
)
# The parts of every address field, as Mindee splits them (null when not found).
ADDRESS_PARTS = (
    "address_complement",
    "city",
    "country",
    "po_box",
    "postal_code",
    "state",
    "street_name",
    "street_number",
)
SUPPLIER_ADDRESS = {
    "value": "123 Market Street, San Francisco, CA 94105, USA",
    "street_number": "123",
    "street_name": "Market Street",
    "city": "San Francisco",
    "postal_code": "94105",
    "state": "CA",
    "country": "USA",
}
CUSTOMER_ADDRESS = {
    "value": "456 Oak Avenue, Springfield, IL 62701, USA",
    "street_number": "456",
    "street_name": "Oak Avenue",
    "city": "Springfield",
    "postal_code": "62701",
    "state": "IL",
    "country": "USA",
}


LOCALE = {"confidence": 0.94, "country": "US", "currency": "USD", "language": "en", "value": "en-US"}
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


def _address(
    found: dict[str, str] | None, box: tuple[float, float, float, float], page_id: int | None
) -> dict[str, Any]:
    """An address field with every part Mindee gives, ``None`` where not found (all of them when empty)."""
    parts = {part: (found or {}).get(part) for part in ADDRESS_PARTS}
    return _field(found and found["value"], box, page_id, **parts)


def invoice_prediction(page_id: int | None, v: dict[str, Any], filled: bool = True) -> dict[str, Any]:
    """
    An InvoiceV4 prediction of the values ``v`` (see ``invoice_values``).

    ``page_id`` is set on document-level fields only, as Mindee does; a page's own prediction (``page_id``
    ``None``) also has its ``orientation``. An unfilled prediction has every field empty.
    """

    def f(value: Any, box: tuple[float, float, float, float] | None = None, **extra: Any) -> dict[str, Any]:
        return _field(value if filled else None, box, page_id, **(extra if filled else {}))

    customer = CUSTOMER_ADDRESS if filled else None
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
    taxes = [_field(v["total_tax"], tax_box, page_id, base=v["total_net"], rate=v["tax_rate"])]
    orientation = {"orientation": {"confidence": 0.99, "degrees": 0}} if page_id is None else {}
    return orientation | {
        "billing_address": _address(customer, (0.05, 0.25, 0.35, 0.3), page_id),
        "category": {"confidence": 0.95 if filled else 0.0, "value": "miscellaneous" if filled else None},
        "customer_address": _address(customer, (0.05, 0.25, 0.35, 0.3), page_id),
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
        "locale": LOCALE if filled else {key: None for key in LOCALE} | {"confidence": 0.0},
        "payment_date": f(v["due_date"], (0.8, 0.18, 0.95, 0.2)),
        "po_number": f(v["po_number"], (0.6, 0.12, 0.75, 0.14)),
        "reference_numbers": [f(v["po_number"], (0.6, 0.12, 0.75, 0.14))] if filled else [],
        "shipping_address": _address(None, (0, 0, 0, 0), page_id),
        "subcategory": {"confidence": 0.0, "value": None},
        "supplier_address": _address(SUPPLIER_ADDRESS if filled else None, (0.05, 0.06, 0.4, 0.1), page_id),
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
        "locale": LOCALE,
        "total_amount": _field(v["total_amount"], (0.7, 0.8, 0.9, 0.82), page_id),
    }
