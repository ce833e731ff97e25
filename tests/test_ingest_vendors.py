"""What the vendor readers take from each result shape, without a database."""

from __future__ import annotations

import hashlib

import pytest

from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.ingest.tables import document_key, document_row
from airflow_docjobs.ingest.vendors import READERS, infer_vendor, mindee_analysis, vendor_id

MINDEE_CUSTOM = {
    "document": {
        "name": "receipt.jpg",
        "inference": {
            "product": {"name": "acme/receipts", "version": "2.0"},
            "prediction": {
                "total_amount": {"value": "12.50", "confidence": 0.8, "page_id": 1},
                "date": {"value": None, "confidence": 0.0},
                "locale": {"confidence": 0.9, "currency": "EUR", "language": "fr"},
            },
        },
    }
}
SHAPES = {
    "finovox": ({"name": "a.pdf", "global_risk": "high", "software": "photoshop"}, "document"),
    "finovox_case": ({"decision": {"status": "rejected", "status_fraud": "high"}}, "case"),
    "mindee": (MINDEE_CUSTOM, "acme/receipts/v2"),
    "mindee_v2": (
        {
            "inference": {
                "model": {"id": "model-7"},
                "file": {"name": "scan.jpg"},
                "result": {"classification": {"document_type": "invoice"}},
            }
        },
        "model-7",
    ),
    "docimprint": (
        {"job_id": "job_1", "status": "complete", "bundle_id": "ev_1", "manifest_sha256": "ab"},
        "extract",
    ),
    "biros": ({"service": "svc-9", "document": {"status": "ACTIVE"}, "document_pages": []}, "svc-9"),
}


@pytest.mark.parametrize("kind", list(SHAPES))
def test_a_bare_result_tells_its_vendor_and_analysis(kind):
    result, analysis = SHAPES[kind]
    vendor = infer_vendor(result)
    assert vendor == kind.removesuffix("_case")
    assert READERS[vendor].analysis_of_result(result) == analysis


def test_vendor_names_and_analysis_names():
    assert [vendor_id(n) for n in ("Finovox", "myBiros", "biros", "MINDEE", "docimprint", "acme", None)] == [
        "finovox",
        "biros",
        "biros",
        "mindee",
        "docimprint",
        None,
        None,
    ]
    assert mindee_analysis("invoices", "4") == mindee_analysis("invoices", "v4") == "mindee/invoices/v4"


def test_mindee_fields_skip_empty_values_and_keep_pages_and_confidence():
    row = document_row(
        vendor="mindee",
        analysis="acme/receipts/v2",
        input_sha256="x",
        input_name=None,
        state="succeeded",
        result=MINDEE_CUSTOM,
    )
    assert row.values["total_amount"] == 12.5
    assert [(f.page, f.name, f.value, f.confidence) for f in row.fields] == [
        (1, "total_amount", "12.50", 0.8),
        (None, "locale.currency", "EUR", 0.9),
        (None, "locale.language", "fr", 0.9),
    ]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"classification": {"document_type": "invoice"}}, [("classification.document_type", "invoice")]),
        (
            {"splits": [{"page_range": [0, 2], "document_type": "receipt"}]},
            [("splits[0].page_range", "[0, 2]"), ("splits[0].document_type", "receipt")],
        ),
        (
            {"crops": [{"object_type": "invoice", "location": {"polygon": [[0, 0]], "page": 0}}]},
            [("crops[0].object_type", "invoice")],
        ),
        (
            {"pages": [{"words": [{"content": "A", "polygon": []}], "content": "A B"}]},
            [("pages[0].content", "A B")],
        ),
        (
            {
                "fields": {
                    "date": {"value": "2019-11-02", "confidence": "High", "locations": [{"page": 1}]},
                    "po": {"value": None},
                    "taxes": {"items": [{"fields": {"rate": {"value": 0.05, "confidence": "Certain"}}}]},
                },
                "raw_text": None,
            },
            [("date", "2019-11-02"), ("taxes[0].rate", "0.05")],
        ),
    ],
    ids=["classification", "split", "crop", "ocr", "extraction"],
)
def test_mindee_v2_products_give_their_values(result, expected):
    inference = {"inference": {"model": {"id": "m"}, "file": {"name": "a.pdf"}, "result": result}}
    row = document_row(
        vendor="mindee_v2",
        analysis="m",
        input_sha256="x",
        input_name=None,
        state="succeeded",
        result=inference,
    )
    assert [(f.name, f.value) for f in row.fields] == expected
    if "fields" in result:
        assert [(f.page, f.confidence) for f in row.fields] == [(1, 0.75), (None, 1.0)]


def test_a_failed_row_has_its_error_and_no_headlines_or_fields():
    row = document_row(
        vendor="finovox",
        analysis="case",
        input_sha256="x",
        input_name="case/",
        state="failed",
        error={"code": None, "message": "The async folder failed"},
    )
    assert row.fields == []
    assert row.values["decision_status"] is None
    assert row.values["error_message"] == "The async folder failed"
    assert row.values["result_json"] is None


def test_a_finovox_reference_is_hashed_as_the_hook_hashes_it():
    token = "gAAAAAsecret-token"
    built = READERS["finovox"].public_reference(token, "case")
    assert built == FinovoxHook().public_job(FinovoxHook.job_reference(token, "case"))
    assert token not in str(built)
    assert READERS["mindee"].public_reference("job-1", "mindee/invoices/v4") == {"job_id": "job-1"}
    assert READERS["mindee_v2"].public_reference("job-2", "m-1") == {"job_id": "job-2", "model_id": "m-1"}


def test_an_unreadable_input_is_keyed_by_its_name():
    assert document_key("abc", "a.pdf") == "abc"
    assert document_key(None, "gone.pdf") == hashlib.sha256(b"gone.pdf").hexdigest()
    assert document_key(None, None) is None
